//! 1:N search over synthetic galleries of 10k and 1M templates (issue 3's goal: <= 20 ms
//! for 1M on 2 cores), and loading a gallery from the store (every template opened from
//! its encryption and checked: the cost moved to load, never to search). The vectors are
//! deterministic pseudo-random, not faces: speed only.

use criterion::{Criterion, criterion_group, criterion_main};
use vouch::gallery::Gallery;

fn vector(seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..128)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn search(c: &mut Criterion) {
    let query = vector(u64::MAX);
    for templates in [10_000usize, 1_000_000] {
        let mut gallery = Gallery::new(128);
        // Five references per person, as an enrollment would give.
        for person in 0..templates / 5 {
            let references: Vec<Vec<f32>> =
                (0..5).map(|i| vector((person * 5 + i) as u64)).collect();
            gallery
                .add_person(person as i64, references.iter().map(Vec::as_slice))
                .unwrap();
        }
        c.bench_function(&format!("identify_top5_{templates}_templates"), |b| {
            b.iter(|| gallery.search(&query, 5))
        });
    }
}

fn load(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = vouch::store::Store::open(&dir.path().join("vouch.db")).unwrap();
    for person in 0..2_000u64 {
        let templates: Vec<vouch::store::NewTemplate> = (0..5)
            .map(|i| {
                let raw = vector(person * 5 + i);
                let norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
                vouch::store::NewTemplate {
                    embedding: raw.iter().map(|v| v * 1.4 / norm).collect(),
                    quality: 0.9,
                    source_sha256: String::new(),
                    crop: None,
                }
            })
            .collect();
        store
            .enroll(
                &format!("P{person}"),
                &format!("E{person}"),
                vouch::types::Modality::Face,
                "m",
                &templates,
                "bench",
            )
            .unwrap();
    }
    c.bench_function("load_10000_templates_from_the_store", |b| {
        b.iter(|| Gallery::of_faces(&store, "m").unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = search, load
}
criterion_main!(benches);
