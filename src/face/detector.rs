//! The face-api.js Tiny Face Detector: a Tiny-YOLOv2 with depthwise separable convolutions,
//! one class, five anchors, a 13x13 grid at 416x416 input. On the CPU it runs on NHWC
//! planes with the `cpu` kernels (the 3x3 first convolution and every pointwise one with
//! bias and leaky ReLU fused); elsewhere on candle tensors.

use candle_core::{Device, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Module, VarBuilder};

use crate::cpu::{self, Activation, Epilogue, Isa, PackedConv, Plane};
use crate::nn::{GemmConv, SeparableConv, leaky_relu, max_pool_2x2_same};

pub const INPUT_SIZE: usize = 416;
pub const MEAN_RGB: [f32; 3] = [117.001, 114.697, 97.404];
/// Anchor widths and heights in grid cells.
pub const ANCHORS: [(f32, f32); 5] = [
    (1.603231, 2.094468),
    (6.041143, 7.080126),
    (2.882459, 3.518061),
    (4.266906, 5.178857),
    (9.041765, 10.66308),
];
/// Per anchor: x, y, w, h, score.
pub const OUTPUTS: usize = ANCHORS.len() * 5;
const LEAKY_SLOPE: f32 = 0.1;
const CHANNELS: [usize; 7] = [3, 16, 32, 64, 128, 256, 512];

/// The network's outputs: per grid cell (row-major), `OUTPUTS` logits.
pub struct Grid {
    pub cells: usize,
    values: Vec<f32>,
}

impl Grid {
    /// Output `k` (0..25: anchor * 5 + x, y, w, h, score) of cell (row, col).
    pub fn logit(&self, row: usize, col: usize, k: usize) -> f32 {
        self.values[(row * self.cells + col) * OUTPUTS + k]
    }
}

/// The weights in the form the device runs.
enum Layers {
    Tensors {
        conv0: GemmConv,
        separable: Vec<SeparableConv>,
        head: Conv2d,
    },
    Planes {
        conv0: PackedConv,
        separable: Vec<cpu::SeparableConv>,
        head: PackedConv,
    },
}

pub struct TinyFaceDetector {
    layers: Layers,
}

fn values(tensor: &Tensor) -> Result<Vec<f32>> {
    tensor.flatten_all()?.to_vec1()
}

impl TinyFaceDetector {
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
        let conv0_weight = vb.get((CHANNELS[1], CHANNELS[0], 3, 3), "conv0.weight")?;
        let conv0_bias = vb.get(CHANNELS[1], "conv0.bias")?;
        let head_weight = vb.get((OUTPUTS, CHANNELS[6], 1, 1), "conv8.weight")?;
        let head_bias = vb.get(OUTPUTS, "conv8.bias")?;
        let layers = if planes {
            let separable = (1..=5)
                .map(|i| {
                    let vb = vb.pp(format!("conv{i}"));
                    let (input, output) = (CHANNELS[i], CHANNELS[i + 1]);
                    Ok(cpu::SeparableConv::new(
                        &values(&vb.get((input, 1, 3, 3), "depthwise.weight")?)?,
                        &values(&vb.get((output, input, 1, 1), "pointwise.weight")?)?,
                        &values(&vb.get(output, "bias")?)?,
                        (input, output),
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            Layers::Planes {
                conv0: PackedConv::new(
                    &values(&conv0_weight)?,
                    &values(&conv0_bias)?,
                    (CHANNELS[1], CHANNELS[0], 3),
                    1,
                ),
                separable,
                head: PackedConv::new(
                    &values(&head_weight)?,
                    &values(&head_bias)?,
                    (OUTPUTS, CHANNELS[6], 1),
                    1,
                ),
            }
        } else {
            Layers::Tensors {
                conv0: GemmConv::new(&conv0_weight, conv0_bias, 1, 0)?,
                separable: (1..=5)
                    .map(|i| {
                        SeparableConv::new(vb.pp(format!("conv{i}")), CHANNELS[i], CHANNELS[i + 1])
                    })
                    .collect::<Result<Vec<_>>>()?,
                head: Conv2d::new(head_weight, Some(head_bias), Conv2dConfig::default()),
            }
        };
        Ok(Self { layers })
    }

    /// The grid for a 416x416 input image, already placed on its canvas.
    pub fn grid(&self, image: &image::RgbImage, device: &Device, isa: Isa) -> Result<Grid> {
        match &self.layers {
            Layers::Planes {
                conv0,
                separable,
                head,
            } => Ok(Self::grid_on_planes(image, conv0, separable, head, isa)),
            Layers::Tensors { .. } => {
                let input = super::to_input_tensor(std::slice::from_ref(image), MEAN_RGB, device)?;
                let output = self.forward(&input)?.squeeze(0)?; // [25, cells, cells]
                let cells = output.dim(1)?;
                Ok(Grid {
                    cells,
                    values: values(&output.permute((1, 2, 0))?)?,
                })
            }
        }
    }

    fn grid_on_planes(
        image: &image::RgbImage,
        conv0: &PackedConv,
        separable: &[cpu::SeparableConv],
        head: &PackedConv,
        isa: Isa,
    ) -> Grid {
        let leaky = Epilogue::activation(Activation::Leaky(LEAKY_SLOPE));
        let input = Plane::from_rgb(image, MEAN_RGB, 0);
        // [414, 414, 16] pooled to [207, 207, 16].
        let pooled = [cpu::convolve_max_pooled(conv0, &input, leaky, 1, isa)];
        let (first, rest) = separable.split_first().expect("five separable layers");
        let mut x = first.forward(&pooled, 1, false, leaky, 0, isa);
        for layer in rest {
            let pooled = [x[0].max_pool_2x2_same(2, 1, isa)];
            x = layer.forward(&pooled, 1, false, leaky, 0, isa);
        }
        let pooled = [x[0].max_pool_2x2_same(1, 0, isa)]; // [13, 13, 512]
        let (cells, _, _) = pooled[0].dims();
        let mut out = Plane::zeros_batch(1, (cells, cells, head.out_channels()), 0);
        cpu::convolve(head, &pooled, (0, 0), &mut out, Epilogue::NONE, isa);
        let values = (0..cells * cells)
            .flat_map(|cell| out[0].pixel(cell / cells, cell % cells)[..OUTPUTS].to_vec())
            .collect();
        Grid { cells, values }
    }

    /// [N, 3, 416, 416] normalised -> [N, 25, 13, 13]: per anchor (x, y, w, h, score)
    /// logits, on tensors.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let Layers::Tensors {
            conv0,
            separable,
            head,
        } = &self.layers
        else {
            candle_core::bail!("the detector's weights run on planes (grid)");
        };
        let slope = f64::from(LEAKY_SLOPE);
        let mut x = leaky_relu(&conv0.forward(x, false)?, slope)?; // [N, 16, 414, 414]
        for layer in separable {
            x = max_pool_2x2_same(&x, 2)?;
            x = leaky_relu(&layer.forward(&x, 1)?, slope)?;
        }
        let x = max_pool_2x2_same(&x, 1)?; // [N, 512, 13, 13]
        head.forward(&x)
    }
}
