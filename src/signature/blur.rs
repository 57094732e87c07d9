//! The normaliser's blur: `image::imageops::fast_blur` with sigma 2 on a grey page, byte
//! for byte, in integers and on every core. The threshold, the ink's box and so every
//! figure in models/README rest on these bytes, so they must not move; but `image`
//! rounds each pass with a library `roundf` (the x86-64 baseline has no instruction for
//! it) on one thread, which made this blur about a sixth of the clerk's whole check
//! (models/README, "Faster, the same bytes, again").

use image::GrayImage;
use rayon::prelude::*;

/// Rows a worker blurs at a time: enough to amortise starting a vertical window.
const ROWS_PER_TASK: usize = 64;

/// `image::imageops::fast_blur(page, 2.0)`: three passes of a box filter whose edges
/// repeat the border pixel, each pass horizontal then vertical and each rounded to a
/// grey level. Sigma 2 gives `image` the box radii 1, 1 and 3.
pub fn blur_sigma_2(page: &GrayImage) -> GrayImage {
    let (width, height) = (page.width() as usize, page.height() as usize);
    if width == 0 || height == 0 {
        return page.clone();
    }
    let mut pixels = page.as_raw().clone();
    let mut scratch = vec![0u8; pixels.len()];
    box_pass::<1>(&mut pixels, &mut scratch, width);
    box_pass::<1>(&mut pixels, &mut scratch, width);
    box_pass::<3>(&mut pixels, &mut scratch, width);
    GrayImage::from_raw(page.width(), page.height(), pixels).expect("same size")
}

/// One box of radius `RADIUS` across and then down, `pixels` in place.
fn box_pass<const RADIUS: usize>(pixels: &mut [u8], scratch: &mut [u8], width: usize) {
    scratch
        .par_chunks_exact_mut(width)
        .zip(pixels.par_chunks_exact(width))
        .for_each(|(out, row)| across::<RADIUS>(row, out));
    let across_done: &[u8] = scratch;
    pixels
        .par_chunks_mut(width * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(task, out)| down::<RADIUS>(across_done, out, width, task * ROWS_PER_TASK));
}

/// The window's sum over its `2 * RADIUS + 1` pixels as a grey level, rounded half away
/// from zero. `image` multiplies by the reciprocal in `f32` and rounds; the window is odd,
/// so a mean is never within `1 / (2 * window)` of a half and the two agree (checked over
/// every possible sum in the tests).
#[inline]
fn mean_of<const RADIUS: usize>(sum: u32) -> u8 {
    let window = 2 * RADIUS as u32 + 1;
    ((2 * sum + window) / (2 * window)) as u8
}

fn across<const RADIUS: usize>(row: &[u8], out: &mut [u8]) {
    let last = row.len() - 1;
    let at = |x: isize| u32::from(row[x.clamp(0, last as isize) as usize]);
    let radius = RADIUS as isize;
    let mut sum: u32 = (-radius..=radius).map(at).sum();
    for (x, value) in out.iter_mut().enumerate() {
        *value = mean_of::<RADIUS>(sum);
        let x = x as isize;
        sum = sum + at(x + radius + 1) - at(x - radius);
    }
}

/// Rows `first..` of the vertical pass into `out` (whole rows), reading every row of
/// `source`.
fn down<const RADIUS: usize>(source: &[u8], out: &mut [u8], width: usize, first: usize) {
    let last = source.len() / width - 1;
    let row = |y: isize| {
        let y = y.clamp(0, last as isize) as usize;
        &source[y * width..(y + 1) * width]
    };
    let radius = RADIUS as isize;
    let first = first as isize;
    let mut sums = vec![0u32; width];
    for y in first - radius..=first + radius {
        for (sum, &value) in sums.iter_mut().zip(row(y)) {
            *sum += u32::from(value);
        }
    }
    for (offset, out_row) in out.chunks_exact_mut(width).enumerate() {
        let y = first + offset as isize;
        let (entering, leaving) = (row(y + radius + 1), row(y - radius));
        for (((value, sum), &enter), &leave) in
            out_row.iter_mut().zip(&mut sums).zip(entering).zip(leaving)
        {
            *value = mean_of::<RADIUS>(*sum);
            *sum = *sum + u32::from(enter) - u32::from(leave);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(width: u32, height: u32, seed: u64) -> GrayImage {
        let mut state = seed;
        GrayImage::from_fn(width, height, |_, _| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            image::Luma([(state >> 56) as u8])
        })
    }

    #[test]
    fn the_blur_is_images_fast_blur_byte_for_byte() {
        let mut pages: Vec<GrayImage> = Vec::new();
        for (width, height) in [(1, 1), (1, 9), (9, 1), (2, 3), (3, 2), (7, 7), (8, 200)] {
            pages.push(noise(width, height, u64::from(width * 31 + height)));
        }
        pages.push(noise(640, 300, 7));
        for name in ["w1_1.png", "w3_4.png"] {
            let scan = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/signatures")
                .join(name);
            pages.push(crate::imageio::load(&scan).unwrap().to_luma8());
        }
        pages.push(GrayImage::from_fn(300, 130, |x, y| {
            image::Luma([if (x / 9 + y / 5) % 3 == 0 { 0 } else { 255 }])
        }));
        for page in &pages {
            assert_eq!(
                blur_sigma_2(page).as_raw(),
                image::imageops::fast_blur(page, 2.0).as_raw(),
                "{}x{}",
                page.width(),
                page.height()
            );
        }
    }

    #[test]
    fn integer_rounding_agrees_with_the_reciprocal_for_every_sum() {
        fn check<const RADIUS: usize>() {
            let window = 2 * RADIUS as u32 + 1;
            let reciprocal = 1f32 / window as f32;
            for sum in 0..=255 * window {
                let expected = (sum as f32 * reciprocal).round() as u8;
                assert_eq!(mean_of::<RADIUS>(sum), expected, "sum {sum} of {window}");
            }
        }
        check::<1>();
        check::<3>();
    }
}
