//! A 3x3 'same' convolution of stride 1 by Winograd's F(2x2, 3x3): each 2x2 patch of
//! outputs from the 4x4 inputs around it with 16 multiplications per channel pair
//! instead of 36. The 16 are 16 matrix products over all patches at once, run by the tile
//! kernel; the transforms around them are additions, vectorised over channels.

use super::conv::{
    Activation, Aligned, Epilogue, MAX_BLOCK, Tile, TileRow, WindowColumns, aligned,
    batch_addresses, streams_weights, tile_shape,
};
use super::simd::{Kernel, Vector};
use super::{Isa, Plane, share_out};

/// Channels a transform takes at a time.
const CHUNK: usize = 16;

pub struct WinogradConv {
    /// Per transformed position (16), per block of 32 output channels, per input channel:
    /// the block's 32 transformed weights.
    weights: Vec<Aligned>,
    bias: Vec<f32>,
    in_channels: usize,
    out_channels: usize,
}

/// The matrix products' bias: the real one is added after the output transform.
static NO_BIAS: [Aligned; 2] = [Aligned([0.0; 16]); 2];

impl WinogradConv {
    /// Whether the transforms and the tile kernel take these channels: output channels
    /// in whole blocks, input channels in whole chunks.
    pub fn takes((out_channels, in_channels): (usize, usize)) -> bool {
        out_channels.is_multiple_of(MAX_BLOCK) && in_channels.is_multiple_of(CHUNK)
    }

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
        assert!(
            out_channels.is_multiple_of(MAX_BLOCK),
            "output channels come in blocks of {MAX_BLOCK}"
        );
        assert!(
            in_channels.is_multiple_of(CHUNK),
            "the transforms take {CHUNK} channels at a time"
        );
        let blocks = out_channels / MAX_BLOCK;
        let mut weights = vec![0.0; 16 * blocks * in_channels * MAX_BLOCK];
        for (pair, kernel) in weight.chunks_exact(9).enumerate() {
            let (out_channel, channel) = (pair / in_channels, pair % in_channels);
            // G g G^T
            for (position, a, b) in (0..16).map(|p| (p, p / 4, p % 4)) {
                let value: f32 = (0..9)
                    .map(|tap| G[a][tap / 3] * kernel[tap] * G[b][tap % 3])
                    .sum();
                let block = (position * blocks + out_channel / MAX_BLOCK) * in_channels + channel;
                weights[block * MAX_BLOCK + out_channel % MAX_BLOCK] = value;
            }
        }
        Self {
            weights: aligned(&weights),
            bias: bias.to_vec(),
            in_channels,
            out_channels,
        }
    }
}

/// As `convolve` with padding 1, for a `WinogradConv`, on `isa`.
pub fn convolve_winograd(
    conv: &WinogradConv,
    inputs: &[Plane],
    outputs: &mut [Plane],
    epilogue: Epilogue,
    isa: Isa,
) {
    let channels = (conv.in_channels, conv.out_channels);
    let Some(addresses) = batch_addresses(channels, (1, 1), inputs, outputs, epilogue) else {
        return;
    };
    let (h, w, _) = inputs[0].dims();
    assert!(h <= outputs[0].height && w <= outputs[0].width);
    let columns = w.div_ceil(2);
    let patches = h.div_ceil(2) * columns;
    let (tile_channels, most) = tile_shape(isa, MAX_BLOCK, patches);
    let geometry = Plane {
        values: Vec::new(),
        ..outputs[0]
    };
    // One tile of patches of one image per work item, transformed, multiplied and
    // transformed back while its values are still in the core's caches; as many tiles
    // as make the work items divide evenly over the threads (a single 8x8 image is two
    // tiles of 8 patches, not 12 and 4).
    let threads = rayon::current_num_threads();
    let mut tiles = patches.div_ceil(most);
    while !(inputs.len() * tiles).is_multiple_of(threads) && tiles < patches {
        tiles += 1;
    }
    share_out(inputs.len() * tiles, |items| {
        let mut scratch = Scratch {
            transformed: vec![0f32; 16 * most * conv.in_channels],
            products: vec![0f32; 16 * most * conv.out_channels],
        };
        for item in items {
            let (image, tile) = (item / tiles, item % tiles);
            let item = Item {
                conv,
                input: &inputs[image],
                patches: (
                    tile * patches / tiles..(tile + 1) * patches / tiles,
                    columns,
                ),
                geometry: &geometry,
                valid: (h, w),
                out: addresses[image].1 as *mut f32,
                residual: epilogue.residual.map(|planes| &planes[image]),
                activation: epilogue.activation,
                tile_channels,
                scratch: &mut scratch,
            };
            // SAFETY: the item writes only its own patches' pixels of its own image's
            // output (`geometry`'s values, checked by `batch_addresses`); `isa` runs on
            // this CPU.
            unsafe { item.start(isa) };
        }
    });
}

struct Scratch {
    transformed: Vec<f32>,
    products: Vec<f32>,
}

/// One work item: a tile of patches of one image, through the three steps.
struct Item<'a> {
    conv: &'a WinogradConv,
    input: &'a Plane,
    /// The patches of the tile, and how many patches make a row of the plane.
    patches: (std::ops::Range<usize>, usize),
    geometry: &'a Plane,
    /// The output pixels the convolution covers: (height, width).
    valid: (usize, usize),
    out: *mut f32,
    residual: Option<&'a Plane>,
    activation: Activation,
    tile_channels: usize,
    scratch: &'a mut Scratch,
}

impl Item<'_> {
    /// # Safety
    /// `out` must be `geometry`'s values, with no other thread writing this tile's pixels;
    /// `isa` must run on this CPU.
    unsafe fn start(self, isa: Isa) {
        isa.dispatch(self);
    }
}

impl Kernel for Item<'_> {
    type Output = ();

    #[inline(always)]
    fn run<V: Vector>(self) {
        let (count, in_channels, out_channels) = (
            self.patches.0.len(),
            self.conv.in_channels,
            self.conv.out_channels,
        );
        let transformed = &mut self.scratch.transformed[..16 * count * in_channels];
        let products = &mut self.scratch.products[..16 * count * out_channels];
        transform_inputs(self.input, self.patches.clone(), transformed);
        let blocks = out_channels / MAX_BLOCK;
        for position in 0..16 {
            for block in 0..blocks {
                let first = Tile {
                    input: transformed[position * count * in_channels..].as_ptr(),
                    step: in_channels,
                    row_stride: 0,
                    rows: 1,
                    depth: in_channels,
                    weights: (self.conv.weights.as_ptr() as *const f32)
                        .wrapping_add(((position * blocks + block) * in_channels) * MAX_BLOCK),
                    weight_step: MAX_BLOCK,
                    weight_row_stride: 0,
                    prefetch: streams_weights(self.conv.weights.len() * 16),
                    bias: NO_BIAS.as_ptr() as *const f32,
                    out: products[position * count * out_channels + block * MAX_BLOCK..]
                        .as_mut_ptr(),
                    out_step: out_channels,
                    residual: std::ptr::null(),
                    activation: Activation::None,
                };
                // The tiles read `count` rows of `transformed` and a block of the
                // weights, and write `count` rows of their block of `products`.
                TileRow {
                    first,
                    starts: &[0],
                    input_per_column: 0,
                    output_per_column: 0,
                    pixels: count,
                    block: MAX_BLOCK,
                    tile_channels: self.tile_channels,
                    columns: WindowColumns::one(in_channels),
                }
                .run::<V>();
            }
        }
        // SAFETY: `run`'s contract.
        unsafe {
            transform_outputs(
                products,
                self.patches,
                &self.conv.bias,
                (self.geometry, self.valid),
                self.out,
                (self.residual, self.activation),
            );
        }
    }
}

/// B^T d B for a tile of patches into `transformed` ([16][patches in the tile][C]); d is
/// the 4x4 inputs from one pixel above and left of the patch, zero beyond the plane.
#[inline(always)]
fn transform_inputs(
    input: &Plane,
    (tile, columns): (std::ops::Range<usize>, usize),
    transformed: &mut [f32],
) {
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
        // Fixed-size arrays throughout, so that the compiler keeps each in vectors.
        for chunk in (0..channels).step_by(CHUNK) {
            let mut v = [[0f32; CHUNK]; 16];
            for (values, pixel) in v.iter_mut().zip(&d) {
                values.copy_from_slice(&pixel[chunk..chunk + CHUNK]);
            }
            // B^T down each column, then along each row.
            let t = input_butterflies(&v, |column, k| 4 * k + column);
            let u = input_butterflies(&t, |row, k| 4 * row + k);
            for (position, values) in u.iter().enumerate() {
                let at = (position * count + index) * channels + chunk;
                transformed[at..at + CHUNK].copy_from_slice(values);
            }
        }
    }
}

/// B^T on four lines of a 4x4 patch at once: value k of line `line` is `v[at(line, k)]`,
/// and its transform lands at the same places.
#[inline(always)]
fn input_butterflies(
    v: &[[f32; CHUNK]; 16],
    at: impl Fn(usize, usize) -> usize,
) -> [[f32; CHUNK]; 16] {
    let mut out = [[0f32; CHUNK]; 16];
    for line in 0..4 {
        let [i0, i1, i2, i3] = std::array::from_fn(|k| at(line, k));
        for l in 0..CHUNK {
            let (d0, d1, d2, d3) = (v[i0][l], v[i1][l], v[i2][l], v[i3][l]);
            out[i0][l] = d0 - d2;
            out[i1][l] = d1 + d2;
            out[i2][l] = d2 - d1;
            out[i3][l] = d1 - d3;
        }
    }
    out
}

/// A^T m A for a tile of patches from `products` ([16][patches in the tile][O]), plus
/// bias and the epilogue, into the output plane at `out` (whose geometry `geometry`
/// gives), for the output pixels inside `valid` (height, width).
///
/// # Safety
/// `out` must be `geometry`'s values, with no other thread writing this tile's pixels.
#[inline(always)]
unsafe fn transform_outputs(
    products: &[f32],
    (tile, columns): (std::ops::Range<usize>, usize),
    bias: &[f32],
    (geometry, (valid_h, valid_w)): (&Plane, (usize, usize)),
    out: *mut f32,
    (residual, activation): (Option<&Plane>, Activation),
) {
    let out_channels = bias.len();
    let count = tile.len();
    for (index, patch) in tile.enumerate() {
        let (row, column) = (patch / columns, patch % columns);
        for chunk in (0..out_channels).step_by(CHUNK) {
            let mut m = [[0f32; CHUNK]; 16];
            for (position, values) in m.iter_mut().enumerate() {
                let start = (position * count + index) * out_channels + chunk;
                values.copy_from_slice(&products[start..start + CHUNK]);
            }
            // A^T down each column, then along each row.
            let mut s = [[0f32; CHUNK]; 8];
            for j in 0..4 {
                for l in 0..CHUNK {
                    let (m0, m1, m2, m3) = (m[j][l], m[4 + j][l], m[8 + j][l], m[12 + j][l]);
                    s[j][l] = m0 + m1 + m2;
                    s[4 + j][l] = m1 - m2 - m3;
                }
            }
            let mut bias_lanes = [0f32; CHUNK];
            bias_lanes.copy_from_slice(&bias[chunk..chunk + CHUNK]);
            for a in 0..2 {
                let y = 2 * row + a;
                for b in 0..2 {
                    let x = 2 * column + b;
                    if y >= valid_h || x >= valid_w {
                        continue;
                    }
                    let at = geometry.index(y, x) + chunk;
                    let mut shortcut = [0f32; CHUNK];
                    if let Some(residual) = residual {
                        shortcut.copy_from_slice(&residual.values[at..at + CHUNK]);
                    }
                    let mut value = [0f32; CHUNK];
                    for l in 0..CHUNK {
                        let (s0, s1, s2, s3) = (
                            s[4 * a][l],
                            s[4 * a + 1][l],
                            s[4 * a + 2][l],
                            s[4 * a + 3][l],
                        );
                        let sum = if b == 0 { s0 + s1 + s2 } else { s1 - s2 - s3 };
                        value[l] = activation.apply(sum + bias_lanes[l] + shortcut[l]);
                    }
                    // SAFETY: `at` is a pixel of `geometry` inside `valid`, and `out` holds
                    // `geometry`'s values, which no other thread writes for this patch.
                    unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), out.add(at), CHUNK) };
                }
            }
        }
    }
}
