//! Direct convolutions on NHWC planes by one register-tiled kernel. In NHWC one row of a
//! k x k window is k*C consecutive floats, so the kernel reads the input where it lies:
//! no im2col gather, no zeroed column buffers, no packing of the input; and bias,
//! shortcut and activation are applied while the sums are still in registers
//! (onnxruntime's MLAS gets the same from channel-blocked NCHWc tensors). A 1x1
//! convolution (a separable convolution's pointwise half) is the same kernel with a
//! one-pixel window.
//!
//! The tile kernel is written once, generic over `simd::Vector`: a tile is `PIXELS` output
//! pixels by `VECS` vectors of output channels, as many as the instruction set's
//! registers hold (`tile_shape`). A tile skips the window rows and columns that lie
//! wholly in the padding, and fetches ahead the weights of a layer too large for the
//! caches (`streams_weights`).

use super::simd::{Kernel, Vector};
use super::{Isa, Plane, share_out};

/// The widest block of output channels a tile computes.
pub(super) const MAX_BLOCK: usize = 32;

/// 16 floats on a cache line boundary, so that no block's weight loads straddle two.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(super) struct Aligned(pub(super) [f32; 16]);

/// Weights (or any per-block values) in 64-byte-aligned storage.
pub(super) fn aligned(values: &[f32]) -> Vec<Aligned> {
    values
        .chunks(16)
        .map(|chunk| {
            let mut lanes = [0.0; 16];
            lanes[..chunk.len()].copy_from_slice(chunk);
            Aligned(lanes)
        })
        .collect()
}

/// What a tile does to its sums before storing them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    None,
    Relu,
    /// `max(x, slope * x)`, for a slope under 1.
    Leaky(f32),
}

impl Activation {
    pub fn apply(self, value: f32) -> f32 {
        match self {
            Activation::None => value,
            Activation::Relu => value.max(0.0),
            Activation::Leaky(slope) => value.max(slope * value),
        }
    }
}

/// What happens to a convolution's sums before they are stored.
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    /// Added to the sums: per image a plane shaped like the output (a residual block's
    /// shortcut, a dense block's running sum).
    pub residual: Option<&'a [Plane]>,
    pub activation: Activation,
}

impl Epilogue<'_> {
    pub const NONE: Epilogue<'static> = Epilogue {
        residual: None,
        activation: Activation::None,
    };

    pub fn activation(activation: Activation) -> Epilogue<'static> {
        Epilogue {
            residual: None,
            activation,
        }
    }
}

/// A convolution's weights in the kernel's order: per block of output channels, per
/// window row, per (window column, input channel), the block's weights. Output channels
/// come in blocks of 32 (16 when the count is not a multiple of 32); a count that is
/// neither is padded with zero filters, and its output plane must hold the padding.
pub struct PackedConv {
    weights: Vec<Aligned>,
    /// Per block.
    bias: Vec<Aligned>,
    in_channels: usize,
    /// Output channels as stored: a multiple of the block.
    out_channels: usize,
    block: usize,
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
        let block = if out_channels.is_multiple_of(MAX_BLOCK) {
            MAX_BLOCK
        } else {
            16
        };
        let stored = out_channels.next_multiple_of(block);
        let per_block = kernel * kernel * in_channels;
        let mut packed = vec![0.0; stored * per_block];
        for (index, value) in packed.iter_mut().enumerate() {
            let (step, lane) = (index / block, index % block);
            let (block_index, within) = (step / per_block, step % per_block);
            let out_channel = block_index * block + lane;
            if out_channel >= out_channels {
                continue;
            }
            let (row, column, channel) = (
                within / (kernel * in_channels),
                within / in_channels % kernel,
                within % in_channels,
            );
            *value =
                weight[((out_channel * in_channels + channel) * kernel + row) * kernel + column];
        }
        let mut bias = bias.to_vec();
        bias.resize(stored, 0.0);
        Self {
            weights: aligned(&packed),
            bias: aligned(&bias),
            in_channels,
            out_channels: stored,
            block,
            kernel,
            stride,
        }
    }

    /// The output size along one dimension of `size` inputs, `before` and `after` of them
    /// padding.
    pub fn output_size(&self, size: usize, (before, after): (usize, usize)) -> usize {
        (size + before + after - self.kernel) / self.stride + 1
    }

    /// Output channels as the output plane holds them.
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }
}

/// One tile's addresses: `pixels` output pixels x one block of output channels.
#[derive(Clone, Copy)]
pub(super) struct Tile {
    /// The first pixel's window, top left.
    pub input: *const f32,
    /// Floats between two neighbouring output pixels' windows.
    pub step: usize,
    /// Floats between two window rows.
    pub row_stride: usize,
    pub rows: usize,
    /// Floats of a window row the tile reads: k*C, less the columns that are padding for
    /// every pixel of the tile.
    pub depth: usize,
    pub weights: *const f32,
    /// Floats between the weights of two consecutive window positions: the packed block,
    /// of which a tile may compute a part.
    pub weight_step: usize,
    /// Floats between the weights of two window rows.
    pub weight_row_stride: usize,
    /// Whether to fetch the weights ahead of their use: for a layer whose weights come
    /// from memory rather than the core's caches (`streams_weights`).
    pub prefetch: bool,
    pub bias: *const f32,
    pub out: *mut f32,
    /// Floats between two neighbouring output pixels, in `out` and `residual` alike.
    pub out_step: usize,
    /// Null without a residual.
    pub residual: *const f32,
    pub activation: Activation,
}

/// The tiles of one work item: one packed block of output channels, as tiles of
/// `tile_channels` channels, at several output columns of a row.
pub(super) struct TileRow<'a> {
    /// The tile at output column 0 with its whole window.
    pub first: Tile,
    pub starts: &'a [usize],
    /// Input and output floats per output column.
    pub input_per_column: usize,
    pub output_per_column: usize,
    pub pixels: usize,
    pub block: usize,
    pub tile_channels: usize,
    pub columns: WindowColumns,
}

/// A window's columns along the input row, so that a tile skips the columns that fall in
/// the padding for all its pixels (at a row's ends of a small plane, most of the window:
/// the last block's 1x1 output reads one column of three).
#[derive(Clone, Copy)]
pub(super) struct WindowColumns {
    pub kernel: usize,
    pub stride: usize,
    pub channels: usize,
    /// Padding before the input row, and the input row's width.
    pub padding: usize,
    pub width: usize,
}

impl WindowColumns {
    /// A matrix product's 'window': one column of `channels`, never padding.
    pub fn one(channels: usize) -> WindowColumns {
        WindowColumns {
            kernel: 1,
            stride: 0,
            channels,
            padding: 0,
            width: 1,
        }
    }

    /// The window columns holding input for output columns `x..x + pixels`.
    fn inside(self, x: usize, pixels: usize) -> std::ops::Range<usize> {
        let first = self.padding.saturating_sub((x + pixels - 1) * self.stride);
        let end = (self.width + self.padding).saturating_sub(x * self.stride);
        first..end.min(self.kernel).max(first)
    }
}

impl Kernel for TileRow<'_> {
    type Output = ();

    #[inline(always)]
    fn run<V: Vector>(self) {
        let offset = |pointer: *const f32, by: usize| {
            if pointer.is_null() {
                pointer
            } else {
                pointer.wrapping_add(by)
            }
        };
        for part in (0..self.block).step_by(self.tile_channels) {
            for &x in self.starts {
                let out = x * self.output_per_column + part;
                let columns = self.columns.inside(x, self.pixels);
                let skipped = columns.start * self.columns.channels;
                let tile = Tile {
                    input: self
                        .first
                        .input
                        .wrapping_add(x * self.input_per_column + skipped),
                    depth: columns.len() * self.columns.channels,
                    weights: self
                        .first
                        .weights
                        .wrapping_add(part + skipped * self.first.weight_step),
                    bias: self.first.bias.wrapping_add(part),
                    out: self.first.out.wrapping_add(out),
                    residual: offset(self.first.residual, out),
                    ..self.first
                };
                // SAFETY: `TileRow`'s makers guarantee every tile's addresses (`start`).
                unsafe { dispatch::<V>(&tile, self.tile_channels / V::LANES, self.pixels) };
            }
        }
    }
}

impl TileRow<'_> {
    /// # Safety
    /// Every tile's addresses must be valid for what it reads and writes: its windows
    /// inside the input, its pixels inside the output (and residual), no other thread
    /// writing them; `isa` must run on this CPU.
    pub(super) unsafe fn start(self, isa: Isa) {
        isa.dispatch(self);
    }
}

/// A tile's shape on `isa` for a packed block of `block` output channels and rows of
/// `width` output pixels: (output channels, most pixels), as many vectors of sums as the
/// registers take with room for the weights and one broadcast value: 32 x 12 in
/// AVX-512's 32 registers, 16 x 6 in AVX2's 16 (12 sums, 2 weights, 1 value) and in
/// NEON's 32, 8 x 6 in SSE2's 16.
///
/// On AVX2 a row of at most 5 pixels (the deepest layers: few pixels, many weights, each
/// read about once per row either way) takes 32 x 3: a block's weights in one sweep of
/// whole cache lines rather than two sweeps of alternate halves (measured on a Zen 3
/// core: the 256-channel 4x4 convolutions 0.83 -> 0.61 ms, wider rows slower).
pub(super) fn tile_shape(isa: Isa, block: usize, width: usize) -> (usize, usize) {
    match isa {
        Isa::Avx512 => (block, 12),
        Isa::Avx2 if block == MAX_BLOCK && width <= 5 => (MAX_BLOCK, 3),
        Isa::Avx2 | Isa::Neon => (16, 6),
        Isa::Portable => (8, 6),
    }
}

macro_rules! tile_shapes {
    ($tile:ident, $vecs:ident, $pixels:ident; $($v:literal => [$($p:literal)*])*) => {
        match ($vecs, $pixels) {
            $($(($v, $p) => tile::<V, $p, $v>($tile),)*)*
            _ => unreachable!("no tile of {} vectors x {} pixels", $vecs, $pixels),
        }
    };
}

/// How far ahead of its use a weight is fetched, in floats (4 KiB: measured best of
/// 1, 4 and 16 KiB on a Zen 3 core, where it took the 128-channel Winograd layers from
/// 0.39 to 0.29 ms).
const PREFETCH_AHEAD: usize = 1024;

/// Whether a layer's weights are too many to stay in a core's caches from one image to
/// the next (half of the smallest level-2 cache common on PCs, 512 KiB): the tile
/// kernel then fetches them ahead. Weights that do stay gain nothing from it and lose
/// the instructions (measured: the stem and the 32-channel layers 3-5% slower).
pub(super) fn streams_weights(floats: usize) -> bool {
    floats * std::mem::size_of::<f32>() > 256 * 1024
}

/// Runs the tile kernel for `vecs` vectors x `pixels` pixels.
///
/// # Safety
/// As `TileRow::start`.
#[inline(always)]
pub(super) unsafe fn dispatch<V: Vector>(tile: &Tile, vecs: usize, pixels: usize) {
    // SAFETY: passed on.
    unsafe {
        match V::LANES {
            16 => tile_shapes!(tile, vecs, pixels;
                1 => [1 2 3 4 5 6 7 8 9 10 11 12] 2 => [1 2 3 4 5 6 7 8 9 10 11 12]),
            _ => tile_shapes!(tile, vecs, pixels; 2 => [1 2 3 4 5 6] 4 => [1 2 3 4 5 6]),
        }
    }
}

/// `PIXELS` output pixels x `VECS` vectors of output channels: the sums start at the
/// bias, take one multiply-add per weight, and go through the epilogue on their way out.
///
/// # Safety
/// As `TileRow::start`.
#[inline(always)]
unsafe fn tile<V: Vector, const PIXELS: usize, const VECS: usize>(tile: &Tile) {
    let lanes = V::LANES;
    // SAFETY: every address below is one the caller vouched for.
    unsafe {
        let bias: [V; VECS] = std::array::from_fn(|v| V::load(tile.bias.add(v * lanes)));
        let mut sums = [bias; PIXELS];
        for row in 0..tile.rows {
            let window_row = tile.input.add(row * tile.row_stride);
            let mut weights = tile.weights.add(row * tile.weight_row_stride);
            for offset in 0..tile.depth {
                if tile.prefetch {
                    // Two cache lines: one step of a 32-channel block.
                    V::prefetch(weights.wrapping_add(PREFETCH_AHEAD));
                    V::prefetch(weights.wrapping_add(PREFETCH_AHEAD + 16));
                }
                let w: [V; VECS] = std::array::from_fn(|v| V::load(weights.add(v * lanes)));
                weights = weights.add(tile.weight_step);
                let column = window_row.add(offset);
                for (pixel, sum) in sums.iter_mut().enumerate() {
                    let value = V::splat(*column.add(pixel * tile.step));
                    for (s, &w) in sum.iter_mut().zip(&w) {
                        *s = V::mul_add(value, w, *s);
                    }
                }
            }
        }
        let zero = V::splat(0.0);
        for (pixel, sum) in sums.iter().enumerate() {
            let at = pixel * tile.out_step;
            for (v, &vector) in sum.iter().enumerate() {
                let mut vector = vector;
                if !tile.residual.is_null() {
                    vector = vector.add(V::load(tile.residual.add(at + v * lanes)));
                }
                vector = match tile.activation {
                    Activation::None => vector,
                    Activation::Relu => vector.max(zero),
                    Activation::Leaky(slope) => vector.max(vector.mul(V::splat(slope))),
                };
                vector.store(tile.out.add(at + v * lanes));
            }
        }
    }
}

/// Where the tiles of a run of `width` output pixels start, and their common width:
/// equal tiles, the last starting early rather than running short, so that every tile is
/// a full one (its overlap is computed twice, identically).
pub(super) fn tile_starts(width: usize, max_pixels: usize) -> (Vec<usize>, usize) {
    let tiles = width.div_ceil(max_pixels);
    let pixels = width.div_ceil(tiles);
    let starts = (0..tiles)
        .map(|tile| (tile * pixels).min(width - pixels))
        .collect();
    (starts, pixels)
}

/// Checks a batch's planes against each other, a convolution's channels and its padding,
/// and returns the addresses of the inputs', outputs' and residuals' values (0 for no
/// residual); None for an empty batch.
pub(super) fn batch_addresses(
    (in_channels, out_channels): (usize, usize),
    padding: (usize, usize),
    inputs: &[Plane],
    outputs: &mut [Plane],
    epilogue: Epilogue,
) -> Option<Vec<(usize, usize, usize)>> {
    assert_eq!(inputs.len(), outputs.len());
    let first_input = inputs.first()?;
    assert!(
        first_input.border >= padding.0.max(padding.1),
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

/// A stride-1 convolution of `input` (no border, no padding) followed by TensorFlow's
/// 2x2 max pooling with stride 2 and 'same' padding, into a new plane with `border`.
/// Each pooled row is computed from the two convolution rows under it, which a thread
/// zeroes, fills and pools while they are in its cache, so the full-resolution output
/// never reaches memory: for the detector's first layer (414x414x16, 11 MB) zeroing it,
/// writing it and reading it back cost more than the pooling's arithmetic.
pub fn convolve_max_pooled(
    conv: &PackedConv,
    input: &Plane,
    epilogue: Epilogue,
    border: usize,
    isa: Isa,
) -> Plane {
    assert_eq!(conv.stride, 1);
    assert_eq!(input.border, 0, "a convolution without padding");
    assert!(epilogue.residual.is_none());
    let (height, width, _) = input.dims();
    let (out_h, out_w) = (
        conv.output_size(height, (0, 0)),
        conv.output_size(width, (0, 0)),
    );
    let channels = conv.out_channels;
    let (pooled_h, pooled_w) = (out_h.div_ceil(2), out_w.div_ceil(2));
    let mut pooled = Plane::zeros(pooled_h, pooled_w, channels, border);
    let stride = pooled.row_stride();
    let rows = pooled.values.chunks_mut(stride).skip(border).take(pooled_h);
    let input_row = input.row_stride();
    super::share_rows(rows.collect(), |y, line| {
        let rows = 2 * y..(2 * y + 2).min(out_h);
        let strip = Plane {
            values: input.values[rows.start * input_row..(rows.end + conv.kernel - 1) * input_row]
                .to_vec(),
            height: rows.len() + conv.kernel - 1,
            ..*input
        };
        let mut convolved = [Plane::zeros(rows.len(), out_w, channels, 0)];
        super::alone(|| {
            convolve(conv, &[strip], (0, 0), &mut convolved, epilogue, isa);
            let row = convolved[0].max_pool_2x2_same(2, 0, isa);
            line[border * channels..(border + pooled_w) * channels].copy_from_slice(&row.values);
        });
    });
    pooled
}

/// For each image of a batch: `output`'s interior pixels (y, x) < the convolution's
/// output size = the epilogue of bias + the convolution of `input` zero-padded by
/// `padding` (before, after) on every side, computed on `isa`. An output may be larger:
/// its other pixels keep their values. The work is shared out over the rayon pool by
/// blocks of output channels first, so that each block of weights is read once for the
/// whole batch.
pub fn convolve(
    conv: &PackedConv,
    inputs: &[Plane],
    padding: (usize, usize),
    outputs: &mut [Plane],
    epilogue: Epilogue,
    isa: Isa,
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
    let (tile_channels, most_pixels) = tile_shape(isa, conv.block, out_w);
    let (starts, pixels) = tile_starts(out_w, most_pixels);
    let row_weights = k * conv.in_channels;
    let per_block = k * row_weights;
    let first_window = input.border - padding.0;
    let (in_stride, out_stride) = (input.row_stride(), output.row_stride());
    let (out_channels, out_border) = (output.channels, output.border);
    let images = inputs.len();
    let blocks = conv.out_channels / conv.block;
    // Work items (block of output channels, image, output row), block-major.
    let run = |items: std::ops::Range<usize>| {
        for item in items {
            let block = item / (images * out_h);
            let (image, y) = (item / out_h % images, item % out_h);
            let (input_values, out_values, residual_values) = addresses[image];
            // The window rows inside the input: the others are padding, zero.
            let rows = padding.0.saturating_sub(y * s)
                ..(input.height + padding.0).saturating_sub(y * s).min(k);
            let window =
                (y * s + rows.start + first_window) * in_stride + first_window * input.channels;
            let target =
                (y + out_border) * out_stride + out_border * out_channels + block * conv.block;
            let first = Tile {
                input: (input_values as *const f32).wrapping_add(window),
                step: s * input.channels,
                row_stride: in_stride,
                rows: rows.len(),
                depth: k * input.channels,
                weights: (conv.weights.as_ptr() as *const f32)
                    .wrapping_add((block * per_block + rows.start * row_weights) * conv.block),
                weight_step: conv.block,
                weight_row_stride: row_weights * conv.block,
                prefetch: streams_weights(conv.weights.len() * 16),
                bias: (conv.bias.as_ptr() as *const f32).wrapping_add(block * conv.block),
                out: (out_values as *mut f32).wrapping_add(target),
                out_step: out_channels,
                residual: if residual_values == 0 {
                    std::ptr::null()
                } else {
                    (residual_values as *const f32).wrapping_add(target)
                },
                activation: epilogue.activation,
            };
            let row = TileRow {
                first,
                starts: &starts,
                input_per_column: s * input.channels,
                output_per_column: out_channels,
                pixels,
                block: conv.block,
                tile_channels,
                columns: WindowColumns {
                    kernel: k,
                    stride: s,
                    channels: input.channels,
                    padding: padding.0,
                    width: input.width,
                },
            };
            // SAFETY: the asserts above keep every window inside its input (whose
            // border holds the padding, and out_h/out_w are what fits), every output
            // pixel inside its output and residual, which share a geometry. Each item
            // writes only its own row of its own block of channels of its own image;
            // two tiles of a row overlap only inside one item, with equal values. `isa`
            // was chosen among the paths this CPU runs.
            unsafe { row.start(isa) };
        }
    };
    share_out(blocks * images * out_h, run);
}
