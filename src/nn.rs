//! Layers shared by the networks, written to reproduce TensorFlow.js semantics exactly
//! (asymmetric 'same' padding, depthwise convolutions), on any candle device.

use candle_core::{D, Result, Tensor};
use candle_nn::VarBuilder;

/// TensorFlow's 'same' padding for one spatial dimension: (before, after). With an even
/// size and stride 2 the extra row goes after, which candle's symmetric padding cannot say.
pub fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

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

/// A 3x3 depthwise convolution (channel multiplier 1) with 'same' padding. candle runs
/// grouped convolutions as one small convolution per channel, several times slower at
/// 256-512 channels: on the CPU each channel plane is nine row-wise multiply-adds in
/// place, planes spread over the rayon pool; elsewhere nine shifted tensor
/// multiply-adds over all channels at once.
pub struct Depthwise3x3 {
    /// Tap (i, j) as a [1, C, 1, 1] tensor, row-major.
    taps: Vec<Tensor>,
    /// [C, 9] on the host, for the CPU path.
    taps_host: Vec<[f32; 9]>,
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
        let taps_host = weight
            .reshape((channels, 9))?
            .to_vec2::<f32>()?
            .into_iter()
            .map(|row| std::array::from_fn(|tap| row[tap]))
            .collect();
        Ok(Self { taps, taps_host })
    }

    pub fn forward(&self, x: &Tensor, stride: usize) -> Result<Tensor> {
        if x.device().is_cpu() {
            return self.forward_cpu(x, stride);
        }
        self.forward_tensor_ops(x, stride)
    }

    fn forward_cpu(&self, x: &Tensor, stride: usize) -> Result<Tensor> {
        use rayon::prelude::*;
        let (n, c, h, w) = x.dims4()?;
        let (top, _) = same_padding(h, 3, stride);
        let (left, _) = same_padding(w, 3, stride);
        let (out_h, out_w) = (h.div_ceil(stride), w.div_ceil(stride));
        let mut out = vec![0f32; n * c * out_h * out_w];
        with_host_values(x, |input| {
            out.par_chunks_mut(out_h * out_w)
                .zip(input.par_chunks(h * w))
                .enumerate()
                .for_each(|(plane, (target, source))| {
                    let taps = &self.taps_host[plane % c];
                    for (y, out_row) in target.chunks_exact_mut(out_w).enumerate() {
                        for i in 0..3 {
                            let Some(input_y) =
                                (y * stride + i).checked_sub(top).filter(|&v| v < h)
                            else {
                                continue;
                            };
                            let in_row = &source[input_y * w..(input_y + 1) * w];
                            for j in 0..3 {
                                let weight = taps[i * 3 + j];
                                let Some((inside, first_input)) =
                                    inside_columns(w, out_w, (j, stride, left))
                                else {
                                    continue;
                                };
                                let outputs = &mut out_row[inside];
                                if stride == 1 {
                                    let inputs = &in_row[first_input..first_input + outputs.len()];
                                    for (o, v) in outputs.iter_mut().zip(inputs) {
                                        *o += weight * v;
                                    }
                                } else {
                                    let inputs = in_row[first_input..].iter().step_by(stride);
                                    for (o, v) in outputs.iter_mut().zip(inputs) {
                                        *o += weight * v;
                                    }
                                }
                            }
                        }
                    }
                });
            Ok(())
        })?;
        Tensor::from_vec(out, (n, c, out_h, out_w), x.device())
    }

    fn forward_tensor_ops(&self, x: &Tensor, stride: usize) -> Result<Tensor> {
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

/// Runs `work` on a CPU tensor's values where they lie: copying every activation out of
/// candle once per layer cost as much as some of the convolutions.
fn with_host_values<R>(x: &Tensor, work: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let x = x.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let (candle_core::Storage::Cpu(storage), Some((start, end))) =
        (&*storage, layout.contiguous_offsets())
    else {
        candle_core::bail!("expected a contiguous tensor on the CPU")
    };
    work(&storage.as_slice::<f32>()?[start..end])
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

/// A convolution as one matrix product over an explicit im2col (rows ordered tap row, tap
/// column, input channel). candle 0.11's CPU conv2d gathers its tiles element by element
/// and always splits its GEMMs over every core, which made the ResNet 30 ms a chip on two
/// cores; on the CPU this calls `gemm` itself, single-threaded, with the bias (and ReLU)
/// fused (see benches/).
pub struct GemmConv {
    /// [O, k*k*C], columns ordered (tap row, tap column, input channel).
    weight: Tensor,
    bias: Tensor,
    /// The same on the host, for the CPU path.
    weight_host: Vec<f32>,
    bias_host: Vec<f32>,
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
            weight_host: weight.flatten_all()?.to_vec1()?,
            bias_host: bias.to_vec1()?,
            weight,
            bias: bias.reshape((1, out_channels, 1))?,
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
        if x.device().is_cpu() {
            return self.forward_cpu(x, relu, out_h, out_w);
        }
        let columns = im2col_tensor_ops(x, k, s, p, out_h, out_w)?; // [N, k*k*C, out_h*out_w]
        let out_channels = self.weight.dim(0)?;
        let out = self
            .weight
            .broadcast_matmul(&columns)? // [N, O, out_h*out_w]
            .broadcast_add(&self.bias)?
            .reshape((n, out_channels, out_h, out_w))?;
        if relu { out.relu() } else { Ok(out) }
    }

    fn forward_cpu(&self, x: &Tensor, relu: bool, out_h: usize, out_w: usize) -> Result<Tensor> {
        use rayon::prelude::*;
        let (n, c, h, w) = x.dims4()?;
        let (out_channels, pixels) = (self.bias_host.len(), out_h * out_w);
        let mut out = vec![0f32; n * out_channels * pixels];
        with_host_values(x, |input| {
            let images: Vec<_> = input
                .chunks_exact(c * h * w)
                .zip(out.chunks_exact_mut(out_channels * pixels))
                .collect();
            images.into_par_iter().for_each(|(image, out_image)| {
                self.forward_image(image, out_image, (c, h, w), (out_h, out_w), relu)
            });
            Ok(())
        })?;
        Tensor::from_vec(out, (n, out_channels, out_h, out_w), x.device())
    }

    /// One image ([C, H, W]) into `out` ([O, out_h*out_w]) as single-threaded GEMMs over
    /// disjoint blocks of the output, one per rayon thread: bands of output rows, each
    /// gathering its own im2col, or on small images blocks of output channels. One
    /// fork-join per convolution; candle's and gemm's own threading split each product
    /// too finely for a 150x150 chip on few cores (benches/).
    fn forward_image(
        &self,
        image: &[f32],
        out: &mut [f32],
        shape: (usize, usize, usize),
        (out_h, out_w): (usize, usize),
        relu: bool,
    ) {
        let (out_channels, pixels) = (self.bias_host.len(), out_h * out_w);
        let geometry = (self.kernel, self.stride, self.padding);
        let depth = self.kernel * self.kernel * shape.0;
        let tasks = rayon::current_num_threads();
        let out_address = out.as_mut_ptr() as usize;
        // SAFETY (for every `gemm_block` below): each task writes a disjoint rectangle
        // of `out`, and the scope ends before `out` is used again.
        let block = move |rows: std::ops::Range<usize>,
                          first_pixel: usize,
                          columns: &[f32],
                          width: usize| unsafe {
            self.gemm_block(
                out_address as *mut f32,
                pixels,
                rows,
                first_pixel,
                columns,
                width,
                depth,
                relu,
            )
        };
        let gather = |ys: std::ops::Range<usize>| {
            let mut columns = vec![0f32; depth * ys.len() * out_w];
            im2col_rows(image, &mut columns, shape, geometry, (out_h, out_w), ys);
            columns
        };
        if pixels >= 64 * tasks {
            let band = out_h.div_ceil(tasks);
            rayon::scope(|scope| {
                for first_y in (0..out_h).step_by(band) {
                    let ys = first_y..(first_y + band).min(out_h);
                    scope.spawn(move |_| {
                        let columns = gather(ys.clone());
                        block(
                            0..out_channels,
                            ys.start * out_w,
                            &columns,
                            ys.len() * out_w,
                        );
                    });
                }
            });
        } else {
            let columns = &gather(0..out_h);
            let rows_per_task = out_channels.div_ceil(tasks);
            rayon::scope(|scope| {
                for first in (0..out_channels).step_by(rows_per_task) {
                    let rows = first..(first + rows_per_task).min(out_channels);
                    scope.spawn(move |_| block(rows, 0, columns, pixels));
                }
            });
        }
    }

    /// `out[rows, first_pixel..first_pixel + width] = relu?(bias + weight[rows] x columns)`,
    /// with `columns` [depth x width].
    ///
    /// # Safety
    /// `out` must point to an [O x pixels] row-major buffer that no other thread writes
    /// inside this rectangle while the call runs.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_block(
        &self,
        out: *mut f32,
        pixels: usize,
        rows: std::ops::Range<usize>,
        first_pixel: usize,
        columns: &[f32],
        width: usize,
        depth: usize,
        relu: bool,
    ) {
        // SAFETY: `rows` and `first_pixel..first_pixel + width` lie inside the [O x pixels]
        // buffer the caller promised, so every address below stays inside it.
        let corner = unsafe { out.add(rows.start * pixels + first_pixel) };
        for (offset, &bias) in self.bias_host[rows.clone()].iter().enumerate() {
            // SAFETY: row `offset` of the rectangle, which only this call writes.
            unsafe { std::slice::from_raw_parts_mut(corner.add(offset * pixels), width) }
                .fill(bias);
        }
        // SAFETY: the destination is the rectangle above (row stride `pixels`); the
        // weights are `rows` x `depth` inside `weight_host`, the columns `depth` x `width`.
        unsafe {
            gemm::gemm(
                rows.len(),
                width,
                depth,
                corner,
                1,
                pixels as isize,
                true,
                self.weight_host.as_ptr().add(rows.start * depth),
                1,
                depth as isize,
                columns.as_ptr(),
                1,
                width as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        if relu {
            for offset in 0..rows.len() {
                // SAFETY: as for the bias rows above.
                unsafe { std::slice::from_raw_parts_mut(corner.add(offset * pixels), width) }
                    .iter_mut()
                    .for_each(|v| *v = v.max(0.0));
            }
        }
    }
}

/// For kernel column `j` of a convolution with stride `s` and left padding `p` over rows
/// of `w` inputs: the output columns whose input column x*s + j - p lies inside the row,
/// and the first of those input columns; None when there are none.
fn inside_columns(
    w: usize,
    out_w: usize,
    (j, s, p): (usize, usize, usize),
) -> Option<(std::ops::Range<usize>, usize)> {
    let first_x = p.saturating_sub(j).div_ceil(s);
    let last_x = (w + p - j).div_ceil(s).min(out_w);
    (first_x < last_x).then(|| (first_x..last_x, first_x * s + j - p))
}

/// im2col of output rows `ys` of one image ([C, H, W]) into `columns` ([k*k*C,
/// ys.len()*out_w], rows ordered tap row, tap column, channel) by whole-row copies,
/// with implicit zero padding (`columns` starts zeroed).
fn im2col_rows(
    image: &[f32],
    columns: &mut [f32],
    (c, h, w): (usize, usize, usize),
    (k, s, p): (usize, usize, usize),
    (out_h, out_w): (usize, usize),
    ys: std::ops::Range<usize>,
) {
    debug_assert!(ys.end <= out_h);
    for (row, target) in columns.chunks_exact_mut(ys.len() * out_w).enumerate() {
        let (tap, channel) = (row / c, row % c);
        let (i, j) = (tap / k, tap % k);
        let Some((inside, start)) = inside_columns(w, out_w, (j, s, p)) else {
            continue;
        };
        let source = &image[channel * h * w..(channel + 1) * h * w];
        for (line, y) in ys.clone().enumerate() {
            let input_y = (y * s + i) as isize - p as isize;
            if input_y < 0 || input_y >= h as isize {
                continue;
            }
            let source_row = &source[input_y as usize * w..(input_y as usize + 1) * w];
            let target_row = &mut target[line * out_w + inside.start..line * out_w + inside.end];
            if s == 1 {
                target_row.copy_from_slice(&source_row[start..start + target_row.len()]);
            } else {
                for (out, value) in target_row
                    .iter_mut()
                    .zip(source_row[start..].iter().step_by(s))
                {
                    *out = *value;
                }
            }
        }
    }
}

/// The same with tensor operations, for GPU devices: the k*k shifted (and strided) views
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
    fn depthwise_in_place_matches_tensor_ops() -> Result<()> {
        let device = Device::Cpu;
        let channels = 5;
        let weights = Tensor::randn(0f32, 1.0, (channels, 1, 3, 3), &device)?;
        let vb = VarBuilder::from_tensors(
            [("weight".to_string(), weights)].into(),
            candle_core::DType::F32,
            &device,
        );
        let depthwise = Depthwise3x3::new(vb, channels)?;
        for (stride, h, w) in [(1, 7, 9), (2, 8, 8), (2, 9, 6), (1, 1, 2)] {
            let x = Tensor::randn(0f32, 1.0, (2, channels, h, w), &device)?;
            let in_place = depthwise.forward_cpu(&x, stride)?;
            let by_ops = depthwise.forward_tensor_ops(&x, stride)?;
            assert_eq!(in_place.dims(), by_ops.dims(), "stride {stride}, {h}x{w}");
            let worst = largest_difference(in_place, by_ops)?;
            assert!(worst < 1e-5, "stride {stride}, {h}x{w}: {worst}");
        }
        Ok(())
    }

    #[test]
    fn gemm_conv_matches_candle_conv2d() -> Result<()> {
        let device = Device::Cpu;
        for (c, o, k, stride, padding, size) in [
            // Small outputs split by output channels, larger ones by bands of rows.
            (3, 8, 7, 2, 0, 23),
            (4, 6, 3, 1, 1, 9),
            (5, 7, 3, 2, 0, 10),
            (4, 5, 3, 1, 1, 19),
            (3, 6, 7, 2, 0, 41),
        ] {
            let x = Tensor::randn(0f32, 1.0, (2, c, size, size), &device)?;
            let weight = Tensor::randn(0f32, 1.0, (o, c, k, k), &device)?;
            let bias = Tensor::randn(0f32, 1.0, o, &device)?;
            let expected = x
                .conv2d(&weight, padding, stride, 1, 1)?
                .broadcast_add(&bias.reshape((1, o, 1, 1))?)?;
            let conv = GemmConv::new(&weight, bias, stride, padding)?;
            let (n, _, h, w) = x.dims4()?;
            let (out_h, out_w) = (
                (h + 2 * padding - k) / stride + 1,
                (w + 2 * padding - k) / stride + 1,
            );
            let by_ops = im2col_tensor_ops(&x, k, stride, padding, out_h, out_w)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let input = x.flatten_all()?.to_vec1::<f32>()?;
            let per_image = k * k * c * out_h * out_w;
            let mut by_rows = vec![0f32; n * per_image];
            for (image, columns) in input
                .chunks_exact(c * h * w)
                .zip(by_rows.chunks_exact_mut(per_image))
            {
                im2col_rows(
                    image,
                    columns,
                    (c, h, w),
                    (k, stride, padding),
                    (out_h, out_w),
                    0..out_h,
                );
            }
            assert_eq!(by_ops, by_rows);
            let actual = conv.forward(&x, false)?;
            assert_eq!(actual.dims(), expected.dims());
            let worst = largest_difference(actual, expected)?;
            assert!(worst < 1e-3, "k={k} s={stride} p={padding}: {worst}");
        }
        Ok(())
    }
}
