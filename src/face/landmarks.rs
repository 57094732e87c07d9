//! The face-api.js 68-point landmark network: four densely connected blocks of separable
//! convolutions on a 112x112 face crop, then a dense layer to 68 (x, y) pairs in [0, 1].

use candle_core::{Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, Module, VarBuilder};

use crate::nn::{SeparableConv, linear, pad_same};

pub const INPUT_SIZE: usize = 112;
pub const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];
pub const POINTS: usize = 68;

enum FirstConv {
    Plain(Conv2d),
    Separable(SeparableConv),
}

/// Four convolutions, each fed the sum of all earlier outputs of the block.
pub struct DenseBlock {
    first: FirstConv,
    rest: [SeparableConv; 3],
}

impl DenseBlock {
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        plain_first: bool,
    ) -> Result<Self> {
        let first = if plain_first {
            FirstConv::Plain(Conv2d::new(
                vb.get((out_channels, in_channels, 3, 3), "conv0.weight")?,
                Some(vb.get(out_channels, "conv0.bias")?),
                Conv2dConfig {
                    stride: 2,
                    ..Default::default()
                },
            ))
        } else {
            FirstConv::Separable(SeparableConv::new(
                vb.pp("conv0"),
                in_channels,
                out_channels,
            )?)
        };
        let conv =
            |i: usize| SeparableConv::new(vb.pp(format!("conv{i}")), out_channels, out_channels);
        Ok(Self {
            first,
            rest: [conv(1)?, conv(2)?, conv(3)?],
        })
    }

    /// Halves the spatial size.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let first = match &self.first {
            FirstConv::Plain(conv) => conv.forward(&pad_same(x, 3, 2)?)?,
            FirstConv::Separable(conv) => conv.forward(x, 2)?,
        };
        let mut sum = first.relu()?;
        for conv in &self.rest {
            let out = conv.forward(&sum.relu()?, 1)?;
            sum = (sum + out)?;
        }
        sum.relu()
    }
}

pub struct Landmark68Net {
    blocks: [DenseBlock; 4],
    fc: Linear,
}

impl Landmark68Net {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            blocks: [
                DenseBlock::new(vb.pp("dense0"), 3, 32, true)?,
                DenseBlock::new(vb.pp("dense1"), 32, 64, false)?,
                DenseBlock::new(vb.pp("dense2"), 64, 128, false)?,
                DenseBlock::new(vb.pp("dense3"), 128, 256, false)?,
            ],
            fc: linear(&vb.pp("fc"), 256, POINTS * 2, true)?,
        })
    }

    /// [N, 3, 112, 112] normalised -> [N, 136]: x0, y0, x1, y1, ... relative to the crop.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        // [N, 256, 7, 7]; a 7x7 average pool with stride 2 leaves one cell.
        let pooled = x.avg_pool2d_with_stride(7, 2)?.flatten_from(1)?; // [N, 256]
        self.fc.forward(&pooled)
    }
}
