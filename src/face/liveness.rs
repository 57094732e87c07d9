//! Passive liveness (presentation-attack detection): the two MiniFASNet networks of
//! Silent-Face-Anti-Spoofing (minivision-ai, Apache-2.0), each on its own crop of the frame
//! around the face (2.7 and 4 times the face box, 80x80), their softmaxes summed; class 1
//! is a live face. The crop follows upstream's `CropImage` and the input its transform:
//! BGR, values 0-255 as floats, no mean or scale. Weights: `vouch models
//! import-minifasnet` (models/README.md).

use std::path::Path;

use candle_core::{DType, Device, Module, Result as CandleResult, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, PReLU, VarBuilder};
use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;

use super::BoundingBox;
use crate::error::{Error, Result};

/// The networks' input side.
pub const INPUT_SIZE: u32 = 80;
/// The class a live face is.
const LIVE_CLASS: usize = 1;
const CLASSES: usize = 3;
const EMBEDDING: usize = 128;
/// Each network's channel widths, as upstream's `keep_dict`.
const KEEP_V1: [usize; 49] = [
    32, 32, 103, 103, 64, 13, 13, 64, 26, 26, 64, 13, 13, 64, 52, 52, 64, 231, 231, 128, 154, 154,
    128, 52, 52, 128, 26, 26, 128, 52, 52, 128, 26, 26, 128, 26, 26, 128, 308, 308, 128, 26, 26,
    128, 26, 26, 128, 512, 512,
];
const KEEP_V2: [usize; 49] = [
    32, 32, 103, 103, 64, 13, 13, 64, 13, 13, 64, 13, 13, 64, 13, 13, 64, 231, 231, 128, 231, 231,
    128, 52, 52, 128, 26, 26, 128, 77, 77, 128, 26, 26, 128, 26, 26, 128, 308, 308, 128, 26, 26,
    128, 26, 26, 128, 512, 512,
];
const BATCH_NORM_EPS: f64 = 1e-5;

/// A batch norm in inference as the per-channel affine map it is: `(scale, shift)` with
/// `norm(x) = x * scale + shift`, so it folds into the layer before it.
fn batch_norm_affine(channels: usize, vb: VarBuilder) -> CandleResult<(Tensor, Tensor)> {
    let gamma = vb.get(channels, "weight")?;
    let beta = vb.get(channels, "bias")?;
    let mean = vb.get(channels, "running_mean")?;
    let variance = vb.get(channels, "running_var")?;
    let scale = (gamma / (variance + BATCH_NORM_EPS)?.sqrt()?)?;
    let shift = (beta - (mean * &scale)?)?;
    Ok((scale, shift))
}

/// A convolution without bias and the batch norm after it, folded into one convolution
/// with bias: dense (candle's), or depthwise, one filter per channel. candle runs a
/// grouped convolution as one convolution per group (231 of them for one layer took the
/// two networks to 85 ms a face), so the depthwise ones are computed here: on the CPU by
/// a loop over each channel's plane, elsewhere as the sum of the kernel's shifted windows
/// over whole tensors.
enum Conv {
    Dense(Conv2d),
    Depthwise(DepthwiseConv),
}

struct DepthwiseConv {
    /// `(channels, kernel * kernel)`, row-major taps.
    weight: Tensor,
    /// `(channels,)`.
    bias: Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl Conv {
    /// `padding` None keeps the size (stride 1). The convolution's weights are under
    /// `conv`, its batch norm's under `norm`.
    fn new(
        (in_c, out_c): (usize, usize),
        kernel: usize,
        (stride, groups): (usize, usize),
        padding: Option<usize>,
        (conv, norm): (VarBuilder, VarBuilder),
    ) -> CandleResult<Self> {
        let padding = padding.unwrap_or(kernel / 2);
        let (scale, shift) = batch_norm_affine(out_c, norm)?;
        if groups > 1 && groups == in_c && groups == out_c {
            let weight = conv
                .get((out_c, 1, kernel, kernel), "weight")?
                .reshape((out_c, kernel * kernel))?
                .broadcast_mul(&scale.unsqueeze(1)?)?;
            return Ok(Conv::Depthwise(DepthwiseConv {
                weight,
                bias: shift,
                kernel,
                stride,
                padding,
            }));
        }
        let weight = conv
            .get((out_c, in_c / groups, kernel, kernel), "weight")?
            .broadcast_mul(&scale.reshape((out_c, 1, 1, 1))?)?;
        let config = Conv2dConfig {
            padding,
            stride,
            groups,
            ..Conv2dConfig::default()
        };
        Ok(Conv::Dense(Conv2d::new(weight, Some(shift), config)))
    }

    fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        match self {
            Conv::Dense(conv) => conv.forward(x),
            Conv::Depthwise(conv) if x.device().is_cpu() => conv.forward_cpu(x),
            Conv::Depthwise(conv) => conv.forward_shifted_windows(x),
        }
    }
}

impl DepthwiseConv {
    fn output_side(&self, side: usize) -> usize {
        (side + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// Each channel's plane on its own, shared out over the pool: the taps, the bias,
    /// the padding read as zeros.
    fn forward_cpu(&self, x: &Tensor) -> CandleResult<Tensor> {
        let (n, channels, height, width) = x.dims4()?;
        let (out_h, out_w) = (self.output_side(height), self.output_side(width));
        let input = x.flatten_all()?.to_vec1::<f32>()?;
        let weight = self.weight.flatten_all()?.to_vec1::<f32>()?;
        let bias = self.bias.to_vec1::<f32>()?;
        let (kernel, stride, padding) = (self.kernel, self.stride, self.padding);
        let mut output = vec![0f32; n * channels * out_h * out_w];
        output
            .par_chunks_mut(out_h * out_w)
            .zip(input.par_chunks(height * width))
            .enumerate()
            .for_each(|(plane, (out, input))| {
                let channel = plane % channels;
                let taps = &weight[channel * kernel * kernel..][..kernel * kernel];
                out.fill(bias[channel]);
                for (tap, &tap_weight) in taps.iter().enumerate() {
                    let (ky, kx) = (tap / kernel, tap % kernel);
                    // The output columns whose input column `x * stride + kx - padding`
                    // lies inside the plane.
                    let first_x = padding.saturating_sub(kx).div_ceil(stride);
                    let end_x = ((width + padding).saturating_sub(kx))
                        .div_ceil(stride)
                        .min(out_w);
                    if first_x >= end_x {
                        continue;
                    }
                    for (y, out_row) in out.chunks_exact_mut(out_w).enumerate() {
                        let in_y = y * stride + ky;
                        if in_y < padding || in_y - padding >= height {
                            continue;
                        }
                        let in_row = &input[(in_y - padding) * width..][..width];
                        let in_first = first_x * stride + kx - padding;
                        let columns = in_row[in_first..].iter().step_by(stride);
                        for (value, input) in out_row[first_x..end_x].iter_mut().zip(columns) {
                            *value += tap_weight * input;
                        }
                    }
                }
            });
        Tensor::from_vec(output, (n, channels, out_h, out_w), x.device())
    }

    fn forward_shifted_windows(&self, x: &Tensor) -> CandleResult<Tensor> {
        let (kernel, stride, padding) = (self.kernel, self.stride, self.padding);
        let padded = x
            .pad_with_zeros(2, padding, padding)?
            .pad_with_zeros(3, padding, padding)?;
        let (_, channels, height, width) = padded.dims4()?;
        let (rows, cols) = (height + 1 - kernel, width + 1 - kernel);
        let mut sum = self.bias.reshape((1, channels, 1, 1))?;
        for tap in 0..kernel * kernel {
            let tap_weight = self
                .weight
                .narrow(1, tap, 1)?
                .reshape((1, channels, 1, 1))?;
            let window = padded
                .narrow(2, tap / kernel, rows)?
                .narrow(3, tap % kernel, cols)?
                .broadcast_mul(&tap_weight)?;
            sum = window.broadcast_add(&sum)?;
        }
        if stride == 1 {
            return Ok(sum);
        }
        // Every `stride`-th row and column of the stride-1 result.
        let (n, c, _, _) = sum.dims4()?;
        let (out_rows, out_cols) = (rows.div_ceil(stride), cols.div_ceil(stride));
        sum.pad_with_zeros(2, 0, out_rows * stride - rows)?
            .pad_with_zeros(3, 0, out_cols * stride - cols)?
            .reshape((n, c, out_rows, stride, out_cols, stride))?
            .narrow(3, 0, 1)?
            .narrow(5, 0, 1)?
            .reshape((n, c, out_rows, out_cols))
    }
}

/// Convolution, batch norm, PReLU.
struct ConvBlock {
    conv: Conv,
    prelu: PReLU,
}

impl ConvBlock {
    fn new(
        channels: (usize, usize),
        kernel: usize,
        stride: usize,
        groups: usize,
        vb: VarBuilder,
    ) -> CandleResult<Self> {
        Ok(Self {
            conv: Conv::new(
                channels,
                kernel,
                (stride, groups),
                None,
                (vb.pp("conv"), vb.pp("bn")),
            )?,
            prelu: candle_nn::prelu(Some(channels.1), vb.pp("prelu"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        self.prelu.forward(&self.conv.forward(x)?)
    }
}

/// Convolution and batch norm, no activation.
struct LinearBlock {
    conv: Conv,
}

impl LinearBlock {
    fn new(
        channels: (usize, usize),
        kernel: usize,
        groups: usize,
        padding: usize,
        vb: VarBuilder,
    ) -> CandleResult<Self> {
        Ok(Self {
            conv: Conv::new(
                channels,
                kernel,
                (1, groups),
                Some(padding),
                (vb.pp("conv"), vb.pp("bn")),
            )?,
        })
    }

    fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        self.conv.forward(x)
    }
}

/// Squeeze and excitation: channel weights from the global average.
struct SeModule {
    fc1: Conv,
    fc2: Conv,
}

impl SeModule {
    fn new(channels: usize, reduction: usize, vb: VarBuilder) -> CandleResult<Self> {
        let reduced = channels / reduction;
        Ok(Self {
            fc1: Conv::new(
                (channels, reduced),
                1,
                (1, 1),
                None,
                (vb.pp("fc1"), vb.pp("bn1")),
            )?,
            fc2: Conv::new(
                (reduced, channels),
                1,
                (1, 1),
                None,
                (vb.pp("fc2"), vb.pp("bn2")),
            )?,
        })
    }

    fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        let pooled = x.mean_keepdim(3)?.mean_keepdim(2)?;
        let weights = self.fc1.forward(&pooled)?.relu()?;
        let weights = self.fc2.forward(&weights)?;
        x.broadcast_mul(&candle_nn::ops::sigmoid(&weights)?)
    }
}

/// Pointwise expansion, depthwise 3x3, pointwise projection; with a shortcut (and an SE
/// module, in the SE network's last block of each stage) when `residual`.
struct DepthWise {
    conv: ConvBlock,
    conv_dw: ConvBlock,
    project: LinearBlock,
    residual: bool,
    se: Option<SeModule>,
}

impl DepthWise {
    /// `keep[at..]` holds this block's widths: in, expanded, depthwise, out.
    fn new(
        keep: &[usize],
        at: usize,
        stride: usize,
        residual: bool,
        se: bool,
        vb: VarBuilder,
    ) -> CandleResult<Self> {
        let (input, expanded, depthwise, output) =
            (keep[at], keep[at + 1], keep[at + 2], keep[at + 3]);
        Ok(Self {
            conv: ConvBlock::new((input, expanded), 1, 1, 1, vb.pp("conv"))?,
            conv_dw: ConvBlock::new((expanded, depthwise), 3, stride, expanded, vb.pp("conv_dw"))?,
            project: LinearBlock::new((depthwise, output), 1, 1, 0, vb.pp("project"))?,
            residual,
            se: if se {
                Some(SeModule::new(output, 4, vb.pp("se_module"))?)
            } else {
                None
            },
        })
    }

    fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        let out = self
            .project
            .forward(&self.conv_dw.forward(&self.conv.forward(x)?)?)?;
        if !self.residual {
            return Ok(out);
        }
        let out = match &self.se {
            Some(se) => se.forward(&out)?,
            None => out,
        };
        x + out
    }
}

/// A stage of residual blocks; in the SE network the last one has an SE module.
struct Residual {
    blocks: Vec<DepthWise>,
}

impl Residual {
    fn new(
        keep: &[usize],
        first: usize,
        count: usize,
        se: bool,
        vb: VarBuilder,
    ) -> CandleResult<Self> {
        let blocks = (0..count)
            .map(|i| {
                let last_with_se = se && i + 1 == count;
                DepthWise::new(
                    keep,
                    first + 3 * i,
                    1,
                    true,
                    last_with_se,
                    vb.pp(format!("model.{i}")),
                )
            })
            .collect::<CandleResult<_>>()?;
        Ok(Self { blocks })
    }

    fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        self.blocks
            .iter()
            .try_fold(x.clone(), |x, block| block.forward(&x))
    }
}

/// One MiniFASNet (V2, or V1 with SE modules): 80x80 BGR in, 3 logits out.
pub struct MiniFasNet {
    conv1: ConvBlock,
    conv2_dw: ConvBlock,
    conv_23: DepthWise,
    conv_3: Residual,
    conv_34: DepthWise,
    conv_4: Residual,
    conv_45: DepthWise,
    conv_5: Residual,
    conv_6_sep: ConvBlock,
    conv_6_dw: LinearBlock,
    /// The embedding's linear map with the batch norm after it folded in.
    linear: Linear,
    prob: Linear,
}

impl MiniFasNet {
    pub fn new(se: bool, vb: VarBuilder) -> CandleResult<Self> {
        let keep: &[usize] = if se { &KEEP_V1 } else { &KEEP_V2 };
        let conv6_kernel = (INPUT_SIZE as usize).div_ceil(16);
        Ok(Self {
            conv1: ConvBlock::new((3, keep[0]), 3, 2, 1, vb.pp("conv1"))?,
            conv2_dw: ConvBlock::new((keep[0], keep[1]), 3, 1, keep[1], vb.pp("conv2_dw"))?,
            conv_23: DepthWise::new(keep, 1, 2, false, false, vb.pp("conv_23"))?,
            conv_3: Residual::new(keep, 4, 4, se, vb.pp("conv_3"))?,
            conv_34: DepthWise::new(keep, 16, 2, false, false, vb.pp("conv_34"))?,
            conv_4: Residual::new(keep, 19, 6, se, vb.pp("conv_4"))?,
            conv_45: DepthWise::new(keep, 37, 2, false, false, vb.pp("conv_45"))?,
            conv_5: Residual::new(keep, 40, 2, se, vb.pp("conv_5"))?,
            conv_6_sep: ConvBlock::new((keep[46], keep[47]), 1, 1, 1, vb.pp("conv_6_sep"))?,
            conv_6_dw: LinearBlock::new(
                (keep[47], keep[48]),
                conv6_kernel,
                keep[48],
                0,
                vb.pp("conv_6_dw"),
            )?,
            linear: {
                let (scale, shift) = batch_norm_affine(EMBEDDING, vb.pp("bn"))?;
                let weight = vb
                    .pp("linear")
                    .get((EMBEDDING, keep[48]), "weight")?
                    .broadcast_mul(&scale.unsqueeze(1)?)?;
                Linear::new(weight, Some(shift))
            },
            prob: candle_nn::linear_no_bias(EMBEDDING, CLASSES, vb.pp("prob"))?,
        })
    }

    /// Logits for a batch `(n, 3, 80, 80)`.
    pub fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        let x = self.conv2_dw.forward(&self.conv1.forward(x)?)?;
        let x = self.conv_3.forward(&self.conv_23.forward(&x)?)?;
        let x = self.conv_4.forward(&self.conv_34.forward(&x)?)?;
        let x = self.conv_5.forward(&self.conv_45.forward(&x)?)?;
        let x = self.conv_6_dw.forward(&self.conv_6_sep.forward(&x)?)?;
        let x = self.linear.forward(&x.flatten_from(1)?)?;
        self.prob.forward(&x)
    }
}

/// Upstream's `CropImage`: the face box scaled about its centre (as far as the frame
/// allows), shifted back inside the frame, cut out and resized to 80x80 (bilinear).
pub fn crop(frame: &RgbImage, face: &BoundingBox, scale: f32) -> RgbImage {
    let (src_w, src_h) = (frame.width() as f32, frame.height() as f32);
    let (box_w, box_h) = (face.width.max(1.0), face.height.max(1.0));
    let scale = scale.min((src_h - 1.0) / box_h).min((src_w - 1.0) / box_w);
    let (new_w, new_h) = (box_w * scale, box_h * scale);
    let (centre_x, centre_y) = (face.x + box_w / 2.0, face.y + box_h / 2.0);
    let (mut left, mut top) = (centre_x - new_w / 2.0, centre_y - new_h / 2.0);
    let (mut right, mut bottom) = (centre_x + new_w / 2.0, centre_y + new_h / 2.0);
    if left < 0.0 {
        right -= left;
        left = 0.0;
    }
    if top < 0.0 {
        bottom -= top;
        top = 0.0;
    }
    if right > src_w - 1.0 {
        left -= right - src_w + 1.0;
        right = src_w - 1.0;
    }
    if bottom > src_h - 1.0 {
        top -= bottom - src_h + 1.0;
        bottom = src_h - 1.0;
    }
    // Upstream truncates the corners and keeps both edges (`[top: bottom + 1]`).
    let (left, top) = (left.max(0.0) as u32, top.max(0.0) as u32);
    let (right, bottom) = (right as u32, bottom as u32);
    let cut = image::imageops::crop_imm(
        frame,
        left,
        top,
        (right + 1).saturating_sub(left).max(1),
        (bottom + 1).saturating_sub(top).max(1),
    )
    .to_image();
    crate::imageio::resize_bilinear(&cut, INPUT_SIZE, INPUT_SIZE)
}

/// A crop as the networks take it: `(1, 3, 80, 80)`, BGR, 0-255.
pub fn input_tensor(crop: &RgbImage, device: &Device) -> CandleResult<Tensor> {
    let side = INPUT_SIZE as usize;
    let mut values = vec![0f32; 3 * side * side];
    for (x, y, pixel) in crop.enumerate_pixels() {
        for (channel, rgb_index) in [2usize, 1, 0].into_iter().enumerate() {
            values[channel * side * side + y as usize * side + x as usize] =
                f32::from(pixel.0[rgb_index]);
        }
    }
    Tensor::from_vec(values, (1, 3, side, side), device)
}

fn softmax(logits: [f32; CLASSES]) -> [f32; CLASSES] {
    let top = logits.iter().copied().fold(f32::MIN, f32::max);
    let exp = logits.map(|l| (l - top).exp());
    let sum: f32 = exp.iter().sum();
    exp.map(|e| e / sum)
}

/// What the liveness networks say about one face.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LivenessScore {
    /// The two networks' mean probability that the face is live (class 1), 0 to 1.
    pub live: f32,
    /// The class with the largest summed probability is 1.
    pub is_live: bool,
}

/// Both networks with the crop scale each was trained on.
pub struct Liveness {
    networks: Vec<(MiniFasNet, f32)>,
    device: Device,
    pub model_id: String,
}

impl Liveness {
    /// The converted weights from `models_dir`.
    pub fn load(models_dir: &Path, device: &Device) -> Result<Self> {
        let mut networks = Vec::new();
        let mut ids = Vec::new();
        for (_, file, scale) in crate::models::minifasnet::NETWORKS {
            let path = models_dir.join(file);
            let weights = crate::models::load_weights(&path, device)?;
            ids.push(weights.sha256[..12].to_string());
            let vb = VarBuilder::from_tensors(weights.tensors, DType::F32, device);
            let se = file.contains("v1se");
            let network = MiniFasNet::new(se, vb).map_err(|e| Error::BadModel {
                reason: e.to_string(),
                path: path.clone(),
            })?;
            networks.push((network, scale));
        }
        Ok(Self {
            networks,
            device: device.clone(),
            model_id: format!("minifasnet@{}", ids.join("+")),
        })
    }

    /// The crop scale of each network, in `NETWORKS` order.
    pub fn scales(&self) -> Vec<f32> {
        self.networks.iter().map(|(_, scale)| *scale).collect()
    }

    /// Network `index`'s logits for its 80x80 input crop.
    pub fn logits(&self, index: usize, crop: &RgbImage) -> Result<[f32; CLASSES]> {
        let (network, _) = &self.networks[index];
        let logits = network
            .forward(&input_tensor(crop, &self.device)?)?
            .squeeze(0)?
            .to_vec1::<f32>()?;
        Ok([logits[0], logits[1], logits[2]])
    }

    /// Each network's probabilities for the face at `face` in `frame`.
    pub fn probabilities(&self, frame: &RgbImage, face: &BoundingBox) -> Result<Vec<[f32; 3]>> {
        self.scales()
            .into_iter()
            .enumerate()
            .map(|(index, scale)| Ok(softmax(self.logits(index, &crop(frame, face, scale))?)))
            .collect()
    }

    /// Upstream's decision on the face at `face` in `frame`.
    pub fn score(&self, frame: &RgbImage, face: &BoundingBox) -> Result<LivenessScore> {
        Ok(decide(&self.probabilities(frame, face)?))
    }
}

/// Upstream's decision from each network's probabilities: the summed softmaxes' largest
/// class, and the live class's mean probability.
pub fn decide(probabilities: &[[f32; CLASSES]]) -> LivenessScore {
    let summed = probabilities.iter().fold([0f32; CLASSES], |sum, p| {
        [sum[0] + p[0], sum[1] + p[1], sum[2] + p[2]]
    });
    let best = (0..CLASSES)
        .max_by(|&a, &b| summed[a].total_cmp(&summed[b]))
        .unwrap_or(0);
    LivenessScore {
        live: summed[LIVE_CLASS] / probabilities.len().max(1) as f32,
        is_live: best == LIVE_CLASS,
    }
}

/// The liveness of a picture's main face, for `vouch face liveness`.
#[derive(Debug, Clone, Serialize)]
pub struct LivenessReport {
    pub bbox: BoundingBox,
    pub score: LivenessScore,
    /// Each network's probabilities (attack, live, attack), in `NETWORKS` order.
    pub probabilities: Vec<[f32; 3]>,
    pub model: String,
}

pub fn assess(
    faces: &super::FaceModels,
    liveness: &Liveness,
    picture: &RgbImage,
    source: &str,
) -> Result<LivenessReport> {
    let (face, _) = faces.main_face(picture, source)?;
    let probabilities = liveness.probabilities(picture, &face.bbox)?;
    Ok(LivenessReport {
        bbox: face.bbox,
        score: decide(&probabilities),
        probabilities,
        model: liveness.model_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loop the CPU runs and the whole-tensor sums other devices run agree, for each
    /// shape the networks have: 3x3 with stride 1 and 2 (even and odd sides), and the
    /// last layer's 5x5 without padding.
    #[test]
    fn the_cpu_depthwise_loop_matches_the_shifted_window_sums() -> CandleResult<()> {
        let device = Device::Cpu;
        let channels = 7;
        for (kernel, stride, padding, side) in
            [(3, 1, 1, 10), (3, 2, 1, 10), (3, 2, 1, 9), (5, 1, 0, 5)]
        {
            let conv = DepthwiseConv {
                weight: Tensor::randn(0f32, 1.0, (channels, kernel * kernel), &device)?,
                bias: Tensor::randn(0f32, 1.0, channels, &device)?,
                kernel,
                stride,
                padding,
            };
            let x = Tensor::randn(0f32, 1.0, (2, channels, side, side), &device)?;
            let on_cpu = conv.forward_cpu(&x)?;
            let summed = conv.forward_shifted_windows(&x)?;
            assert_eq!(
                on_cpu.dims(),
                summed.dims(),
                "kernel {kernel}, stride {stride}"
            );
            let worst = (on_cpu - summed)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(
                worst < 1e-5,
                "kernel {kernel}, stride {stride}, side {side}: {worst}"
            );
        }
        Ok(())
    }
}
