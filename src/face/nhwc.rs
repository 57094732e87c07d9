//! The recognition network's CPU path: activations kept NHWC (channels innermost) with a
//! zero border, every convolution computed directly by a register-tiled kernel. In NHWC
//! one row of a k x k window is k*C consecutive floats, so the kernel reads the input
//! where it lies: no im2col gather, no zeroed column buffers, no packing of the input,
//! and bias, shortcut and ReLU applied while the sums are still in registers. This is
//! the layout and the blocking onnxruntime's MLAS uses on this network (benches/).

/// Output channels per tile: two AVX-512 vectors. Every convolution of the network has a
/// multiple of it.
const LANES: usize = 32;
/// Output pixels per tile at most: 12 x 2 accumulator vectors of AVX-512's 32 registers.
const MAX_TILE_PIXELS: usize = 12;

/// 32 floats on a cache line boundary, so the kernel's weight loads never straddle two.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Lanes([f32; LANES]);

/// A convolution's weights in the kernel's order: per block of 32 output channels, per
/// window row, per (window column, input channel), the block's 32 weights.
pub struct PackedConv {
    weights: Vec<Lanes>,
    /// Per block of 32 output channels.
    bias: Vec<Lanes>,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
}

impl PackedConv {
    /// `weight` holds [O, C, k, k] row-major (candle's layout), `bias` [O].
    pub fn new(
        weight: &[f32],
        bias: &[f32],
        (out_channels, in_channels, kernel): (usize, usize, usize),
        stride: usize,
    ) -> Self {
        assert_eq!(weight.len(), out_channels * in_channels * kernel * kernel);
        assert_eq!(bias.len(), out_channels);
        assert_eq!(
            out_channels % LANES,
            0,
            "output channels come in blocks of {LANES}"
        );
        let per_block = kernel * kernel * in_channels;
        let mut weights = vec![Lanes([0.0; LANES]); out_channels / LANES * per_block];
        for (index, lanes) in weights.iter_mut().enumerate() {
            let (block, within) = (index / per_block, index % per_block);
            let (row, column, channel) = (
                within / (kernel * in_channels),
                within / in_channels % kernel,
                within % in_channels,
            );
            for (lane, value) in lanes.0.iter_mut().enumerate() {
                let out_channel = block * LANES + lane;
                *value = weight
                    [((out_channel * in_channels + channel) * kernel + row) * kernel + column];
            }
        }
        let bias = bias
            .chunks_exact(LANES)
            .map(|block| Lanes(std::array::from_fn(|lane| block[lane])))
            .collect();
        Self {
            weights,
            bias,
            in_channels,
            out_channels,
            kernel,
            stride,
        }
    }

    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// The output size along one dimension of `size` inputs with `padding` on each side.
    pub fn output_size(&self, size: usize, padding: usize) -> usize {
        (size + 2 * padding - self.kernel) / self.stride + 1
    }
}

/// One image's activations: [H + 2b, W + 2b, C] with a zero border of b pixels, so that
/// a padded convolution reads its window without bounds checks.
#[derive(Clone)]
pub struct Plane {
    values: Vec<f32>,
    height: usize,
    width: usize,
    channels: usize,
    border: usize,
}

impl Plane {
    pub fn zeros(height: usize, width: usize, channels: usize, border: usize) -> Self {
        let values = vec![0.0; (height + 2 * border) * (width + 2 * border) * channels];
        Self {
            values,
            height,
            width,
            channels,
            border,
        }
    }

    /// From [C, H, W] planar values (one image of an NCHW tensor).
    pub fn from_planar(planar: &[f32], channels: usize, height: usize, width: usize) -> Self {
        assert_eq!(planar.len(), channels * height * width);
        let mut plane = Self::zeros(height, width, channels, 0);
        for (channel, source) in planar.chunks_exact(height * width).enumerate() {
            for (pixel, &value) in source.iter().enumerate() {
                plane.values[pixel * channels + channel] = value;
            }
        }
        plane
    }

    pub fn dims(&self) -> (usize, usize, usize) {
        (self.height, self.width, self.channels)
    }

    fn row_stride(&self) -> usize {
        (self.width + 2 * self.border) * self.channels
    }

    /// Index of channel 0 of interior pixel (y, x).
    fn index(&self, y: usize, x: usize) -> usize {
        (y + self.border) * self.row_stride() + (x + self.border) * self.channels
    }

    fn pixel(&self, y: usize, x: usize) -> &[f32] {
        let start = self.index(y, x);
        &self.values[start..start + self.channels]
    }

    fn pixel_mut(&mut self, y: usize, x: usize) -> &mut [f32] {
        let start = self.index(y, x);
        let channels = self.channels;
        &mut self.values[start..start + channels]
    }

    fn same_geometry(&self, other: &Plane) -> bool {
        self.dims() == other.dims() && self.border == other.border
    }

    /// `size` x `size` max pooling with `stride`, no padding, into a plane with `border`.
    pub fn max_pool(&self, size: usize, stride: usize, border: usize) -> Plane {
        let out_h = (self.height - size) / stride + 1;
        let out_w = (self.width - size) / stride + 1;
        let mut out = Plane::zeros(out_h, out_w, self.channels, border);
        for y in 0..out_h {
            for x in 0..out_w {
                let target = out.pixel_mut(y, x);
                target.fill(f32::NEG_INFINITY);
                for i in 0..size {
                    for j in 0..size {
                        let source = self.pixel(y * stride + i, x * stride + j);
                        for (t, &s) in target.iter_mut().zip(source) {
                            *t = t.max(s);
                        }
                    }
                }
            }
        }
        out
    }

    /// 2x2 average pooling with stride 2, no padding, into `channels` channels (the extra
    /// ones zero) with `border`: a downsampling block's shortcut.
    pub fn average_pool_2x2(&self, channels: usize, border: usize) -> Plane {
        let mut out = Plane::zeros(self.height / 2, self.width / 2, channels, border);
        for y in 0..out.height {
            for x in 0..out.width {
                let target = &mut out.pixel_mut(y, x)[..self.channels];
                for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let source = self.pixel(2 * y + i, 2 * x + j);
                    for (t, &s) in target.iter_mut().zip(source) {
                        *t += s * 0.25;
                    }
                }
            }
        }
        out
    }

    /// The mean of each channel over the interior.
    pub fn channel_means(&self) -> Vec<f32> {
        let mut sums = vec![0.0; self.channels];
        for y in 0..self.height {
            for x in 0..self.width {
                for (sum, &value) in sums.iter_mut().zip(self.pixel(y, x)) {
                    *sum += value;
                }
            }
        }
        let count = (self.height * self.width) as f32;
        sums.iter().map(|sum| sum / count).collect()
    }
}

/// What happens to a convolution's sums before they are stored.
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    /// Added to the sums: a plane shaped like the output (a residual block's shortcut).
    pub residual: Option<&'a Plane>,
    pub relu: bool,
}

/// `output`'s interior pixels (y, x) < the convolution's output size = the epilogue of
/// bias + the convolution of `input` zero-padded by `padding`. `output` may be larger:
/// its other pixels keep their values. With `parallel`, rows are shared out over the
/// rayon pool, one contiguous run per thread.
pub fn convolve(
    conv: &PackedConv,
    input: &Plane,
    padding: usize,
    output: &mut Plane,
    epilogue: Epilogue,
    parallel: bool,
) {
    convolve_with(
        conv,
        input,
        padding,
        output,
        epilogue,
        parallel,
        Kernel::fastest(),
    )
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    Portable,
}

impl Kernel {
    fn fastest() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Kernel::Avx512;
        }
        Kernel::Portable
    }
}

/// One tile's addresses: `pixels` output pixels x 32 output channels.
struct Tile {
    /// The first pixel's window, top left.
    input: *const f32,
    /// Floats between two neighbouring output pixels' windows.
    step: usize,
    /// Floats between two window rows.
    row_stride: usize,
    rows: usize,
    /// Floats in one window row: k*C.
    depth: usize,
    weights: *const f32,
    bias: *const f32,
    out: *mut f32,
    /// Floats between two neighbouring output pixels, in `out` and `residual` alike.
    out_step: usize,
    /// Null without a residual.
    residual: *const f32,
    relu: bool,
}

fn convolve_with(
    conv: &PackedConv,
    input: &Plane,
    padding: usize,
    output: &mut Plane,
    epilogue: Epilogue,
    parallel: bool,
    kernel: Kernel,
) {
    assert_eq!(input.channels, conv.in_channels);
    assert_eq!(output.channels, conv.out_channels);
    assert!(
        input.border >= padding,
        "the input's border holds the padding"
    );
    let (k, s) = (conv.kernel, conv.stride);
    let out_h = conv.output_size(input.height, padding);
    let out_w = conv.output_size(input.width, padding);
    assert!(out_h <= output.height && out_w <= output.width);
    if let Some(residual) = epilogue.residual {
        assert!(residual.same_geometry(output));
    }
    // Tiles of equal width per row; the last starts early rather than run short, so
    // that every tile is a full one (its overlap is computed twice, identically).
    let tiles_per_row = out_w.div_ceil(MAX_TILE_PIXELS);
    let tile_pixels = out_w.div_ceil(tiles_per_row);
    let tile_starts: Vec<usize> = (0..tiles_per_row)
        .map(|tile| (tile * tile_pixels).min(out_w - tile_pixels))
        .collect();
    let per_block = k * k * conv.in_channels;
    let first_window = input.border - padding;
    let input_values = input.values.as_ptr() as usize;
    let out_values = output.values.as_mut_ptr() as usize;
    let residual_values = epilogue
        .residual
        .map_or(0, |plane| plane.values.as_ptr() as usize);
    let output_geometry = (output.row_stride(), output.channels, output.border);
    // Work items (block of 32 output channels, output row), block-major so that one
    // thread's run keeps a block's weights in cache while it goes down the rows.
    let run = |items: std::ops::Range<usize>| {
        for item in items {
            let (block, y) = (item / out_h, item % out_h);
            for &x in &tile_starts {
                let window = (y * s + first_window) * input.row_stride()
                    + (x * s + first_window) * input.channels;
                let (out_stride, out_channels, out_border) = output_geometry;
                let target =
                    (y + out_border) * out_stride + (x + out_border) * out_channels + block * LANES;
                let tile = Tile {
                    input: (input_values as *const f32).wrapping_add(window),
                    step: s * input.channels,
                    row_stride: input.row_stride(),
                    rows: k,
                    depth: k * input.channels,
                    weights: conv.weights[block * per_block..].as_ptr() as *const f32,
                    bias: conv.bias[block].0.as_ptr(),
                    out: (out_values as *mut f32).wrapping_add(target),
                    out_step: out_channels,
                    residual: if residual_values == 0 {
                        std::ptr::null()
                    } else {
                        (residual_values as *const f32).wrapping_add(target)
                    },
                    relu: epilogue.relu,
                };
                // SAFETY: the asserts above keep every window inside `input` (its
                // border holds the padding, and out_h/out_w are what fits), every
                // output pixel inside `output` and `residual`, which share a geometry.
                // Each item writes only its own row of its own block of channels; two
                // tiles of a row overlap only inside one item, with equal values.
                unsafe { run_tile(&tile, tile_pixels, kernel) };
            }
        }
    };
    let items = conv.out_channels / LANES * out_h;
    let threads = rayon::current_num_threads();
    if !parallel || threads == 1 || items < 2 {
        return run(0..items);
    }
    let per_thread = items.div_ceil(threads);
    rayon::scope(|scope| {
        for first in (0..items).step_by(per_thread) {
            let run = &run;
            scope.spawn(move |_| run(first..(first + per_thread).min(items)));
        }
    });
}

macro_rules! by_tile_pixels {
    ($kernel:ident, $tile:expr, $pixels:expr) => {
        match $pixels {
            1 => $kernel::<1>($tile),
            2 => $kernel::<2>($tile),
            3 => $kernel::<3>($tile),
            4 => $kernel::<4>($tile),
            5 => $kernel::<5>($tile),
            6 => $kernel::<6>($tile),
            7 => $kernel::<7>($tile),
            8 => $kernel::<8>($tile),
            9 => $kernel::<9>($tile),
            10 => $kernel::<10>($tile),
            11 => $kernel::<11>($tile),
            12 => $kernel::<12>($tile),
            _ => unreachable!("tiles hold 1 to {MAX_TILE_PIXELS} pixels"),
        }
    };
}

/// # Safety
/// Every address the tile names must be valid for its reads and writes, and `kernel` must
/// run on this CPU.
unsafe fn run_tile(tile: &Tile, pixels: usize, kernel: Kernel) {
    unsafe {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => by_tile_pixels!(tile_avx512, tile, pixels),
            Kernel::Portable => by_tile_pixels!(tile_portable, tile, pixels),
        }
    }
}

/// # Safety
/// As `run_tile`, on a CPU with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const PIXELS: usize>(tile: &Tile) {
    use std::arch::x86_64::*;
    unsafe {
        let bias = [_mm512_load_ps(tile.bias), _mm512_load_ps(tile.bias.add(16))];
        let mut sums = [bias; PIXELS];
        let mut weights = tile.weights;
        for row in 0..tile.rows {
            let window_row = tile.input.add(row * tile.row_stride);
            for offset in 0..tile.depth {
                let low = _mm512_load_ps(weights);
                let high = _mm512_load_ps(weights.add(16));
                weights = weights.add(LANES);
                let column = window_row.add(offset);
                for (pixel, sum) in sums.iter_mut().enumerate() {
                    let value = _mm512_set1_ps(*column.add(pixel * tile.step));
                    sum[0] = _mm512_fmadd_ps(value, low, sum[0]);
                    sum[1] = _mm512_fmadd_ps(value, high, sum[1]);
                }
            }
        }
        for (pixel, sum) in sums.iter().enumerate() {
            let at = pixel * tile.out_step;
            for (half, &vector) in sum.iter().enumerate() {
                let mut vector = vector;
                if !tile.residual.is_null() {
                    let shortcut = _mm512_loadu_ps(tile.residual.add(at + half * 16));
                    vector = _mm512_add_ps(vector, shortcut);
                }
                if tile.relu {
                    vector = _mm512_max_ps(vector, _mm512_setzero_ps());
                }
                _mm512_storeu_ps(tile.out.add(at + half * 16), vector);
            }
        }
    }
}

/// The same in plain Rust, for CPUs without AVX-512 (the compiler vectorises the lanes).
///
/// # Safety
/// As `run_tile`.
unsafe fn tile_portable<const PIXELS: usize>(tile: &Tile) {
    unsafe {
        let bias = *(tile.bias as *const [f32; LANES]);
        let mut sums = [bias; PIXELS];
        let mut weights = tile.weights;
        for row in 0..tile.rows {
            let window_row = tile.input.add(row * tile.row_stride);
            for offset in 0..tile.depth {
                let lanes = &*(weights as *const [f32; LANES]);
                weights = weights.add(LANES);
                let column = window_row.add(offset);
                for (pixel, sum) in sums.iter_mut().enumerate() {
                    let value = *column.add(pixel * tile.step);
                    for (s, &w) in sum.iter_mut().zip(lanes) {
                        *s += value * w;
                    }
                }
            }
        }
        for (pixel, sum) in sums.iter().enumerate() {
            let at = pixel * tile.out_step;
            for (lane, &value) in sum.iter().enumerate() {
                let mut value = value;
                if !tile.residual.is_null() {
                    value += *tile.residual.add(at + lane);
                }
                if tile.relu {
                    value = value.max(0.0);
                }
                *tile.out.add(at + lane) = value;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn kernels() -> Vec<Kernel> {
        let mut kernels = vec![Kernel::Portable];
        if Kernel::fastest() != Kernel::Portable {
            kernels.push(Kernel::fastest());
        }
        kernels
    }

    fn planar(plane: &Plane) -> Vec<f32> {
        let (h, w, c) = plane.dims();
        let mut out = vec![0.0; c * h * w];
        for y in 0..h {
            for x in 0..w {
                for (channel, &value) in plane.pixel(y, x).iter().enumerate() {
                    out[(channel * h + y) * w + x] = value;
                }
            }
        }
        out
    }

    /// Every geometry the network uses, against candle's own conv2d, with and without
    /// the shortcut and the ReLU, on both kernels.
    #[test]
    fn direct_convolution_matches_candle_conv2d() -> candle_core::Result<()> {
        let device = Device::Cpu;
        // (in, out, kernel, stride, padding, size, border)
        for (c, o, k, stride, padding, size, border) in [
            (3, 32, 7, 2, 0, 25, 0),
            (32, 32, 3, 1, 1, 35, 1),
            (32, 64, 3, 2, 0, 17, 1),
            (64, 64, 3, 1, 1, 8, 1),
            (16, 96, 3, 1, 1, 3, 1),
            (64, 32, 3, 2, 0, 4, 1),
        ] {
            let x = Tensor::randn(0f32, 1.0, (1, c, size, size), &device)?;
            let weight = Tensor::randn(0f32, 0.3, (o, c, k, k), &device)?;
            let bias = Tensor::randn(0f32, 1.0, o, &device)?;
            let expected = x
                .conv2d(&weight, padding, stride, 1, 1)?
                .broadcast_add(&bias.reshape((1, o, 1, 1))?)?;
            let (_, _, out_h, out_w) = expected.dims4()?;
            let shortcut = Tensor::randn(0f32, 1.0, (1, o, out_h, out_w), &device)?;
            let conv = PackedConv::new(
                &weight.flatten_all()?.to_vec1()?,
                &bias.to_vec1()?,
                (o, c, k),
                stride,
            );
            let mut input = Plane::zeros(size, size, c, border);
            let source = Plane::from_planar(&x.flatten_all()?.to_vec1()?, c, size, size);
            for y in 0..size {
                for x in 0..size {
                    input.pixel_mut(y, x).copy_from_slice(source.pixel(y, x));
                }
            }
            let residual = {
                let flat = Plane::from_planar(&shortcut.flatten_all()?.to_vec1()?, o, out_h, out_w);
                let mut plane = Plane::zeros(out_h, out_w, o, 1);
                for y in 0..out_h {
                    for x in 0..out_w {
                        plane.pixel_mut(y, x).copy_from_slice(flat.pixel(y, x));
                    }
                }
                plane
            };
            for kernel in kernels() {
                for (with_residual, relu) in [(false, false), (true, true)] {
                    let mut want = expected.clone();
                    if with_residual {
                        want = (want + &shortcut)?;
                    }
                    if relu {
                        want = want.relu()?;
                    }
                    let want = want.flatten_all()?.to_vec1::<f32>()?;
                    for parallel in [false, true] {
                        let mut output = Plane::zeros(out_h, out_w, o, 1);
                        let epilogue = Epilogue {
                            residual: with_residual.then_some(&residual),
                            relu,
                        };
                        convolve_with(
                            &conv,
                            &input,
                            padding,
                            &mut output,
                            epilogue,
                            parallel,
                            kernel,
                        );
                        let got = planar(&output);
                        let worst = got
                            .iter()
                            .zip(&want)
                            .map(|(a, b)| (a - b).abs())
                            .fold(0.0, f32::max);
                        assert!(
                            worst < 1e-3,
                            "{kernel:?} c={c} o={o} k={k} s={stride} size={size}: {worst}"
                        );
                        // The border stays zero: the next convolution pads with it.
                        let interior: f32 = got.iter().map(|v| v.abs()).sum();
                        let all: f32 = output.values.iter().map(|v| v.abs()).sum();
                        assert!((interior - all).abs() <= 1e-3 * all.max(1.0));
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn pooling_matches_candle() -> candle_core::Result<()> {
        let device = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 5, 9, 9), &device)?;
        let plane = Plane::from_planar(&x.flatten_all()?.to_vec1()?, 5, 9, 9);
        let max = planar(&plane.max_pool(3, 2, 1));
        assert_eq!(
            max,
            x.max_pool2d_with_stride(3, 2)?
                .flatten_all()?
                .to_vec1::<f32>()?
        );
        let average = plane.average_pool_2x2(7, 1);
        assert_eq!(average.dims(), (4, 4, 7));
        let expected = x
            .avg_pool2d_with_stride(2, 2)?
            .pad_with_zeros(1, 0, 2)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for (a, b) in planar(&average).iter().zip(&expected) {
            assert!((a - b).abs() < 1e-6);
        }
        Ok(())
    }
}
