//! A 3x3 depthwise convolution (channel multiplier 1) with TensorFlow's 'same' padding,
//! as a separable convolution's first half: each output pixel is nine multiply-adds over
//! the channels of its window, vectorised across channels, rows shared out over the pool.

use super::simd::{Kernel, Vector};
use super::{Isa, Plane};

/// TensorFlow's 'same' padding for one spatial dimension: (before, after). With an even
/// size and stride 2 the extra row goes after.
pub fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

pub struct Depthwise3x3 {
    /// [9][C]: tap (i, j) at row i * 3 + j, channels innermost.
    taps: Vec<f32>,
    channels: usize,
}

impl Depthwise3x3 {
    /// `weight` holds [C, 1, 3, 3] row-major (candle's layout).
    pub fn new(weight: &[f32], channels: usize) -> Self {
        assert_eq!(weight.len(), channels * 9);
        let mut taps = vec![0.0; 9 * channels];
        for (channel, kernel) in weight.chunks_exact(9).enumerate() {
            for (tap, &value) in kernel.iter().enumerate() {
                taps[tap * channels + channel] = value;
            }
        }
        Self { taps, channels }
    }

    /// The convolution of `input` (whose border holds the padding: at least one pixel)
    /// with stride 1 or 2, into a new plane with `border`. With `relu_input` the input
    /// goes through a ReLU as it is read.
    pub fn forward(
        &self,
        input: &Plane,
        stride: usize,
        relu_input: bool,
        border: usize,
        isa: Isa,
    ) -> Plane {
        let (h, w, channels) = input.dims();
        assert_eq!(channels, self.channels);
        assert!(input.border >= 1, "the input's border holds the padding");
        let (top, _) = same_padding(h, 3, stride);
        let (left, _) = same_padding(w, 3, stride);
        let (out_h, out_w) = (h.div_ceil(stride), w.div_ceil(stride));
        let mut out = Plane::zeros(out_h, out_w, channels, border);
        let in_stride = input.row_stride();
        let out_stride = out.row_stride();
        let rows = out.values.chunks_mut(out_stride).skip(border).take(out_h);
        super::share_rows(rows.collect(), |y, line| {
            isa.dispatch(Row {
                taps: &self.taps,
                input: &input.values,
                in_stride,
                // Window (0, 0) of output pixel (y, 0).
                window: (y * stride + input.border - top) * in_stride
                    + (input.border - left) * channels,
                step: stride * channels,
                out: &mut line[border * channels..(border + out_w) * channels],
                relu_input,
            })
        });
        out
    }
}

/// One output row of a depthwise convolution.
struct Row<'a> {
    /// [9][C].
    taps: &'a [f32],
    input: &'a [f32],
    in_stride: usize,
    window: usize,
    /// Input floats between two output pixels' windows.
    step: usize,
    out: &'a mut [f32],
    relu_input: bool,
}

impl Kernel for Row<'_> {
    type Output = ();

    #[inline(always)]
    fn run<V: Vector>(self) {
        let channels = self.taps.len() / 9;
        let vectors = channels - channels % V::LANES;
        let zero = V::splat(0.0);
        let at = |x: usize, tap: usize| {
            self.window + x * self.step + (tap / 3) * self.in_stride + (tap % 3) * channels
        };
        for (x, target) in self.out.chunks_exact_mut(channels).enumerate() {
            for start in (0..vectors).step_by(V::LANES) {
                let mut sum = zero;
                for tap in 0..9 {
                    let source = &self.input[at(x, tap) + start..][..V::LANES];
                    let weights = &self.taps[tap * channels + start..][..V::LANES];
                    // SAFETY: both slices hold `V::LANES` floats; `Isa::dispatch` runs this
                    // on a CPU with `V`'s instructions.
                    let (mut value, weight) =
                        unsafe { (V::load(source.as_ptr()), V::load(weights.as_ptr())) };
                    if self.relu_input {
                        value = value.max(zero);
                    }
                    sum = V::mul_add(value, weight, sum);
                }
                let out = &mut target[start..start + V::LANES];
                // SAFETY: as above, for the output.
                unsafe { sum.store(out.as_mut_ptr()) };
            }
            for (channel, out) in target.iter_mut().enumerate().skip(vectors) {
                *out = (0..9)
                    .map(|tap| {
                        let value = self.input[at(x, tap) + channel];
                        let value = if self.relu_input {
                            value.max(0.0)
                        } else {
                            value
                        };
                        value * self.taps[tap * channels + channel]
                    })
                    .sum();
            }
        }
    }
}
