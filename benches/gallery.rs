//! 1:N search over synthetic galleries of 10k and 1M templates (issue 3's goal: <= 20 ms
//! for 1M on 2 cores). The vectors are deterministic pseudo-random, not faces: speed only.

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
            gallery.add_person(person as i64, references.iter().map(Vec::as_slice));
        }
        c.bench_function(&format!("identify_top5_{templates}_templates"), |b| {
            b.iter(|| gallery.search(&query, 5))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = search
}
criterion_main!(benches);
