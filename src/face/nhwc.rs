//! The recognition network's CPU path: activations kept NHWC (channels innermost) with a
//! zero border, every convolution computed directly by a register-tiled kernel. In NHWC
//! one row of a k x k window is k*C consecutive floats, so the kernel reads the input
//! where it lies: no im2col gather, no zeroed column buffers, no packing of the input,
//! and bias, shortcut and ReLU applied while the sums are still in registers (onnxruntime's
//! MLAS gets the same from channel-blocked NCHWc tensors). The 3x3 convolutions of stride
//! 1 can run by Winograd's F(2x2, 3x3) instead, on the same kernel.

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

    /// `count` zero planes: each freshly allocated (the allocator hands out zeroed pages
    /// the cores fill in parallel), not cloned from one.
    pub fn zeros_batch(
        count: usize,
        (height, width, channels): (usize, usize, usize),
        border: usize,
    ) -> Vec<Self> {
        (0..count)
            .map(|_| Self::zeros(height, width, channels, border))
            .collect()
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

    /// `size` x `size` max pooling with `stride`, no padding, into a plane with `border`;
    /// rows shared out over the rayon pool.
    pub fn max_pool(&self, size: usize, stride: usize, border: usize) -> Plane {
        use rayon::prelude::*;
        let out_h = (self.height - size) / stride + 1;
        let out_w = (self.width - size) / stride + 1;
        let mut out = Plane::zeros(out_h, out_w, self.channels, border);
        let (row_stride, channels) = (out.row_stride(), out.channels);
        out.values
            .par_chunks_mut(row_stride)
            .skip(border)
            .take(out_h)
            .enumerate()
            .for_each(|(y, row)| {
                for x in 0..out_w {
                    let target = &mut row[(x + border) * channels..][..channels];
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
            });
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
    /// Added to the sums: per image a plane shaped like the output (a residual block's
    /// shortcut).
    pub residual: Option<&'a [Plane]>,
    pub relu: bool,
}

/// For each image of a batch: `output`'s interior pixels (y, x) < the convolution's
/// output size = the epilogue of bias + the convolution of `input` zero-padded by
/// `padding`. An output may be larger: its other pixels keep their values. The work is
/// shared out over the rayon pool by blocks of output channels first, so that each block
/// of weights is read once for the whole batch.
pub fn convolve(
    conv: &PackedConv,
    inputs: &[Plane],
    padding: usize,
    outputs: &mut [Plane],
    epilogue: Epilogue,
) {
    convolve_with(conv, inputs, padding, outputs, epilogue, Kernel::fastest())
}

/// Checks a batch's planes against each other, a convolution's channels and its padding,
/// and returns the addresses of the inputs', outputs' and residuals' values (0 for no
/// residual); None for an empty batch.
fn batch_addresses(
    (in_channels, out_channels): (usize, usize),
    padding: usize,
    inputs: &[Plane],
    outputs: &mut [Plane],
    epilogue: Epilogue,
) -> Option<Vec<(usize, usize, usize)>> {
    assert_eq!(inputs.len(), outputs.len());
    let first_input = inputs.first()?;
    assert!(
        first_input.border >= padding,
        "the input's border holds the padding"
    );
    let first_output = (outputs[0].dims(), outputs[0].border);
    let residuals = epilogue
        .residual
        .inspect(|planes| assert_eq!(planes.len(), outputs.len()));
    let addresses = inputs
        .iter()
        .zip(outputs.iter_mut())
        .enumerate()
        .map(|(image, (input, output))| {
            assert!(input.same_geometry(first_input));
            assert_eq!((output.dims(), output.border), first_output);
            assert_eq!(input.channels, in_channels);
            assert_eq!(output.channels, out_channels);
            let residual = residuals.map_or(0, |planes| {
                assert!(planes[image].same_geometry(output));
                planes[image].values.as_ptr() as usize
            });
            (
                input.values.as_ptr() as usize,
                output.values.as_mut_ptr() as usize,
                residual,
            )
        })
        .collect();
    Some(addresses)
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
    inputs: &[Plane],
    padding: usize,
    outputs: &mut [Plane],
    epilogue: Epilogue,
    kernel: Kernel,
) {
    let channels = (conv.in_channels, conv.out_channels);
    let Some(addresses) = batch_addresses(channels, padding, inputs, outputs, epilogue) else {
        return;
    };
    let (input, output) = (&inputs[0], &outputs[0]);
    let (k, s) = (conv.kernel, conv.stride);
    let out_h = conv.output_size(input.height, padding);
    let out_w = conv.output_size(input.width, padding);
    assert!(out_h <= output.height && out_w <= output.width);
    let (tile_starts, tile_pixels) = tile_starts(out_w);
    let per_block = k * k * conv.in_channels;
    let first_window = input.border - padding;
    let (in_stride, out_stride) = (input.row_stride(), output.row_stride());
    let (out_channels, out_border) = (output.channels, output.border);
    let images = inputs.len();
    // Work items (block of 32 output channels, image, output row), block-major.
    let run = |items: std::ops::Range<usize>| {
        for item in items {
            let block = item / (images * out_h);
            let (image, y) = (item / out_h % images, item % out_h);
            let (input_values, out_values, residual_values) = addresses[image];
            for &x in &tile_starts {
                let window =
                    (y * s + first_window) * in_stride + (x * s + first_window) * input.channels;
                let target =
                    (y + out_border) * out_stride + (x + out_border) * out_channels + block * LANES;
                let tile = Tile {
                    input: (input_values as *const f32).wrapping_add(window),
                    step: s * input.channels,
                    row_stride: in_stride,
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
                // SAFETY: the asserts above keep every window inside its input (whose
                // border holds the padding, and out_h/out_w are what fits), every output
                // pixel inside its output and residual, which share a geometry. Each item
                // writes only its own row of its own block of channels of its own image;
                // two tiles of a row overlap only inside one item, with equal values.
                unsafe { run_tile(&tile, tile_pixels, kernel) };
            }
        }
    };
    share_out(conv.out_channels / LANES * images * out_h, run);
}

/// Runs `run` over `0..items` in contiguous runs handed out as the rayon pool's threads
/// come for them. The calling thread starts at once; a sleeping worker wakes some tens
/// of microseconds later on a virtual machine, and with fixed halves the caller would
/// wait that long for it at the end of every layer.
fn share_out(items: usize, run: impl Fn(std::ops::Range<usize>) + Sync) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = rayon::current_num_threads();
    if threads == 1 || items < 2 {
        return run(0..items);
    }
    let per_run = items.div_ceil(4 * threads);
    let next = AtomicUsize::new(0);
    let work = || {
        loop {
            let first = next.fetch_add(per_run, Ordering::Relaxed);
            if first >= items {
                break;
            }
            run(first..(first + per_run).min(items));
        }
    };
    rayon::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|_| work());
        }
        work();
    });
}

/// Where the tiles of a run of `width` output pixels start, and their common width:
/// equal tiles, the last starting early rather than running short, so that every tile is
/// a full one (its overlap is computed twice, identically).
fn tile_starts(width: usize) -> (Vec<usize>, usize) {
    let tiles = width.div_ceil(MAX_TILE_PIXELS);
    let pixels = width.div_ceil(tiles);
    let starts = (0..tiles)
        .map(|tile| (tile * pixels).min(width - pixels))
        .collect();
    (starts, pixels)
}

/// A 3x3 'same' convolution of stride 1 by Winograd's F(2x2, 3x3): each 2x2 patch of
/// outputs from the 4x4 inputs around it with 16 multiplications per channel pair
/// instead of 36. The 16 are 16 matrix products over all patches at once, run by the tile
/// kernel; the transforms around them are additions, vectorised over channels.
pub struct WinogradConv {
    /// Per transformed position (16), per block of 32 output channels, per input channel:
    /// the block's 32 transformed weights.
    weights: Vec<Lanes>,
    bias: Vec<f32>,
    in_channels: usize,
    out_channels: usize,
}

/// The matrix products' bias: the real one is added after the output transform.
const NO_BIAS: Lanes = Lanes([0.0; LANES]);

impl WinogradConv {
    /// `weight` holds [O, C, 3, 3] row-major (candle's layout), `bias` [O].
    pub fn new(weight: &[f32], bias: &[f32], (out_channels, in_channels): (usize, usize)) -> Self {
        const G: [[f32; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        assert_eq!(weight.len(), out_channels * in_channels * 9);
        assert_eq!(bias.len(), out_channels);
        assert_eq!(
            out_channels % LANES,
            0,
            "output channels come in blocks of {LANES}"
        );
        assert_eq!(
            in_channels % 16,
            0,
            "the transforms take 16 channels at a time"
        );
        let blocks = out_channels / LANES;
        let mut weights = vec![Lanes([0.0; LANES]); 16 * blocks * in_channels];
        for (pair, kernel) in weight.chunks_exact(9).enumerate() {
            let (out_channel, channel) = (pair / in_channels, pair % in_channels);
            // G g G^T
            for (position, a, b) in (0..16).map(|p| (p, p / 4, p % 4)) {
                let value: f32 = (0..9)
                    .map(|tap| G[a][tap / 3] * kernel[tap] * G[b][tap % 3])
                    .sum();
                let index = (position * blocks + out_channel / LANES) * in_channels + channel;
                weights[index].0[out_channel % LANES] = value;
            }
        }
        Self {
            weights,
            bias: bias.to_vec(),
            in_channels,
            out_channels,
        }
    }
}

/// As `convolve` with padding 1, for a `WinogradConv`.
pub fn convolve_winograd(
    conv: &WinogradConv,
    inputs: &[Plane],
    outputs: &mut [Plane],
    epilogue: Epilogue,
) {
    convolve_winograd_with(conv, inputs, outputs, epilogue, Kernel::fastest())
}

fn convolve_winograd_with(
    conv: &WinogradConv,
    inputs: &[Plane],
    outputs: &mut [Plane],
    epilogue: Epilogue,
    kernel: Kernel,
) {
    let channels = (conv.in_channels, conv.out_channels);
    let Some(addresses) = batch_addresses(channels, 1, inputs, outputs, epilogue) else {
        return;
    };
    let (h, w, channels) = inputs[0].dims();
    assert!(h <= outputs[0].height && w <= outputs[0].width);
    let out_channels = conv.out_channels;
    let blocks = out_channels / LANES;
    let columns = w.div_ceil(2);
    let patches = h.div_ceil(2) * columns;
    let geometry = Plane {
        values: Vec::new(),
        ..outputs[0]
    };
    // One tile of patches of one image per work item, transformed, multiplied and
    // transformed back while its values are still in the core's caches.
    // As many tiles as make the work items divide evenly over the threads (a single
    // 8x8 image is two tiles of 8 patches, not 12 and 4).
    let threads = rayon::current_num_threads();
    let mut tiles = patches.div_ceil(MAX_TILE_PIXELS);
    while !(inputs.len() * tiles).is_multiple_of(threads) && tiles < patches {
        tiles += 1;
    }
    share_out(inputs.len() * tiles, |items| {
        let mut transformed = vec![0f32; 16 * MAX_TILE_PIXELS * channels];
        let mut products = vec![0f32; 16 * MAX_TILE_PIXELS * out_channels];
        for item in items {
            let (image, tile) = (item / tiles, item % tiles);
            let tile = tile * patches / tiles..(tile + 1) * patches / tiles;
            let count = tile.len();
            let transformed = &mut transformed[..16 * count * channels];
            let products = &mut products[..16 * count * out_channels];
            let residual = epilogue.residual.map(|planes| &planes[image]);
            // SAFETY: the local buffers hold what each call reads and writes; the output
            // transform writes only this item's patches' pixels.
            unsafe {
                transform_inputs(kernel, &inputs[image], (tile.clone(), columns), transformed);
                for position in 0..16 {
                    for block in 0..blocks {
                        let tile = Tile {
                            input: transformed[position * count * channels..].as_ptr(),
                            step: channels,
                            row_stride: 0,
                            rows: 1,
                            depth: channels,
                            weights: conv.weights[(position * blocks + block) * channels..].as_ptr()
                                as *const f32,
                            bias: NO_BIAS.0.as_ptr(),
                            out: products[position * count * out_channels + block * LANES..]
                                .as_mut_ptr(),
                            out_step: out_channels,
                            residual: std::ptr::null(),
                            relu: false,
                        };
                        run_tile(&tile, count, kernel);
                    }
                }
                transform_outputs(
                    kernel,
                    products,
                    (tile, columns),
                    &conv.bias,
                    (&geometry, (h, w)),
                    addresses[image].1 as *mut f32,
                    (residual, epilogue.relu),
                );
            }
        }
    });
}

/// The patches of a tile, and how many patches make a row of the plane.
type PatchTile = (std::ops::Range<usize>, usize);

/// B^T d B for a tile of patches into `transformed` ([16][patches in the tile][C]); d is
/// the 4x4 inputs from one pixel above and left of the patch, zero beyond the plane.
///
/// # Safety
/// `kernel` must run on this CPU.
unsafe fn transform_inputs(
    kernel: Kernel,
    input: &Plane,
    tile: PatchTile,
    transformed: &mut [f32],
) {
    // SAFETY: the caller checked that `kernel` runs on this CPU.
    unsafe {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => transform_inputs_avx512(input, tile, transformed),
            Kernel::Portable => transform_inputs_generic(input, tile, transformed),
        }
    }
}

/// The generic transform compiled for AVX-512, so its loops vectorise 16 wide.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transform_inputs_avx512(input: &Plane, tile: PatchTile, transformed: &mut [f32]) {
    transform_inputs_generic(input, tile, transformed)
}

#[inline(always)]
fn transform_inputs_generic(input: &Plane, (tile, columns): PatchTile, transformed: &mut [f32]) {
    let channels = input.channels;
    let count = tile.len();
    let padded = (
        input.height + 2 * input.border,
        input.width + 2 * input.border,
    );
    let zeros = vec![0f32; channels];
    for (index, patch) in tile.enumerate() {
        let (row, column) = (patch / columns, patch % columns);
        let mut d = [&zeros[..]; 16];
        for (k, pixel) in d.iter_mut().enumerate() {
            let y = 2 * row + k / 4 + input.border - 1;
            let x = 2 * column + k % 4 + input.border - 1;
            if y < padded.0 && x < padded.1 {
                let start = y * input.row_stride() + x * channels;
                *pixel = &input.values[start..start + channels];
            }
        }
        // Fixed-size arrays throughout, so that the compiler keeps each in one vector.
        for chunk in (0..channels).step_by(16) {
            let mut v = [[0f32; 16]; 16];
            for (values, pixel) in v.iter_mut().zip(&d) {
                values.copy_from_slice(&pixel[chunk..chunk + 16]);
            }
            // B^T down each column, then along each row.
            let mut t = [[0f32; 16]; 16];
            for j in 0..4 {
                for l in 0..16 {
                    let (d0, d1, d2, d3) = (v[j][l], v[4 + j][l], v[8 + j][l], v[12 + j][l]);
                    t[j][l] = d0 - d2;
                    t[4 + j][l] = d1 + d2;
                    t[8 + j][l] = d2 - d1;
                    t[12 + j][l] = d1 - d3;
                }
            }
            let mut u = [[0f32; 16]; 16];
            for i in 0..4 {
                for l in 0..16 {
                    let (t0, t1, t2, t3) = (
                        t[4 * i][l],
                        t[4 * i + 1][l],
                        t[4 * i + 2][l],
                        t[4 * i + 3][l],
                    );
                    u[4 * i][l] = t0 - t2;
                    u[4 * i + 1][l] = t1 + t2;
                    u[4 * i + 2][l] = t2 - t1;
                    u[4 * i + 3][l] = t1 - t3;
                }
            }
            for (position, values) in u.iter().enumerate() {
                let at = (position * count + index) * channels + chunk;
                transformed[at..at + 16].copy_from_slice(values);
            }
        }
    }
}

/// A^T m A for a tile of patches from `products` ([16][patches in the tile][O]), plus
/// bias and the epilogue, into the output plane at `out` (whose geometry `geometry`
/// gives), for the output pixels inside `valid` (height, width).
///
/// # Safety
/// `out` must be `geometry`'s values, with no other thread writing this tile's pixels;
/// `kernel` must run on this CPU.
unsafe fn transform_outputs(
    kernel: Kernel,
    products: &[f32],
    tile: PatchTile,
    bias: &[f32],
    geometry: (&Plane, (usize, usize)),
    out: *mut f32,
    epilogue: (Option<&Plane>, bool),
) {
    // SAFETY: what the caller promised is what each variant needs.
    unsafe {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                transform_outputs_avx512(products, tile, bias, geometry, out, epilogue)
            }
            Kernel::Portable => {
                transform_outputs_generic(products, tile, bias, geometry, out, epilogue)
            }
        }
    }
}

/// # Safety
/// As `transform_outputs`, on a CPU with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transform_outputs_avx512(
    products: &[f32],
    tile: PatchTile,
    bias: &[f32],
    geometry: (&Plane, (usize, usize)),
    out: *mut f32,
    epilogue: (Option<&Plane>, bool),
) {
    // SAFETY: passed on from this function's own contract.
    unsafe { transform_outputs_generic(products, tile, bias, geometry, out, epilogue) }
}

/// # Safety
/// As `transform_outputs`.
#[inline(always)]
unsafe fn transform_outputs_generic(
    products: &[f32],
    (tile, columns): PatchTile,
    bias: &[f32],
    (geometry, (valid_h, valid_w)): (&Plane, (usize, usize)),
    out: *mut f32,
    (residual, relu): (Option<&Plane>, bool),
) {
    let out_channels = bias.len();
    let count = tile.len();
    for (index, patch) in tile.enumerate() {
        let (row, column) = (patch / columns, patch % columns);
        for chunk in (0..out_channels).step_by(16) {
            let mut m = [[0f32; 16]; 16];
            for (position, values) in m.iter_mut().enumerate() {
                let start = (position * count + index) * out_channels + chunk;
                values.copy_from_slice(&products[start..start + 16]);
            }
            // A^T down each column, then along each row.
            let mut s = [[0f32; 16]; 8];
            for j in 0..4 {
                for l in 0..16 {
                    let (m0, m1, m2, m3) = (m[j][l], m[4 + j][l], m[8 + j][l], m[12 + j][l]);
                    s[j][l] = m0 + m1 + m2;
                    s[4 + j][l] = m1 - m2 - m3;
                }
            }
            let mut bias_lanes = [0f32; 16];
            bias_lanes.copy_from_slice(&bias[chunk..chunk + 16]);
            for a in 0..2 {
                let y = 2 * row + a;
                for b in 0..2 {
                    let x = 2 * column + b;
                    if y >= valid_h || x >= valid_w {
                        continue;
                    }
                    let at = geometry.index(y, x) + chunk;
                    let mut shortcut = [0f32; 16];
                    if let Some(residual) = residual {
                        shortcut.copy_from_slice(&residual.values[at..at + 16]);
                    }
                    let mut value = [0f32; 16];
                    for l in 0..16 {
                        let (s0, s1, s2, s3) = (
                            s[4 * a][l],
                            s[4 * a + 1][l],
                            s[4 * a + 2][l],
                            s[4 * a + 3][l],
                        );
                        let sum = if b == 0 { s0 + s1 + s2 } else { s1 - s2 - s3 };
                        value[l] = sum + bias_lanes[l] + shortcut[l];
                        if relu {
                            value[l] = value[l].max(0.0);
                        }
                    }
                    // SAFETY: `at` is a pixel of `geometry` inside `valid`, and `out` holds
                    // `geometry`'s values, which no other thread writes for this patch.
                    unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), out.add(at), 16) };
                }
            }
        }
    }
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
    // SAFETY: passed on from this function's own contract.
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
    // SAFETY: the tile's addresses are valid (the caller's contract) and 64-byte aligned
    // where loaded aligned (weights and bias are packed so at load).
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
    // SAFETY: the tile's addresses are valid for what it reads and writes (the caller's
    // contract); bias and weights hold whole blocks of `LANES`.
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
    use candle_core::{DType, Device, Tensor};

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

    /// A random image as a plane with `border`, and as a candle tensor.
    fn random_plane(
        (c, h, w): (usize, usize, usize),
        border: usize,
    ) -> candle_core::Result<(Plane, Tensor)> {
        let x = Tensor::randn(0f32, 1.0, (1, c, h, w), &Device::Cpu)?;
        let flat = Plane::from_planar(&x.flatten_all()?.to_vec1()?, c, h, w);
        let mut plane = Plane::zeros(h, w, c, border);
        for y in 0..h {
            for x in 0..w {
                plane.pixel_mut(y, x).copy_from_slice(flat.pixel(y, x));
            }
        }
        Ok((plane, x))
    }

    /// Every geometry the network uses, against candle's own conv2d, with and without
    /// the shortcut and the ReLU, on both kernels, direct and (3x3, stride 1) Winograd,
    /// for a batch of two images whose outputs are larger than the convolution's.
    #[test]
    fn convolutions_match_candle_conv2d() -> candle_core::Result<()> {
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
            let weight = Tensor::randn(0f32, 0.3, (o, c, k, k), &device)?;
            let bias = Tensor::randn(0f32, 1.0, o, &device)?;
            let (weight_values, bias_values) = (weight.flatten_all()?.to_vec1()?, bias.to_vec1()?);
            let direct = PackedConv::new(&weight_values, &bias_values, (o, c, k), stride);
            let winograd = (k == 3 && stride == 1)
                .then(|| WinogradConv::new(&weight_values, &bias_values, (o, c)));
            let out_size = direct.output_size(size, padding);
            // One more row and column than the convolution fills, as a downsampling
            // block's shortcut has at odd sizes.
            let plane_size = out_size + 1;
            let mut inputs = Vec::new();
            let mut residuals = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..2 {
                let (input, x) = random_plane((c, size, size), border)?;
                let (residual, shortcut) = random_plane((o, plane_size, plane_size), 1)?;
                let convolved = x
                    .conv2d(&weight, padding, stride, 1, 1)?
                    .broadcast_add(&bias.reshape((1, o, 1, 1))?)?
                    .pad_with_zeros(2, 0, 1)?
                    .pad_with_zeros(3, 0, 1)?;
                // Where the convolution does not reach the residual shows through.
                let reached = Tensor::ones((1, o, out_size, out_size), DType::F32, &device)?
                    .pad_with_zeros(2, 0, 1)?
                    .pad_with_zeros(3, 0, 1)?;
                expected.push((convolved, reached, shortcut));
                inputs.push(input);
                residuals.push(residual);
            }
            for kernel in kernels() {
                for (with_residual, relu) in [(false, false), (true, true)] {
                    let epilogue = Epilogue {
                        residual: with_residual.then_some(&residuals[..]),
                        relu,
                    };
                    let mut runs: Vec<(&str, Vec<Plane>)> = Vec::new();
                    let fresh = || {
                        if with_residual {
                            residuals.clone()
                        } else {
                            Plane::zeros_batch(2, (plane_size, plane_size, o), 1)
                        }
                    };
                    let mut outputs = fresh();
                    convolve_with(&direct, &inputs, padding, &mut outputs, epilogue, kernel);
                    runs.push(("direct", outputs));
                    if let Some(winograd) = &winograd {
                        let mut outputs = fresh();
                        convolve_winograd_with(winograd, &inputs, &mut outputs, epilogue, kernel);
                        runs.push(("winograd", outputs));
                    }
                    for (name, outputs) in runs {
                        for (output, (convolved, reached, shortcut)) in
                            outputs.iter().zip(&expected)
                        {
                            let mut want = convolved.clone();
                            if with_residual {
                                let outside = (1.0 - reached)?;
                                want = ((want * reached)? + shortcut.broadcast_mul(&outside)?)?;
                                want = (want + (shortcut * reached)?)?;
                            }
                            if relu {
                                want = (want.relu()? * reached)?;
                                if with_residual {
                                    let outside = (1.0 - reached)?;
                                    want = (want + (shortcut * outside)?)?;
                                }
                            }
                            let want = want.flatten_all()?.to_vec1::<f32>()?;
                            let got = planar(output);
                            let worst = got
                                .iter()
                                .zip(&want)
                                .map(|(a, b)| (a - b).abs())
                                .fold(0.0, f32::max);
                            assert!(
                                worst < 1e-3,
                                "{name} {kernel:?} c={c} o={o} k={k} s={stride} size={size}: {worst}"
                            );
                            // The border stays zero: the next convolution pads with it.
                            let interior: f32 = got.iter().map(|v| v.abs()).sum();
                            let all: f32 = output.values.iter().map(|v| v.abs()).sum();
                            assert!((interior - all).abs() <= 1e-3 * all.max(1.0));
                        }
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
