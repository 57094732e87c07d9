//! Criterion benchmarks of the face pipeline stages on CPU, on the real weights and a real
//! photo. `benches/compare_onnxruntime.sh` runs `embed_chip` beside onnxruntime.

use std::path::Path;

use candle_core::Device;
use criterion::{Criterion, criterion_group, criterion_main};
use vouch::face::{FaceModels, align_chip};
use vouch::imageio::load_rgb;

fn face_pipeline(c: &mut Criterion) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let models = FaceModels::load(&repo.join("models"), &Device::Cpu).expect("models/");
    let image = load_rgb(&repo.join("tests/data/astronaut.png")).expect("test photo");
    let detections = models.detect(&image).unwrap();
    let landmarks = models
        .landmarks(&image, &detections[..1])
        .unwrap()
        .remove(0);
    let chip = align_chip(&image, &landmarks).unwrap();
    let batch = vec![chip.clone(); 8];

    c.bench_function("detect_512px", |b| {
        b.iter(|| models.detect(&image).unwrap())
    });
    c.bench_function("landmarks_1_face", |b| {
        b.iter(|| models.landmarks(&image, &detections[..1]).unwrap())
    });
    c.bench_function("align_chip", |b| {
        b.iter(|| align_chip(&image, &landmarks).unwrap())
    });
    c.bench_function("embed_chip", |b| {
        b.iter(|| {
            models
                .network_embeddings(std::slice::from_ref(&chip))
                .unwrap()
        })
    });
    c.bench_function("embed_8_chips", |b| {
        b.iter(|| models.network_embeddings(&batch).unwrap())
    });
    c.bench_function("pipeline_512px", |b| {
        b.iter(|| models.analyze(&image).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = face_pipeline
}
criterion_main!(benches);
