//! The face-api.js Tiny Face Detector: a Tiny-YOLOv2 with depthwise separable convolutions,
//! one class, five anchors, a 13x13 grid at 416x416 input.

use candle_core::{Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Module, VarBuilder};

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
const LEAKY_SLOPE: f64 = 0.1;
const CHANNELS: [usize; 7] = [3, 16, 32, 64, 128, 256, 512];

pub struct TinyFaceDetector {
    conv0: GemmConv,
    separable: Vec<SeparableConv>,
    head: Conv2d,
}

impl TinyFaceDetector {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let conv0 = GemmConv::new(
            &vb.get((CHANNELS[1], CHANNELS[0], 3, 3), "conv0.weight")?,
            vb.get(CHANNELS[1], "conv0.bias")?,
            1,
            0,
        )?;
        let separable = (1..=5)
            .map(|i| SeparableConv::new(vb.pp(format!("conv{i}")), CHANNELS[i], CHANNELS[i + 1]))
            .collect::<Result<Vec<_>>>()?;
        let outputs = ANCHORS.len() * 5;
        let head = Conv2d::new(
            vb.get((outputs, CHANNELS[6], 1, 1), "conv8.weight")?,
            Some(vb.get(outputs, "conv8.bias")?),
            Conv2dConfig::default(),
        );
        Ok(Self {
            conv0,
            separable,
            head,
        })
    }

    /// [N, 3, 416, 416] normalised -> [N, 25, 13, 13]: per anchor (x, y, w, h, score) logits.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = leaky_relu(&self.conv0.forward(x, false)?, LEAKY_SLOPE)?; // [N, 16, 414, 414]
        for layer in &self.separable {
            x = max_pool_2x2_same(&x, 2)?;
            x = leaky_relu(&layer.forward(&x, 1)?, LEAKY_SLOPE)?;
        }
        let x = max_pool_2x2_same(&x, 1)?; // [N, 512, 13, 13]
        self.head.forward(&x)
    }
}
