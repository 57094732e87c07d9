//! Layers shared by the networks, written to reproduce TensorFlow.js semantics exactly
//! (asymmetric 'same' padding, depthwise convolutions), on any candle device.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, D, Layout, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use crate::cpu::same_padding;

/// Zero-pads an NCHW tensor so that a 'valid' convolution gives TensorFlow's 'same' result.
pub fn pad_same(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (top, bottom) = same_padding(h, kernel, stride);
    let (left, right) = same_padding(w, kernel, stride);
    x.pad_with_zeros(2, top, bottom)?
        .pad_with_zeros(3, left, right)
}

/// 2x2 max pooling with 'same' padding. Padding by repeating the edge is exact for a max.
pub fn max_pool_2x2_same(x: &Tensor, stride: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (top, bottom) = same_padding(h, 2, stride);
    let (left, right) = same_padding(w, 2, stride);
    x.pad_with_same(2, top, bottom)?
        .pad_with_same(3, left, right)?
        .max_pool2d_with_stride(2, stride)
}

/// 2x2 max pooling of stride 2 that drops an odd last row or column: the values of
/// candle's `max_pool2d(2)`, with a gradient that is right. candle-core 0.11's backward
/// gives a window's one maximum a quarter of its gradient and four tied maxima all of it
/// each, and on an odd height or width it lays the mask a row or column off, so that about
/// half the maxima of the encoder's 75x110 and 37x55 maps got no gradient at all. Here each
/// window's gradient goes to its first maximum (row by row), as PyTorch's does.
pub fn max_pool_2x2(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        x.contiguous()?.apply_op1(MaxPool2x2)
    } else {
        max_pool_2x2_tensor_ops(x)
    }
}

/// The same pooling as reductions over a reshape, for devices without the CPU op: candle
/// differentiates a max reduction correctly, except that tied maxima each get the whole
/// gradient.
fn max_pool_2x2_tensor_ops(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (out_h, out_w) = (h / 2, w / 2);
    x.narrow(2, 0, 2 * out_h)?
        .narrow(3, 0, 2 * out_w)?
        .contiguous()?
        .reshape((n, c, out_h, 2, out_w, 2))?
        .max(5)?
        .max(3)
}

/// `max_pool_2x2` on a CPU. Its backward finds each window's maximum again from the input
/// rather than keeping indices, so the forward allocates nothing but its output.
struct MaxPool2x2;

impl MaxPool2x2 {
    /// The index in `plane` (of width `w`) of the first maximum of the pooled map's
    /// element `window` (row by row, `out_w` a row), compared as candle's pooling compares
    /// (a NaN first stays).
    fn first_maximum(plane: &[f32], w: usize, out_w: usize, window: usize) -> usize {
        let corner = 2 * (window / out_w) * w + 2 * (window % out_w);
        [corner + 1, corner + w, corner + w + 1]
            .into_iter()
            .fold(
                corner,
                |best, at| if plane[best] < plane[at] { at } else { best },
            )
    }
}

impl CustomOp1 for MaxPool2x2 {
    fn name(&self) -> &'static str {
        "max-pool-2x2"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        let input = contiguous_f32(storage, layout, self.name())?;
        let (out_h, out_w) = (h / 2, w / 2);
        let mut pooled = vec![0f32; n * c * out_h * out_w];
        if out_h * out_w > 0 {
            pooled
                .par_chunks_mut(out_h * out_w)
                .zip(input.par_chunks(h * w))
                .for_each(|(pooled, plane)| {
                    for (window, value) in pooled.iter_mut().enumerate() {
                        *value = plane[Self::first_maximum(plane, w, out_w, window)];
                    }
                });
        }
        Ok((CpuStorage::F32(pooled), Shape::from((n, c, out_h, out_w))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = arg
            .contiguous()?
            .apply_op2_no_bwd(&grad_res.contiguous()?, &MaxPool2x2Back)?;
        Ok(Some(grad))
    }
}

/// The gradient of `MaxPool2x2` with respect to its input, from (input, output gradient).
struct MaxPool2x2Back;

impl CustomOp2 for MaxPool2x2Back {
    fn name(&self) -> &'static str {
        "max-pool-2x2-back"
    }

    fn cpu_fwd(
        &self,
        input: &CpuStorage,
        input_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = input_layout.shape().dims4()?;
        let (out_h, out_w) = (h / 2, w / 2);
        if grad_layout.shape().dims() != [n, c, out_h, out_w] {
            candle_core::bail!(
                "max-pool gradient {:?} for an input {:?}",
                grad_layout.shape(),
                input_layout.shape()
            );
        }
        let input = contiguous_f32(input, input_layout, self.name())?;
        let grad = contiguous_f32(grad, grad_layout, self.name())?;
        let mut input_grad = vec![0f32; n * c * h * w];
        if out_h * out_w > 0 {
            input_grad
                .par_chunks_mut(h * w)
                .zip(input.par_chunks(h * w).zip(grad.par_chunks(out_h * out_w)))
                .for_each(|(input_grad, (plane, grad))| {
                    for (window, &g) in grad.iter().enumerate() {
                        input_grad[MaxPool2x2::first_maximum(plane, w, out_w, window)] = g;
                    }
                });
        }
        Ok((CpuStorage::F32(input_grad), Shape::from((n, c, h, w))))
    }
}

pub fn leaky_relu(x: &Tensor, negative_slope: f64) -> Result<Tensor> {
    x.maximum(&(x * negative_slope)?)
}

/// A 1x1 convolution as one matrix product: [N, C, H, W] -> [N, O, H, W].
pub fn pointwise(x: &Tensor, weight_oc: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let out_channels = weight_oc.dim(0)?;
    weight_oc
        .broadcast_matmul(&x.reshape((n, c, h * w))?)? // [N, O, H*W]
        .reshape((n, out_channels, h, w))
}

pub fn add_channel_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    x.broadcast_add(&bias.reshape((1, (), 1, 1))?)
}

/// A 3x3 depthwise convolution (channel multiplier 1) with 'same' padding, as nine
/// shifted multiply-adds over all channels at once (candle runs grouped convolutions as
/// one small convolution per channel). The CPU runs `cpu::Depthwise3x3` on planes instead.
pub struct Depthwise3x3 {
    /// Tap (i, j) as a [1, C, 1, 1] tensor, row-major.
    taps: Vec<Tensor>,
}

impl Depthwise3x3 {
    pub fn new(vb: VarBuilder, channels: usize) -> Result<Self> {
        let weight = vb.get((channels, 1, 3, 3), "weight")?;
        let taps = (0..3)
            .flat_map(|i| (0..3).map(move |j| (i, j)))
            .map(|(i, j)| {
                weight
                    .narrow(2, i, 1)?
                    .narrow(3, j, 1)?
                    .reshape((1, channels, 1, 1))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { taps })
    }

    pub fn forward(&self, x: &Tensor, stride: usize) -> Result<Tensor> {
        let padded = pad_same(x, 3, stride)?;
        let (_, _, h, w) = padded.dims4()?;
        let (out_h, out_w) = (h - 2, w - 2);
        let mut acc: Option<Tensor> = None;
        for (index, tap) in self.taps.iter().enumerate() {
            let (i, j) = (index / 3, index % 3);
            let term = padded
                .narrow(2, i, out_h)?
                .narrow(3, j, out_w)?
                .broadcast_mul(tap)?;
            acc = Some(match acc {
                Some(sum) => (sum + term)?,
                None => term,
            });
        }
        let full = acc.expect("nine taps");
        if stride == 1 {
            Ok(full)
        } else {
            subsample(&full, stride)
        }
    }
}

/// Keeps every `stride`-th row and column, starting at the first: [N, C, H, W] ->
/// [N, C, ceil(H/s), ceil(W/s)].
fn subsample(x: &Tensor, stride: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (out_h, out_w) = (h.div_ceil(stride), w.div_ceil(stride));
    x.pad_with_zeros(2, 0, out_h * stride - h)?
        .pad_with_zeros(3, 0, out_w * stride - w)?
        .reshape((n, c, out_h, stride, out_w, stride))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((n, c, out_h, out_w))
}

/// Depthwise 3x3 then pointwise 1x1 then bias, TensorFlow's `separableConv2d` with 'same'
/// padding. The activation is the caller's: the two networks use different ones.
pub struct SeparableConv {
    depthwise: Depthwise3x3,
    pointwise: Tensor,
    bias: Tensor,
}

impl SeparableConv {
    pub fn new(vb: VarBuilder, in_channels: usize, out_channels: usize) -> Result<Self> {
        Ok(Self {
            depthwise: Depthwise3x3::new(vb.pp("depthwise"), in_channels)?,
            pointwise: vb
                .get((out_channels, in_channels, 1, 1), "pointwise.weight")?
                .reshape((out_channels, in_channels))?,
            bias: vb.get(out_channels, "bias")?,
        })
    }

    pub fn forward(&self, x: &Tensor, stride: usize) -> Result<Tensor> {
        let x = self.depthwise.forward(x, stride)?;
        add_channel_bias(&pointwise(&x, &self.pointwise)?, &self.bias)
    }
}

/// Global average over the spatial dimensions: [N, C, H, W] -> [N, C].
pub fn global_average(x: &Tensor) -> Result<Tensor> {
    x.mean(D::Minus1)?.mean(D::Minus1)
}

/// A dense layer stored as [out, in] with an optional bias.
pub fn linear(
    vb: &VarBuilder,
    input: usize,
    output: usize,
    with_bias: bool,
) -> Result<candle_nn::Linear> {
    let weight = vb.get((output, input), "weight")?;
    let bias = if with_bias {
        Some(vb.get(output, "bias")?)
    } else {
        None
    };
    Ok(candle_nn::Linear::new(weight, bias))
}

/// A convolution as one matrix product over an explicit im2col made of tensor views
/// (rows ordered tap row, tap column, input channel), bias (and ReLU) after: candle's own
/// conv2d gathers its tiles element by element. The CPU runs `cpu::convolve` on planes.
pub struct GemmConv {
    /// [O, k*k*C], columns ordered (tap row, tap column, input channel).
    weight: Tensor,
    bias: Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl GemmConv {
    /// `weight` is [O, C, k, k] as candle stores it.
    pub fn new(weight: &Tensor, bias: Tensor, stride: usize, padding: usize) -> Result<Self> {
        let (out_channels, in_channels, kernel, _) = weight.dims4()?;
        let weight = weight
            .permute((0, 2, 3, 1))?
            .reshape((out_channels, kernel * kernel * in_channels))?
            .contiguous()?;
        Ok(Self {
            bias: bias.reshape((1, out_channels, 1))?,
            weight,
            kernel,
            stride,
            padding,
        })
    }

    /// The convolution, then a ReLU if `relu`.
    pub fn forward(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let (n, _, h, w) = x.dims4()?;
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let out_h = (h + 2 * p - k) / s + 1;
        let out_w = (w + 2 * p - k) / s + 1;
        // [N, k*k*C, out_h*out_w]
        let columns = if x.device().is_cpu() {
            x.contiguous()?.apply_op1(Patches {
                kernel: k,
                stride: s,
                padding: p,
                input: (h, w),
                output: (out_h, out_w),
            })?
        } else {
            im2col_tensor_ops(x, k, s, p, out_h, out_w)?
        };
        let out_channels = self.weight.dim(0)?;
        let out = self
            .weight
            .broadcast_matmul(&columns)? // [N, O, out_h*out_w]
            .broadcast_add(&self.bias)?
            .reshape((n, out_channels, out_h, out_w))?;
        if relu { out.relu() } else { Ok(out) }
    }
}

/// The im2col of a convolution on a CPU as one candle op, rows ordered as `GemmConv`'s
/// weight columns. Its backward is the col2im, one pass that adds each column back onto the
/// pixel it came from; the tensor operations' backward pads and sums k*k copies of the input
/// instead, which made training on a CPU wait on memory.
#[derive(Debug, Clone, Copy)]
struct Patches {
    kernel: usize,
    stride: usize,
    padding: usize,
    /// (height, width) of the input and of the output.
    input: (usize, usize),
    output: (usize, usize),
}

impl Patches {
    /// Calls `pair(column index, input index)` for every element of one image's column
    /// matrix that reads the input (the rest read the zero padding).
    fn for_each_pair(&self, channels: usize, mut pair: impl FnMut(usize, usize)) {
        let (k, s) = (self.kernel, self.stride);
        let ((h, w), (out_h, out_w)) = (self.input, self.output);
        let inside = |out: usize, tap: usize, size: usize| {
            (out * s + tap)
                .checked_sub(self.padding)
                .filter(|&at| at < size)
        };
        for tap_row in 0..k {
            for tap_column in 0..k {
                for channel in 0..channels {
                    let row = ((tap_row * k + tap_column) * channels + channel) * out_h * out_w;
                    for out_y in 0..out_h {
                        let Some(y) = inside(out_y, tap_row, h) else {
                            continue;
                        };
                        let source = (channel * h + y) * w;
                        for out_x in 0..out_w {
                            if let Some(x) = inside(out_x, tap_column, w) {
                                pair(row + out_y * out_w + out_x, source + x);
                            }
                        }
                    }
                }
            }
        }
    }

    fn columns_per_image(&self, channels: usize) -> usize {
        self.kernel * self.kernel * channels * self.output.0 * self.output.1
    }
}

/// The f32 values of a contiguous CPU tensor.
fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let (CpuStorage::F32(values), Some((start, end))) = (storage, layout.contiguous_offsets())
    else {
        candle_core::bail!("{op} takes a contiguous f32 tensor");
    };
    Ok(&values[start..end])
}

impl CustomOp1 for Patches {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        if (h, w) != self.input {
            candle_core::bail!("im2col of {h}x{w} planes set up for {:?}", self.input);
        }
        let input = contiguous_f32(storage, layout, self.name())?;
        let per_image = self.columns_per_image(c);
        let mut columns = vec![0f32; n * per_image];
        columns
            .par_chunks_mut(per_image)
            .zip(input.par_chunks(c * h * w))
            .for_each(|(columns, image)| {
                self.for_each_pair(c, |column, pixel| columns[column] = image[pixel]);
            });
        let rows = self.kernel * self.kernel * c;
        Ok((
            CpuStorage::F32(columns),
            Shape::from((n, rows, self.output.0 * self.output.1)),
        ))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let channels = arg.dim(1)?;
        let grad = grad_res.contiguous()?.apply_op1_no_bwd(&PatchesBack {
            patches: *self,
            channels,
        })?;
        Ok(Some(grad))
    }
}

/// The col2im: each column matrix summed back onto the input's pixels.
struct PatchesBack {
    patches: Patches,
    channels: usize,
}

impl CustomOp1 for PatchesBack {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, rows, pixels) = layout.shape().dims3()?;
        if rows * pixels != self.patches.columns_per_image(self.channels) {
            candle_core::bail!("col2im of {rows}x{pixels} columns set up for other patches");
        }
        let columns = contiguous_f32(storage, layout, self.name())?;
        let (h, w) = self.patches.input;
        let per_image = h * w * self.channels;
        let mut grad = vec![0f32; n * per_image];
        grad.par_chunks_mut(per_image)
            .zip(columns.par_chunks(self.patches.columns_per_image(self.channels)))
            .for_each(|(image, columns)| {
                self.patches.for_each_pair(self.channels, |column, pixel| {
                    image[pixel] += columns[column]
                });
            });
        Ok((CpuStorage::F32(grad), Shape::from((n, self.channels, h, w))))
    }
}

/// The im2col of a convolution as tensor operations: the k*k shifted (and strided) views
/// of the zero-padded input, concatenated along channels.
fn im2col_tensor_ops(
    x: &Tensor,
    k: usize,
    s: usize,
    p: usize,
    out_h: usize,
    out_w: usize,
) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    // Pad so that every tap's strided view fits and the size divides by the stride.
    let padded_h = (out_h + (k - 1).div_ceil(s)) * s;
    let padded_w = (out_w + (k - 1).div_ceil(s)) * s;
    let x = x
        .pad_with_zeros(2, p, padded_h - h - p)?
        .pad_with_zeros(3, p, padded_w - w - p)?;
    // [N, C, H/s, s, W/s, s]: tap (i, j) is phase (i % s, j % s) shifted by (i / s, j / s).
    let phases = x.reshape((n, c, padded_h / s, s, padded_w / s, s))?;
    let mut taps = Vec::with_capacity(k * k);
    for i in 0..k {
        for j in 0..k {
            taps.push(
                phases
                    .narrow(3, i % s, 1)?
                    .narrow(5, j % s, 1)?
                    .narrow(2, i / s, out_h)?
                    .narrow(4, j / s, out_w)?
                    .reshape((n, c, out_h * out_w))?,
            );
        }
    }
    Tensor::cat(&taps, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn largest_difference(a: Tensor, b: Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    #[test]
    fn depthwise_matches_a_grouped_convolution() -> Result<()> {
        let device = Device::Cpu;
        let channels = 5;
        let weights = Tensor::randn(0f32, 1.0, (channels, 1, 3, 3), &device)?;
        let vb = VarBuilder::from_tensors(
            [("weight".to_string(), weights.clone())].into(),
            candle_core::DType::F32,
            &device,
        );
        let depthwise = Depthwise3x3::new(vb, channels)?;
        for (stride, h, w) in [(1, 7, 9), (2, 8, 8), (2, 9, 6), (1, 1, 2)] {
            let x = Tensor::randn(0f32, 1.0, (2, channels, h, w), &device)?;
            let expected = pad_same(&x, 3, stride)?.conv2d(&weights, 0, stride, 1, channels)?;
            let got = depthwise.forward(&x, stride)?;
            assert_eq!(got.dims(), expected.dims(), "stride {stride}, {h}x{w}");
            let worst = largest_difference(got, expected)?;
            assert!(worst < 1e-5, "stride {stride}, {h}x{w}: {worst}");
        }
        Ok(())
    }

    /// Training differentiates through the CPU's im2col op: the gradients of the input, the
    /// weights and the bias must be candle's own conv2d's.
    #[test]
    fn gemm_conv_gradients_match_candle_conv2d() -> Result<()> {
        let device = Device::Cpu;
        for (c, o, k, stride, padding, (h, w)) in [
            (1, 4, 5, 2, 2, (15, 21)),
            (3, 5, 3, 1, 1, (9, 7)),
            (2, 3, 3, 2, 1, (11, 13)),
        ] {
            let x = candle_core::Var::randn(0f32, 1.0, (2, c, h, w), &device)?;
            let weight = candle_core::Var::randn(0f32, 1.0, (o, c, k, k), &device)?;
            let bias = candle_core::Var::randn(0f32, 1.0, o, &device)?;
            let expected = x
                .conv2d(&weight, padding, stride, 1, 1)?
                .broadcast_add(&bias.reshape((1, o, 1, 1))?)?;
            let actual = GemmConv::new(&weight, bias.as_tensor().clone(), stride, padding)?
                .forward(&x, false)?;
            assert_eq!(actual.dims(), expected.dims());
            // A loss that weighs every output differently, so misplaced gradients show.
            let weights = Tensor::randn(0f32, 1.0, expected.dims(), &device)?;
            let expected_grads = (&expected * &weights)?.sum_all()?.backward()?;
            let actual_grads = (&actual * &weights)?.sum_all()?.backward()?;
            for (name, var) in [("input", &x), ("weight", &weight), ("bias", &bias)] {
                let worst = largest_difference(
                    actual_grads.get(var).expect("a gradient").clone(),
                    expected_grads.get(var).expect("a gradient").clone(),
                )?;
                assert!(
                    worst < 1e-3,
                    "{name}, k={k} s={stride} p={padding}: {worst}"
                );
            }
        }
        Ok(())
    }

    /// The probe that found candle's backward wrong: distinct values on an odd height.
    #[test]
    fn max_pool_gradient_goes_to_each_windows_maximum() -> Result<()> {
        let device = Device::Cpu;
        let values: Vec<f32> = (0..20).map(|i| ((i * 7) % 20) as f32).collect();
        let x = candle_core::Var::from_vec(values, (1, 1, 5, 4), &device)?;
        let pooled = max_pool_2x2(&x)?;
        assert_eq!(
            pooled.flatten_all()?.to_vec1::<f32>()?,
            [15.0, 14.0, 16.0, 18.0]
        );
        let grads = pooled.sum_all()?.backward()?;
        let grad = grads.get(&x).expect("a gradient").flatten_all()?;
        // 15, 14, 16 and 18 sit at (1, 1), (0, 2), (2, 0) and (3, 2); the fifth row is
        // dropped. candle's own backward gives 0.25 at three of them and nothing at (2, 0).
        let mut expected = [0f32; 20];
        for at in [5, 2, 8, 14] {
            expected[at] = 1.0;
        }
        assert_eq!(grad.to_vec1::<f32>()?, expected);

        let tied = candle_core::Var::zeros((1, 1, 2, 2), candle_core::DType::F32, &device)?;
        let grads = max_pool_2x2(&tied)?.sum_all()?.backward()?;
        let grad = grads.get(&tied).expect("a gradient").flatten_all()?;
        assert_eq!(grad.to_vec1::<f32>()?, [1.0, 0.0, 0.0, 0.0]);
        Ok(())
    }

    /// The CPU op and the tensor operations other devices run give candle's pooled values
    /// and the same gradients (random values, so no ties), odd sizes included.
    #[test]
    fn max_pool_paths_agree_with_each_other_and_candles_values() -> Result<()> {
        let device = Device::Cpu;
        for (h, w) in [(75, 110), (37, 55), (13, 13), (3, 5), (4, 4)] {
            let x = candle_core::Var::randn(0f32, 1.0, (2, 3, h, w), &device)?;
            let op = max_pool_2x2(&x)?;
            let ops = max_pool_2x2_tensor_ops(&x)?;
            let candle = x.max_pool2d(2)?;
            assert_eq!(op.dims(), candle.dims(), "{h}x{w}");
            assert_eq!(largest_difference(op.clone(), candle)?, 0.0, "{h}x{w}");
            assert_eq!(largest_difference(op.clone(), ops.clone())?, 0.0, "{h}x{w}");
            let weights = Tensor::randn(0f32, 1.0, op.dims(), &device)?;
            let from_op = (&op * &weights)?.sum_all()?.backward()?;
            let from_ops = (&ops * &weights)?.sum_all()?.backward()?;
            let difference = largest_difference(
                from_op.get(&x).expect("a gradient").clone(),
                from_ops.get(&x).expect("a gradient").clone(),
            )?;
            assert_eq!(difference, 0.0, "{h}x{w}");
        }
        Ok(())
    }

    #[test]
    fn gemm_conv_matches_candle_conv2d() -> Result<()> {
        let device = Device::Cpu;
        for (c, o, k, stride, padding, size) in
            [(3, 8, 7, 2, 0, 23), (4, 6, 3, 1, 1, 9), (5, 7, 3, 2, 0, 10)]
        {
            let x = Tensor::randn(0f32, 1.0, (2, c, size, size), &device)?;
            let weight = Tensor::randn(0f32, 1.0, (o, c, k, k), &device)?;
            let bias = Tensor::randn(0f32, 1.0, o, &device)?;
            let expected = x
                .conv2d(&weight, padding, stride, 1, 1)?
                .broadcast_add(&bias.reshape((1, o, 1, 1))?)?;
            let actual = GemmConv::new(&weight, bias, stride, padding)?.forward(&x, false)?;
            assert_eq!(actual.dims(), expected.dims());
            let worst = largest_difference(actual, expected)?;
            assert!(worst < 1e-3, "k={k} s={stride} p={padding}: {worst}");
        }
        Ok(())
    }
}
