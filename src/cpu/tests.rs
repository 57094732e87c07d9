//! Every kernel on every path this CPU runs, against candle's own operations.

use candle_core::{DType, Device, Tensor};

use super::*;

type Outcome = candle_core::Result<()>;

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

fn worst(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// The border stays zero: the next layer pads with it.
fn assert_border_zero(plane: &Plane) {
    let interior: f32 = plane.to_planar().iter().map(|v| v.abs()).sum();
    let all: f32 = plane.values.iter().map(|v| v.abs()).sum();
    assert!((interior - all).abs() <= 1e-3 * all.max(1.0));
}

#[test]
fn every_path_this_cpu_runs_is_tested() {
    let available = Isa::available();
    assert_eq!(available.last(), Some(&Isa::Portable));
    assert!(available.contains(&Isa::chosen()));
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        assert!(available.contains(&Isa::Avx2));
    }
    #[cfg(target_arch = "aarch64")]
    assert!(available.contains(&Isa::Neon));
}

/// Every geometry the networks use, against candle's conv2d, with and without a residual
/// and an activation, direct and (3x3, stride 1) Winograd, for a batch of two images
/// whose outputs are larger than the convolution's, on every path.
#[test]
fn convolutions_match_candle_conv2d() -> Outcome {
    let device = Device::Cpu;
    // (in, out, kernel, stride, padding, size, border)
    for (c, o, k, stride, padding, size, border) in [
        (3, 32, 7, 2, (0, 0), 25, 0),
        (32, 32, 3, 1, (1, 1), 35, 1),
        (32, 64, 3, 2, (0, 0), 17, 1),
        (64, 64, 3, 1, (1, 1), 8, 1),
        (16, 96, 3, 1, (1, 1), 3, 1),
        (64, 32, 3, 2, (0, 0), 4, 1),
        (3, 16, 3, 1, (0, 0), 20, 0),
        (3, 32, 3, 2, (0, 1), 12, 1),
        (16, 32, 1, 1, (0, 0), 9, 0),
        (40, 25, 1, 1, (0, 0), 5, 0),
        // Small planes, where windows reach over both edges into the padding (the last
        // block's 1x1 output reads one column and one row of its window), on AVX2 with
        // the narrow rows' 32-channel tiles.
        (32, 64, 3, 1, (1, 1), 1, 1),
        (32, 64, 3, 1, (1, 1), 2, 1),
        (48, 64, 3, 1, (1, 1), 4, 1),
        (64, 64, 3, 2, (0, 0), 4, 1),
    ] {
        let weight = Tensor::randn(0f32, 0.3, (o, c, k, k), &device)?;
        let bias = Tensor::randn(0f32, 1.0, o, &device)?;
        let (weight_values, bias_values) = (weight.flatten_all()?.to_vec1()?, bias.to_vec1()?);
        let direct = PackedConv::new(&weight_values, &bias_values, (o, c, k), stride);
        let winograd = (k == 3 && stride == 1 && c % 16 == 0 && o % 32 == 0)
            .then(|| WinogradConv::new(&weight_values, &bias_values, (o, c)));
        let out_size = direct.output_size(size, padding);
        let stored = direct.out_channels();
        // One more row and column than the convolution fills, as a downsampling block's
        // shortcut has at odd sizes.
        let plane_size = out_size + 1;
        let mut inputs = Vec::new();
        let mut residuals = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..2 {
            let (input, x) = random_plane((c, size, size), border)?;
            let (residual, shortcut) = random_plane((stored, plane_size, plane_size), 1)?;
            let convolved = x
                .pad_with_zeros(2, padding.0, padding.1)?
                .pad_with_zeros(3, padding.0, padding.1)?
                .conv2d(&weight, 0, stride, 1, 1)?
                .broadcast_add(&bias.reshape((1, o, 1, 1))?)?
                .pad_with_zeros(1, 0, stored - o)?
                .pad_with_zeros(2, 0, 1)?
                .pad_with_zeros(3, 0, 1)?;
            // Where the convolution does not reach, the residual shows through.
            let reached = Tensor::ones((1, stored, out_size, out_size), DType::F32, &device)?
                .pad_with_zeros(2, 0, 1)?
                .pad_with_zeros(3, 0, 1)?;
            expected.push((convolved, reached, shortcut));
            inputs.push(input);
            residuals.push(residual);
        }
        for isa in Isa::available() {
            for (with_residual, activation) in [
                (false, Activation::None),
                (true, Activation::Relu),
                (false, Activation::Leaky(0.1)),
            ] {
                let epilogue = Epilogue {
                    residual: with_residual.then_some(&residuals[..]),
                    activation,
                };
                let fresh = || {
                    if with_residual {
                        residuals.clone()
                    } else {
                        Plane::zeros_batch(2, (plane_size, plane_size, stored), 1)
                    }
                };
                let mut runs: Vec<(&str, Vec<Plane>)> = Vec::new();
                let mut outputs = fresh();
                convolve(&direct, &inputs, padding, &mut outputs, epilogue, isa);
                runs.push(("direct", outputs));
                if let Some(winograd) = &winograd {
                    let mut outputs = fresh();
                    convolve_winograd(winograd, &inputs, &mut outputs, epilogue, isa);
                    runs.push(("winograd", outputs));
                }
                for (name, outputs) in runs {
                    for (output, (convolved, reached, shortcut)) in outputs.iter().zip(&expected) {
                        let outside = (1.0 - reached)?;
                        let mut sums = convolved.clone();
                        if with_residual {
                            sums = (sums + (shortcut * reached)?)?;
                        }
                        let activated = Tensor::from_vec(
                            sums.flatten_all()?
                                .to_vec1::<f32>()?
                                .into_iter()
                                .map(|v| activation.apply(v))
                                .collect::<Vec<_>>(),
                            sums.dims(),
                            &device,
                        )?;
                        let mut want = (activated * reached)?;
                        if with_residual {
                            want = (want + (shortcut * outside)?)?;
                        }
                        let error = worst(&output.to_planar(), &want.flatten_all()?.to_vec1()?);
                        assert!(
                            error < 1e-3,
                            "{name} {isa:?} c={c} o={o} k={k} s={stride} size={size} {activation:?}: {error}"
                        );
                        assert_border_zero(output);
                    }
                }
            }
        }
    }
    Ok(())
}

#[test]
fn depthwise_and_separable_match_candle() -> Outcome {
    let device = Device::Cpu;
    let (c, o) = (16, 32);
    let depthwise = Tensor::randn(0f32, 1.0, (c, 1, 3, 3), &device)?;
    let pointwise = Tensor::randn(0f32, 0.3, (o, c, 1, 1), &device)?;
    let bias = Tensor::randn(0f32, 1.0, o, &device)?;
    let separable = SeparableConv::new(
        &depthwise.flatten_all()?.to_vec1()?,
        &pointwise.flatten_all()?.to_vec1()?,
        &bias.to_vec1()?,
        (c, o),
    );
    for (stride, size) in [(1, 9), (2, 8), (2, 9), (1, 1)] {
        let (input, x) = random_plane((c, size, size), 1)?;
        for relu_input in [false, true] {
            let x = if relu_input { x.relu()? } else { x.clone() };
            let (top, bottom) = same_padding(size, 3, stride);
            let expected = x
                .pad_with_zeros(2, top, bottom)?
                .pad_with_zeros(3, top, bottom)?
                .conv2d(&depthwise, 0, stride, 1, c)?;
            let expected_separable = expected
                .conv2d(&pointwise, 0, 1, 1, 1)?
                .broadcast_add(&bias.reshape((1, o, 1, 1))?)?
                .relu()?;
            for isa in Isa::available() {
                let got = Depthwise3x3::new(&depthwise.flatten_all()?.to_vec1()?, c)
                    .forward(&input, stride, relu_input, 1, isa);
                let error = worst(&got.to_planar(), &expected.flatten_all()?.to_vec1()?);
                assert!(error < 1e-4, "depthwise {isa:?} s={stride} {size}: {error}");
                assert_border_zero(&got);
                let relu = Epilogue::activation(Activation::Relu);
                let got = separable.forward(
                    std::slice::from_ref(&input),
                    stride,
                    relu_input,
                    relu,
                    0,
                    isa,
                );
                let error = worst(
                    &got[0].to_planar(),
                    &expected_separable.flatten_all()?.to_vec1()?,
                );
                assert!(error < 1e-3, "separable {isa:?} s={stride} {size}: {error}");
            }
        }
    }
    Ok(())
}

#[test]
fn pooling_matches_candle() -> Outcome {
    let device = Device::Cpu;
    for isa in Isa::available() {
        let x = Tensor::randn(0f32, 1.0, (1, 5, 9, 9), &device)?;
        let plane = Plane::from_planar(&x.flatten_all()?.to_vec1()?, 5, 9, 9);
        let max = plane.max_pool(3, 2, 1, isa).to_planar();
        assert_eq!(
            max,
            x.max_pool2d_with_stride(3, 2)?
                .flatten_all()?
                .to_vec1::<f32>()?
        );
        for (stride, size) in [(2, 8), (2, 9), (1, 9)] {
            let x = Tensor::randn(0f32, 1.0, (1, 5, size, size), &device)?;
            let plane = Plane::from_planar(&x.flatten_all()?.to_vec1()?, 5, size, size);
            let (top, bottom) = same_padding(size, 2, stride);
            let expected = x
                .pad_with_same(2, top, bottom)?
                .pad_with_same(3, top, bottom)?
                .max_pool2d_with_stride(2, stride)?;
            let got = plane.max_pool_2x2_same(stride, 1, isa);
            assert_eq!(got.to_planar(), expected.flatten_all()?.to_vec1::<f32>()?);
            assert_border_zero(&got);
        }
        let average = plane.average_pool_2x2(7, 1);
        assert_eq!(average.dims(), (4, 4, 7));
        let expected = x
            .avg_pool2d_with_stride(2, 2)?
            .pad_with_zeros(1, 0, 2)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert!(worst(&average.to_planar(), &expected) < 1e-6);
    }
    Ok(())
}

/// The convolution pooled strip by strip is the convolution, then the pooling: exactly,
/// with even and odd output sizes (the last strip one row), on every path.
#[test]
fn a_convolution_pooled_by_strips_is_the_convolution_then_the_pooling() -> Outcome {
    let leaky = Epilogue::activation(Activation::Leaky(0.1));
    for isa in Isa::available() {
        for (height, width) in [(10, 12), (9, 7), (3, 3)] {
            let (input, _) = random_plane((3, height, width), 0)?;
            let weight = Tensor::randn(0f32, 0.3, (16, 3, 3, 3), &Device::Cpu)?;
            let bias = Tensor::randn(0f32, 1.0, 16, &Device::Cpu)?;
            let conv = PackedConv::new(
                &weight.flatten_all()?.to_vec1()?,
                &bias.to_vec1()?,
                (16, 3, 3),
                1,
            );
            let mut whole = [Plane::zeros(height - 2, width - 2, 16, 0)];
            convolve(
                &conv,
                std::slice::from_ref(&input),
                (0, 0),
                &mut whole,
                leaky,
                isa,
            );
            let expected = whole[0].max_pool_2x2_same(2, 1, isa);
            let got = convolve_max_pooled(&conv, &input, leaky, 1, isa);
            assert_eq!(got.dims(), expected.dims());
            assert_eq!(got.values, expected.values, "{isa:?} {height}x{width}");
        }
    }
    Ok(())
}

/// A team shares every item of every layer exactly once, however its threads come and go,
/// and leaves layers outside a team as they were.
#[test]
fn a_team_runs_every_item_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let layers = |round: usize| {
        for items in [1, 2, 3, 7, 64, 1000] {
            let counts: Vec<AtomicUsize> = (0..items).map(|_| AtomicUsize::new(0)).collect();
            share_out(items, |range| {
                for item in range {
                    counts[item].fetch_add(1, Ordering::Relaxed);
                }
            });
            let once = counts
                .iter()
                .all(|count| count.load(Ordering::Relaxed) == 1);
            assert!(once, "round {round}, {items} items");
        }
    };
    pool.install(|| {
        for round in 0..200 {
            as_team(|| layers(round));
        }
        layers(200);
    });
}

/// A layer that panics on any thread of a team ends the pass with that panic instead of
/// leaving the team waiting.
#[test]
fn a_panic_in_a_team_reaches_its_caller() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for failing in [0, 50, 99] {
        let outcome = pool.install(|| {
            std::panic::catch_unwind(|| {
                as_team(|| {
                    share_out(100, |range| {
                        assert!(!range.contains(&failing), "layer failed");
                    })
                })
            })
        });
        assert!(outcome.is_err(), "item {failing}");
        // The pool is free again.
        assert_eq!(pool.install(|| as_team(|| 7)), 7);
    }
}
