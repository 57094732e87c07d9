//! The Siamese encoder for signatures and handwriting: a compact CNN shared by both sides
//! of every comparison, ending in an L2-normalised 128-D embedding. It is fully
//! convolutional up to a global pooling, so one set of weights serves any canvas size.

use candle_core::{D, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, Module, VarBuilder};

pub const EMBEDDING_DIM: usize = 128;
/// (input channels, output channels, kernel, stride) of each block.
const BLOCKS: [(usize, usize, usize, usize); 4] = [
    (1, 24, 5, 2),
    (24, 48, 3, 1),
    (48, 96, 3, 1),
    (96, 128, 3, 1),
];

/// Convolution, ReLU and (except the last block) 2x2 max pooling.
pub struct ConvBlock {
    conv: Conv2d,
    pool: bool,
}

impl ConvBlock {
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        pool: bool,
    ) -> Result<Self> {
        let config = Conv2dConfig {
            padding: kernel / 2,
            stride,
            ..Default::default()
        };
        Ok(Self {
            conv: candle_nn::conv2d(in_channels, out_channels, kernel, config, vb)?,
            pool,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.conv.forward(x)?.relu()?;
        if self.pool { x.max_pool2d(2) } else { Ok(x) }
    }
}

/// Global average and global max of each channel, side by side: the average says how
/// much of a stroke pattern there is, the max whether it occurs at all.
pub struct GlobalPool;

impl GlobalPool {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let flat = x.flatten_from(2)?;
        Tensor::cat(&[flat.mean(D::Minus1)?, flat.max(D::Minus1)?], 1)
    }
}

pub struct SignatureEncoder {
    blocks: Vec<ConvBlock>,
    pool: GlobalPool,
    projection: Linear,
}

impl SignatureEncoder {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let blocks = BLOCKS
            .iter()
            .enumerate()
            .map(|(index, &(input, output, kernel, stride))| {
                ConvBlock::new(
                    vb.pp(format!("block{index}")),
                    input,
                    output,
                    kernel,
                    stride,
                    index + 1 < BLOCKS.len(),
                )
            })
            .collect::<Result<_>>()?;
        let features = 2 * BLOCKS[BLOCKS.len() - 1].1;
        Ok(Self {
            blocks,
            pool: GlobalPool,
            projection: candle_nn::linear(features, EMBEDDING_DIM, vb.pp("projection"))?,
        })
    }

    /// `(batch, 1, height, width)` canvases in [0, 1] to `(batch, 128)` unit vectors.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        let embedding = self.projection.forward(&self.pool.forward(&x)?)?;
        let norm = embedding
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-6, f64::MAX)?;
        embedding.broadcast_div(&norm)
    }
}
