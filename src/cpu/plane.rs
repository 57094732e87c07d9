//! One image's activations as [H + 2b, W + 2b, C] with a zero border of b pixels, so that
//! a padded convolution reads its window without bounds checks; and the pools and
//! conversions around the convolutions.

use super::Isa;
use super::simd::{Kernel, Vector};

#[derive(Clone, Debug)]
pub struct Plane {
    pub(super) values: Vec<f32>,
    pub(super) height: usize,
    pub(super) width: usize,
    pub(super) channels: usize,
    pub(super) border: usize,
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

    /// An RGB image as the networks take it: `(pixel - mean) / 255` per channel.
    pub fn from_rgb(image: &image::RgbImage, mean_rgb: [f32; 3], border: usize) -> Self {
        let (width, height) = (image.width() as usize, image.height() as usize);
        let mut plane = Self::zeros(height, width, 3, border);
        for (y, row) in image.rows().enumerate() {
            for (x, pixel) in row.enumerate() {
                let target = plane.pixel_mut(y, x);
                for channel in 0..3 {
                    target[channel] = (f32::from(pixel.0[channel]) - mean_rgb[channel]) / 255.0;
                }
            }
        }
        plane
    }

    /// A grey image as the signature encoder takes it: `pixel / 255`, one channel.
    pub fn from_grey(image: &image::GrayImage, border: usize) -> Self {
        let (width, height) = (image.width() as usize, image.height() as usize);
        let mut plane = Self::zeros(height, width, 1, border);
        let stride = plane.row_stride();
        for (y, row) in image.as_raw().chunks_exact(width.max(1)).enumerate() {
            let start = (y + border) * stride + border;
            for (target, &value) in plane.values[start..start + width].iter_mut().zip(row) {
                *target = f32::from(value) / 255.0;
            }
        }
        plane
    }

    /// [C, H, W] planar values of the interior.
    pub fn to_planar(&self) -> Vec<f32> {
        let (h, w, c) = self.dims();
        let mut out = vec![0.0; c * h * w];
        for y in 0..h {
            for x in 0..w {
                for (channel, &value) in self.pixel(y, x).iter().enumerate() {
                    out[(channel * h + y) * w + x] = value;
                }
            }
        }
        out
    }

    pub fn dims(&self) -> (usize, usize, usize) {
        (self.height, self.width, self.channels)
    }

    pub(super) fn row_stride(&self) -> usize {
        (self.width + 2 * self.border) * self.channels
    }

    /// Index of channel 0 of interior pixel (y, x).
    pub(super) fn index(&self, y: usize, x: usize) -> usize {
        (y + self.border) * self.row_stride() + (x + self.border) * self.channels
    }

    pub fn pixel(&self, y: usize, x: usize) -> &[f32] {
        let start = self.index(y, x);
        &self.values[start..start + self.channels]
    }

    pub fn pixel_mut(&mut self, y: usize, x: usize) -> &mut [f32] {
        let start = self.index(y, x);
        let channels = self.channels;
        &mut self.values[start..start + channels]
    }

    pub(super) fn same_geometry(&self, other: &Plane) -> bool {
        self.dims() == other.dims() && self.border == other.border
    }

    /// `size` x `size` max pooling with `stride`, no padding, into a plane with `border`.
    pub fn max_pool(&self, size: usize, stride: usize, border: usize, isa: Isa) -> Plane {
        let out_h = (self.height - size) / stride + 1;
        let out_w = (self.width - size) / stride + 1;
        self.max_pooled((out_h, out_w), size, stride, border, isa)
    }

    /// TensorFlow's 2x2 max pooling with 'same' padding and `stride` (1 or 2), into a
    /// plane with `border`: where the window passes the last row or column it sees only
    /// what is inside (the padding is never the maximum).
    pub fn max_pool_2x2_same(&self, stride: usize, border: usize, isa: Isa) -> Plane {
        let out = (self.height.div_ceil(stride), self.width.div_ceil(stride));
        self.max_pooled(out, 2, stride, border, isa)
    }

    /// Max pooling into `out` (height, width) pixels: windows past the last row or column
    /// read the last one instead. Rows shared out over the pool.
    fn max_pooled(
        &self,
        (out_h, out_w): (usize, usize),
        size: usize,
        stride: usize,
        border: usize,
        isa: Isa,
    ) -> Plane {
        let mut out = Plane::zeros(out_h, out_w, self.channels, border);
        let (stride_out, channels) = (out.row_stride(), self.channels);
        let rows = out.values.chunks_mut(stride_out).skip(border).take(out_h);
        super::share_rows(rows.collect(), |y, line| {
            isa.dispatch(MaxRow {
                input: self,
                y,
                size,
                stride,
                out: &mut line[border * channels..(border + out_w) * channels],
            })
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

    /// The mean of each channel over the interior, after `activation`.
    pub fn channel_means(&self, activation: super::Activation) -> Vec<f32> {
        let mut sums = vec![0.0; self.channels];
        for y in 0..self.height {
            for x in 0..self.width {
                for (sum, &value) in sums.iter_mut().zip(self.pixel(y, x)) {
                    *sum += activation.apply(value);
                }
            }
        }
        let count = (self.height * self.width) as f32;
        sums.iter().map(|sum| sum / count).collect()
    }

    /// The largest value of each channel over the interior.
    pub fn channel_maxima(&self) -> Vec<f32> {
        let mut maxima = vec![f32::NEG_INFINITY; self.channels];
        for y in 0..self.height {
            for x in 0..self.width {
                for (most, &value) in maxima.iter_mut().zip(self.pixel(y, x)) {
                    *most = most.max(value);
                }
            }
        }
        maxima
    }
}

/// One output row of a max pooling.
struct MaxRow<'a> {
    input: &'a Plane,
    y: usize,
    size: usize,
    stride: usize,
    out: &'a mut [f32],
}

impl Kernel for MaxRow<'_> {
    type Output = ();

    #[inline(always)]
    fn run<V: Vector>(self) {
        let input = self.input;
        let channels = input.channels;
        let vectors = channels - channels % V::LANES;
        let (last_y, last_x) = (input.height - 1, input.width - 1);
        for (x, target) in self.out.chunks_exact_mut(channels).enumerate() {
            target.fill(f32::NEG_INFINITY);
            for i in 0..self.size {
                for j in 0..self.size {
                    let source = input.pixel(
                        (self.y * self.stride + i).min(last_y),
                        (x * self.stride + j).min(last_x),
                    );
                    for start in (0..vectors).step_by(V::LANES) {
                        let (from, to) = (
                            &source[start..][..V::LANES],
                            &mut target[start..][..V::LANES],
                        );
                        // SAFETY: both slices hold `V::LANES` floats; `Isa::dispatch` runs
                        // this on a CPU with `V`'s instructions.
                        unsafe {
                            let max = V::load(to.as_ptr()).max(V::load(from.as_ptr()));
                            max.store(to.as_mut_ptr());
                        }
                    }
                    for (t, &s) in target.iter_mut().zip(source).skip(vectors) {
                        *t = t.max(s);
                    }
                }
            }
        }
    }
}
