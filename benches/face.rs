//! Criterion benchmarks of the face pipeline stages on CPU, on the real weights and real
//! photos, once per CPU kernel path this machine runs (`embed_chip/avx2`, ...).
//! `benches/compare_onnxruntime.sh` runs the embed benches beside onnxruntime.

use std::path::Path;

use candle_core::Device;
use criterion::{Criterion, criterion_group, criterion_main};
use vouch::cpu::Isa;
use vouch::face::{FaceModels, align_chip};
use vouch::imageio::load_rgb;

fn face_pipeline(c: &mut Criterion) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut models = FaceModels::load(&repo.join("models"), &Device::Cpu).expect("models/");
    let photo = load_rgb(&repo.join("tests/data/astronaut.png")).expect("test photo");
    let frame = load_rgb(&repo.join("tests/data/astronaut_640x480.jpg")).expect("test frame");
    let detections = models.detect(&photo).unwrap();
    let landmarks = models
        .landmarks(&photo, &detections[..1])
        .unwrap()
        .remove(0);
    let chip = align_chip(&photo, &landmarks).unwrap();
    let batch = vec![chip.clone(); 8];

    c.bench_function("align_chip", |b| {
        b.iter(|| align_chip(&photo, &landmarks).unwrap())
    });
    for isa in Isa::available() {
        models.isa = isa;
        let models = &models;
        let path = isa.name();
        c.benchmark_group("detect_640x480")
            .bench_function(path, |b| b.iter(|| models.detect(&frame).unwrap()));
        c.benchmark_group("landmarks_1_face")
            .bench_function(path, |b| {
                b.iter(|| models.landmarks(&photo, &detections[..1]).unwrap())
            });
        c.benchmark_group("embed_chip").bench_function(path, |b| {
            b.iter(|| {
                models
                    .network_embeddings(std::slice::from_ref(&chip))
                    .unwrap()
            })
        });
        c.benchmark_group("embed_8_chips")
            .bench_function(path, |b| {
                b.iter(|| models.network_embeddings(&batch).unwrap())
            });
        c.benchmark_group("pipeline_640x480")
            .bench_function(path, |b| b.iter(|| models.analyze(&frame).unwrap()));
        c.benchmark_group("pipeline_512px")
            .bench_function(path, |b| b.iter(|| models.analyze(&photo).unwrap()));
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = face_pipeline
}
criterion_main!(benches);
