//! The Siamese encoder for signatures and handwriting: a compact CNN shared by both sides
//! of every comparison, ending in an L2-normalised 128-D embedding. It is fully
//! convolutional up to a global pooling, so one set of weights serves any canvas size.
//!
//! Training runs it on candle tensors (`SignatureEncoder`), as does a GPU. A CPU runs the
//! same weights on NHWC planes with the `cpu` kernels (`PlaneEncoder`): candle's
//! convolutions took about 6 ms of one canvas, a fifth of the clerk's whole check.

use candle_core::{D, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, Module, VarBuilder};
use image::GrayImage;

use crate::cpu::{
    self, Activation, Epilogue, Isa, PackedConv, Plane, WinogradConv, convolve, convolve_winograd,
};
use crate::nn::{GemmConv, max_pool_2x2};

pub const EMBEDDING_DIM: usize = 128;
/// (input channels, output channels, kernel, stride) of each block.
const BLOCKS: [(usize, usize, usize, usize); 4] = [
    (1, 24, 5, 2),
    (24, 48, 3, 1),
    (48, 96, 3, 1),
    (96, 128, 3, 1),
];

/// How a block's convolution runs while its weights are trained on a CPU. Loaded weights
/// (not variables) and a GPU always take candle's conv2d.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingConvolution {
    /// An im2col and one matrix product (`nn::GemmConv`), so that both gradients are
    /// matrix products and a col2im. candle's conv2d backward runs a scalar transposed
    /// convolution for the input's gradient and a convolution with the whole gradient map
    /// as its kernel for the weights': about half of a training step.
    Gemm,
    /// candle's conv2d: the peer the training benchmark times.
    Candle,
}

/// Convolution, ReLU and (except the last block) 2x2 max pooling.
pub struct ConvBlock {
    conv: Conv2d,
    pool: bool,
    training: TrainingConvolution,
}

impl ConvBlock {
    pub fn new(
        vb: VarBuilder,
        (in_channels, out_channels): (usize, usize),
        (kernel, stride): (usize, usize),
        pool: bool,
        training: TrainingConvolution,
    ) -> Result<Self> {
        let config = Conv2dConfig {
            padding: kernel / 2,
            stride,
            ..Default::default()
        };
        Ok(Self {
            conv: candle_nn::conv2d(in_channels, out_channels, kernel, config, vb)?,
            pool,
            training,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let trained_on_cpu = self.conv.weight().is_variable() && x.device().is_cpu();
        let x = if trained_on_cpu && self.training == TrainingConvolution::Gemm {
            // Reordered on every call, so the product reads the weights as the optimiser
            // last set them.
            let bias = self
                .conv
                .bias()
                .expect("the block's convolution has a bias");
            let config = self.conv.config();
            GemmConv::new(
                self.conv.weight(),
                bias.clone(),
                config.stride,
                config.padding,
            )?
            .forward(x, true)?
        } else {
            self.conv.forward(x)?.relu()?
        };
        if self.pool { max_pool_2x2(&x) } else { Ok(x) }
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
        Self::training_by(vb, TrainingConvolution::Gemm)
    }

    pub fn training_by(vb: VarBuilder, training: TrainingConvolution) -> Result<Self> {
        let blocks = BLOCKS
            .iter()
            .enumerate()
            .map(|(index, &(input, output, kernel, stride))| {
                ConvBlock::new(
                    vb.pp(format!("block{index}")),
                    (input, output),
                    (kernel, stride),
                    index + 1 < BLOCKS.len(),
                    training,
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

/// A block's convolution in the form the `cpu` kernels run.
enum PlaneConv {
    Direct(PackedConv),
    /// A 3x3 convolution of stride 1 whose channels fit Winograd's transforms.
    Winograd(WinogradConv),
}

/// One block on planes: the convolution with its ReLU applied in registers, then (except
/// the last block) 2x2 max pooling of stride 2 that drops an odd last row or column, as
/// candle's does.
pub(crate) struct PlaneBlock {
    conv: PlaneConv,
    kernel: usize,
    stride: usize,
    /// Output channels as the output planes hold them: the kernels pad a count that is not
    /// a multiple of their block with zero filters.
    out_channels: usize,
    pool: bool,
}

impl PlaneBlock {
    /// `stored_inputs`: the channels the previous block's planes hold, `in_channels` of
    /// them real; the weights of the others are zero.
    pub(crate) fn new(
        vb: VarBuilder,
        (in_channels, stored_inputs): (usize, usize),
        out_channels: usize,
        kernel: usize,
        stride: usize,
        pool: bool,
    ) -> Result<Self> {
        let weight = vb.get((out_channels, in_channels, kernel, kernel), "weight")?;
        let weight = weight
            .pad_with_zeros(1, 0, stored_inputs - in_channels)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let bias = vb.get(out_channels, "bias")?.to_vec1::<f32>()?;
        let shape = (out_channels, stored_inputs);
        let conv = if kernel == 3 && stride == 1 && WinogradConv::takes(shape) {
            PlaneConv::Winograd(WinogradConv::new(&weight, &bias, shape))
        } else {
            PlaneConv::Direct(PackedConv::new(
                &weight,
                &bias,
                (shape.0, shape.1, kernel),
                stride,
            ))
        };
        let out_channels = match &conv {
            PlaneConv::Direct(conv) => conv.out_channels(),
            PlaneConv::Winograd(_) => out_channels,
        };
        Ok(Self {
            conv,
            kernel,
            stride,
            out_channels,
            pool,
        })
    }

    /// `inputs`, all of one size, carry a border of the convolution's padding
    /// (`kernel / 2`); the outputs carry `border`.
    pub(crate) fn forward(&self, inputs: &[Plane], border: usize, isa: Isa) -> Vec<Plane> {
        let Some(first) = inputs.first() else {
            return Vec::new();
        };
        let (height, width, _) = first.dims();
        let padding = self.kernel / 2;
        let size = |input: usize| (input + 2 * padding - self.kernel) / self.stride + 1;
        let shape = (size(height), size(width), self.out_channels);
        let relu = Epilogue::activation(Activation::Relu);
        let mut outputs =
            Plane::zeros_batch(inputs.len(), shape, if self.pool { 0 } else { border });
        match &self.conv {
            PlaneConv::Direct(conv) => {
                convolve(conv, inputs, (padding, padding), &mut outputs, relu, isa)
            }
            PlaneConv::Winograd(conv) => convolve_winograd(conv, inputs, &mut outputs, relu, isa),
        }
        if !self.pool {
            return outputs;
        }
        outputs
            .iter()
            .map(|plane| plane.max_pool(2, 2, border, isa))
            .collect()
    }
}

/// `SignatureEncoder`'s weights on planes: the same embeddings to float rounding (the
/// tests hold them to 1e-5 on every instruction set).
pub(crate) struct PlaneEncoder {
    blocks: Vec<PlaneBlock>,
    /// The projection's weights, [128][256], and bias: a product too small for a kernel.
    projection: Vec<f32>,
    projection_bias: Vec<f32>,
}

impl PlaneEncoder {
    pub(crate) fn new(vb: VarBuilder) -> Result<Self> {
        let mut stored_inputs = BLOCKS[0].0;
        let mut blocks = Vec::with_capacity(BLOCKS.len());
        for (index, &(input, output, kernel, stride)) in BLOCKS.iter().enumerate() {
            let block = PlaneBlock::new(
                vb.pp(format!("block{index}")),
                (input, stored_inputs),
                output,
                kernel,
                stride,
                index + 1 < BLOCKS.len(),
            )?;
            stored_inputs = block.out_channels;
            blocks.push(block);
        }
        let features = 2 * BLOCKS[BLOCKS.len() - 1].1;
        let vb = vb.pp("projection");
        Ok(Self {
            blocks,
            projection: vb
                .get((EMBEDDING_DIM, features), "weight")?
                .flatten_all()?
                .to_vec1()?,
            projection_bias: vb.get(EMBEDDING_DIM, "bias")?.to_vec1()?,
        })
    }

    /// Canvases (ink bright on black) to unit embeddings. With a canvas per thread each
    /// thread takes its share of the canvases through the whole network; otherwise each
    /// layer's work is shared out over the pool. The canvases must share one size that
    /// `checked_canvas` admits (`SignatureModel::embed_canvases` checks).
    pub(crate) fn embed(&self, canvases: &[&GrayImage], isa: Isa) -> Vec<Vec<f32>> {
        let padding = BLOCKS[0].2 / 2;
        let inputs: Vec<Plane> = canvases
            .iter()
            .map(|canvas| Plane::from_grey(canvas, padding))
            .collect();
        let threads = rayon::current_num_threads();
        let features = if threads > 1 && inputs.len() >= threads {
            let shares: Vec<&[Plane]> = inputs.chunks(inputs.len().div_ceil(threads)).collect();
            cpu::per_thread(&shares, |share| self.features(share, isa)).concat()
        } else {
            cpu::as_team(|| self.features(&inputs, isa))
        };
        features.iter().map(|pooled| self.project(pooled)).collect()
    }

    /// Each canvas's channel means then channel maxima after the last block.
    fn features(&self, inputs: &[Plane], isa: Isa) -> Vec<Vec<f32>> {
        let mut planes = inputs.to_vec();
        for (index, block) in self.blocks.iter().enumerate() {
            let border = self.blocks.get(index + 1).map_or(0, |next| next.kernel / 2);
            planes = block.forward(&planes, border, isa);
        }
        let channels = BLOCKS[BLOCKS.len() - 1].1;
        planes
            .iter()
            .map(|plane| {
                let mut pooled = plane.channel_means(Activation::None);
                pooled.truncate(channels);
                pooled.extend(&plane.channel_maxima()[..channels]);
                pooled
            })
            .collect()
    }

    fn project(&self, pooled: &[f32]) -> Vec<f32> {
        let embedding: Vec<f32> = self
            .projection
            .chunks_exact(pooled.len())
            .zip(&self.projection_bias)
            .map(|(row, bias)| row.iter().zip(pooled).map(|(w, x)| w * x).sum::<f32>() + bias)
            .collect();
        let norm = embedding
            .iter()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt()
            .max(1e-6);
        embedding.iter().map(|v| v / norm).collect()
    }
}
