//! The face-api.js 68-point landmark network: four densely connected blocks of separable
//! convolutions on a 112x112 face crop, then a dense layer to 68 (x, y) pairs in [0, 1].
//! On the CPU it runs on NHWC planes with the `cpu` kernels: each block's running sum is
//! the residual of its pointwise convolutions, and the ReLU before each convolution is
//! applied as the depthwise one reads its input; elsewhere on candle tensors.

use candle_core::{Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, Module, VarBuilder};
use rayon::prelude::*;

use crate::cpu::{self, Activation, Epilogue, Isa, PackedConv, Plane};
use crate::nn::{SeparableConv, linear, pad_same};

pub const INPUT_SIZE: usize = 112;
pub const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];
pub const POINTS: usize = 68;
const BLOCKS: [(&str, usize, usize); 4] = [
    ("dense0", 3, 32),
    ("dense1", 32, 64),
    ("dense2", 64, 128),
    ("dense3", 128, 256),
];

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

/// A dense block on planes.
struct PlaneBlock {
    first: PlaneFirst,
    rest: [cpu::SeparableConv; 3],
}

enum PlaneFirst {
    Plain(PackedConv),
    Separable(cpu::SeparableConv),
}

fn values(tensor: &Tensor) -> Result<Vec<f32>> {
    tensor.flatten_all()?.to_vec1()
}

fn separable(vb: &VarBuilder, input: usize, output: usize) -> Result<cpu::SeparableConv> {
    Ok(cpu::SeparableConv::new(
        &values(&vb.get((input, 1, 3, 3), "depthwise.weight")?)?,
        &values(&vb.get((output, input, 1, 1), "pointwise.weight")?)?,
        &values(&vb.get(output, "bias")?)?,
        (input, output),
    ))
}

impl PlaneBlock {
    fn new(vb: VarBuilder, input: usize, output: usize, plain_first: bool) -> Result<Self> {
        let first = if plain_first {
            PlaneFirst::Plain(PackedConv::new(
                &values(&vb.get((output, input, 3, 3), "conv0.weight")?)?,
                &values(&vb.get(output, "conv0.bias")?)?,
                (output, input, 3),
                2,
            ))
        } else {
            PlaneFirst::Separable(separable(&vb.pp("conv0"), input, output)?)
        };
        let conv = |i: usize| separable(&vb.pp(format!("conv{i}")), output, output);
        Ok(Self {
            first,
            rest: [conv(1)?, conv(2)?, conv(3)?],
        })
    }

    /// Halves the spatial size. The inputs are the previous block's running sums (or the
    /// images), read through a ReLU; the result is this block's running sum, before the
    /// ReLU its reader applies.
    fn forward(&self, inputs: &[Plane], isa: Isa) -> Vec<Plane> {
        let relu = Epilogue::activation(Activation::Relu);
        let mut sum = match &self.first {
            PlaneFirst::Plain(conv) => {
                let (h, _, _) = inputs[0].dims();
                let padding = cpu::same_padding(h, 3, 2);
                let size = conv.output_size(h, padding);
                let mut out =
                    Plane::zeros_batch(inputs.len(), (size, size, conv.out_channels()), 1);
                cpu::convolve(conv, inputs, padding, &mut out, relu, isa);
                out
            }
            PlaneFirst::Separable(conv) => conv.forward(inputs, 2, true, relu, 1, isa),
        };
        for conv in &self.rest {
            let add = Epilogue {
                residual: Some(&sum),
                activation: Activation::None,
            };
            sum = conv.forward(&sum, 1, true, add, 1, isa);
        }
        sum
    }
}

enum Layers {
    Tensors(Vec<DenseBlock>),
    Planes(Vec<PlaneBlock>),
}

pub struct Landmark68Net {
    layers: Layers,
    fc: Linear,
}

impl Landmark68Net {
    /// Planes on the CPU, tensors elsewhere.
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let on_cpu = vb.device().is_cpu();
        Self::with_layers(vb, on_cpu)
    }

    /// The tensor path even on the CPU: what a GPU runs, to check it against the planes.
    pub fn on_tensors(vb: VarBuilder) -> Result<Self> {
        Self::with_layers(vb, false)
    }

    fn with_layers(vb: VarBuilder, planes: bool) -> Result<Self> {
        fn blocks<B>(
            vb: &VarBuilder,
            new: impl Fn(VarBuilder, usize, usize, bool) -> Result<B>,
        ) -> Result<Vec<B>> {
            BLOCKS
                .iter()
                .enumerate()
                .map(|(i, &(name, input, output))| new(vb.pp(name), input, output, i == 0))
                .collect()
        }
        let layers = if planes {
            Layers::Planes(blocks(&vb, PlaneBlock::new)?)
        } else {
            Layers::Tensors(blocks(&vb, DenseBlock::new)?)
        };
        Ok(Self {
            layers,
            fc: linear(&vb.pp("fc"), 256, POINTS * 2, true)?,
        })
    }

    /// 112x112 crops -> per crop 136 values: x0, y0, x1, y1, ... relative to the crop.
    pub fn points(
        &self,
        crops: &[image::RgbImage],
        device: &candle_core::Device,
        isa: Isa,
    ) -> Result<Vec<Vec<f32>>> {
        let features = match &self.layers {
            Layers::Planes(blocks) => {
                let mut x: Vec<Plane> = crops
                    .par_iter()
                    .map(|crop| Plane::from_rgb(crop, MEAN_RGB, 1))
                    .collect();
                for block in blocks {
                    x = block.forward(&x, isa);
                }
                // [7, 7, 256] each; a 7x7 average pool with stride 2 leaves one cell.
                let means: Vec<f32> = x
                    .iter()
                    .flat_map(|plane| plane.channel_means(Activation::Relu))
                    .collect();
                Tensor::from_vec(means, (crops.len(), 256), device)?
            }
            Layers::Tensors(blocks) => {
                let mut x = super::to_input_tensor(crops, MEAN_RGB, device)?;
                for block in blocks {
                    x = block.forward(&x)?;
                }
                // [N, 256, 7, 7]; a 7x7 average pool with stride 2 leaves one cell.
                x.avg_pool2d_with_stride(7, 2)?.flatten_from(1)? // [N, 256]
            }
        };
        self.fc.forward(&features)?.to_vec2()
    }
}
