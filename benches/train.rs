//! One training step of the signature encoder on CPU (forward, triplet loss with
//! batch-hard mining, backward, Adam) for a batch of 48 real 150x220 canvases, the size
//! `vouch train` uses (8 identities x 6 scans); images/s = 48 / median. Beside it, the
//! peers: the same step with candle's conv2d (how training convolved before), and with the
//! im2col convolutions but glibc's default of unmapping freed tensors (`FreedMemoryKept`
//! not held). The same step with the prototypical loss, and what each on-the-fly
//! augmentation adds to a step. Also the inference cost of one scan's canvas: the
//! embedding and the stroke descriptor.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use vouch::cpu::FreedMemoryKept;
use vouch::signature::canvas_tensor;
use vouch::signature::encoder::{SignatureEncoder, TrainingConvolution};
use vouch::signature::preprocess::{Normalisation, SIGNATURE_CANVAS, normalise};
use vouch::train::Augmentation;
use vouch::train::adam::{Adam, AdamConfig};
use vouch::train::loss::{Loss, RowLabel, batch_loss};

const BATCH: usize = 48;

fn canvases() -> Vec<image::GrayImage> {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/signatures");
    (0..BATCH)
        .map(|row| {
            let path = data.join(format!("w{}_{}.png", row % 4 + 1, row / 4 % 4 + 1));
            let scan = vouch::imageio::load(&path).unwrap();
            normalise(&scan, SIGNATURE_CANVAS, Normalisation::default(), "bench")
                .unwrap()
                .canvas
        })
        .collect()
}

/// An encoder with fresh weights and its optimiser.
fn trainable(training: TrainingConvolution, device: &Device) -> (SignatureEncoder, Adam) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let encoder = SignatureEncoder::training_by(vb, training).unwrap();
    let vars = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let adam = Adam::new(
        vars,
        AdamConfig {
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.99,
            epsilon: 1e-8,
        },
    )
    .unwrap();
    (encoder, adam)
}

fn training_step(c: &mut Criterion) {
    let device = Device::Cpu;
    let canvases = canvases();
    let batch: Tensor = canvas_tensor(&canvases, &device).unwrap();
    let labels: Vec<RowLabel> = (0..BATCH)
        .map(|row| RowLabel {
            identity: row % 4,
            forgery: false,
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut group = c.benchmark_group("signature");
    group.sample_size(10);
    // The peers first: after a `FreedMemoryKept`, glibc no longer adjusts its mmap
    // threshold, so a peer timed later would not see the defaults it had before.
    for (name, loss, training, memory_kept) in [
        (
            "train_step_batch48_candle_conv2d",
            Loss::Triplet,
            TrainingConvolution::Candle,
            false,
        ),
        (
            "train_step_batch48_freed_memory_unmapped",
            Loss::Triplet,
            TrainingConvolution::Gemm,
            false,
        ),
        (
            "train_step_batch48",
            Loss::Triplet,
            TrainingConvolution::Gemm,
            true,
        ),
        (
            "train_step_batch48_prototypical",
            Loss::Prototypical,
            TrainingConvolution::Gemm,
            true,
        ),
    ] {
        let (encoder, mut adam) = trainable(training, &device);
        let _kept = memory_kept.then(FreedMemoryKept::new);
        group.bench_function(name, |b| {
            b.iter(|| {
                let embeddings = encoder.forward(&batch).unwrap();
                let loss = batch_loss(
                    &embeddings,
                    &labels,
                    loss,
                    loss.default_margin(),
                    None,
                    &mut rng,
                )
                .unwrap();
                adam.step(&loss.backward().unwrap()).unwrap();
            })
        });
    }
    for (name, augmentation) in [
        ("augment_batch48_shift", Augmentation::Shift),
        ("augment_batch48_affine", Augmentation::Affine),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| augmentation.apply(&batch, &mut rng).unwrap())
        });
    }
    // Loaded weights convolve by candle's conv2d: what one scan's embedding costs on tensors.
    let (encoder, _) = trainable(TrainingConvolution::Candle, &device);
    let one = canvas_tensor(&canvases[..1], &device).unwrap();
    group.bench_function("embed_one_canvas", |b| {
        b.iter(|| encoder.forward(&one).unwrap().detach())
    });
    group.bench_function("describe_one_canvas", |b| {
        b.iter(|| vouch::signature::descriptor::describe(&canvases[0]))
    });
    group.finish();
}

criterion_group!(benches, training_step);
criterion_main!(benches);
