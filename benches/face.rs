//! Criterion benchmarks of the face pipeline stages on CPU, on the real weights and real
//! photos, once per CPU kernel path this machine runs (`embed_chip/avx2`, ...).
//! `benches/compare_onnxruntime.sh` runs the embed benches beside onnxruntime.

use std::path::Path;

use candle_core::Device;
use criterion::{Criterion, criterion_group, criterion_main};
use vouch::cpu::Isa;
use vouch::face::liveness::Liveness;
use vouch::face::{FaceModels, align_chip};
use vouch::imageio::load_rgb;
use vouch::workflow::kiosk::{KioskModels, RecordedSequence, replay};

fn face_pipeline(c: &mut Criterion) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut models = FaceModels::load(&repo.join("models"), &Device::Cpu).expect("models/");
    let photo = load_rgb(&repo.join("tests/data/astronaut.png")).expect("test photo");
    let frame = load_rgb(&repo.join("tests/data/astronaut_640x480.jpg")).expect("test frame");
    let detections = models.detect(&photo).unwrap();
    let detections_frame = models.detect(&frame).unwrap();
    let landmarks = models
        .landmarks(&photo, &detections[..1])
        .unwrap()
        .remove(0);
    let chip = align_chip(&photo, &landmarks).unwrap();
    let batch = vec![chip.clone(); 8];
    let liveness = Liveness::load(&repo.join("models"), &Device::Cpu).expect("models/");
    let sequence = RecordedSequence::load(&repo.join("tests/data/kiosk")).expect("sequence");
    // The region the kiosk searches around a face it follows.
    let mut tracker = vouch::kiosk::Tracker::default();
    tracker.follow(Some(detections_frame[0].bbox), true);
    let followed = tracker.search_region().unwrap();
    let mut store = vouch::store::Store::open_in_memory().unwrap();
    let mut gallery = vouch::gallery::Gallery::of_faces(&store, &models.model_id()).unwrap();
    let (name, external_id) = vouch::workflow::kiosk::SEQUENCE_PERSON;
    let person = vouch::workflow::EnrollRequest {
        name: name.into(),
        external_id: external_id.into(),
        images: vec![sequence.reference.clone()],
    };
    vouch::workflow::enroll_face(&models, &mut store, &mut gallery, &person, false, "bench")
        .unwrap();

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
        c.benchmark_group("detect_near_followed_face")
            .bench_function(path, |b| {
                b.iter(|| models.detect_near(&frame, &followed).unwrap())
            });
        c.benchmark_group("liveness_1_face")
            .bench_function(path, |b| {
                b.iter(|| liveness.score(&frame, &detections_frame[0].bbox).unwrap())
            });
        // The whole recorded sequence through the kiosk loop, frame by frame (the punch
        // is a repeat after the first run: the same work).
        let kiosk = KioskModels {
            faces: models,
            liveness: Some(&liveness),
        };
        c.benchmark_group("kiosk_sequence_20_frames")
            .sample_size(10)
            .bench_function(path, |b| {
                b.iter(|| replay(kiosk, &mut store, &gallery, &sequence, false, "bench").unwrap())
            });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = face_pipeline
}
criterion_main!(benches);
