//! A site's store on PostgreSQL at scale (issue 20): loading a gallery of 1M templates
//! from the server (time, and the process's memory after), an enrollment's duplicate
//! check over it (the 1:N search and the guarded enrollment transaction), and the time
//! from a desk's enrollment to the person being matched on another kiosk (NOTIFY, then
//! that person read again). On the server `VOUCH_TEST_PG` names, or a throwaway cluster
//! of its own. `VOUCH_BENCH_TEMPLATES` sets the gallery's size (default 1,000,000; 100
//! templates a person). The vectors are deterministic pseudo-random, not faces.

#[path = "../tests/common/server.rs"]
#[allow(dead_code)] // the tests' harness: the bench needs only a database
mod server;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use vouch::gallery::Gallery;
use vouch::store::{Enrollment, GalleryFeed, NewTemplate, Store, StoreError};
use vouch::types::{Modality, TemplateShape};

const PER_PERSON: usize = 100;

fn template(seed: u64) -> NewTemplate {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let raw: Vec<f32> = (0..128)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
    NewTemplate {
        embedding: raw.iter().map(|v| v * 1.4 / norm).collect(),
        quality: 0.9,
        source_sha256: String::new(),
        crop: None,
    }
}

fn resident_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn site(c: &mut Criterion) {
    let Some((url, _)) = server::database("bench_site") else {
        return;
    };
    let templates: usize = std::env::var("VOUCH_BENCH_TEMPLATES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("site.key");
    let mut desk = Store::open_server(&url, &key).unwrap();
    let filling = Instant::now();
    let people = templates / PER_PERSON;
    for person in 0..people {
        let references: Vec<NewTemplate> = (0..PER_PERSON)
            .map(|i| template((person * PER_PERSON + i) as u64))
            .collect();
        desk.enroll(
            &format!("P{person}"),
            &format!("E{person}"),
            Modality::Face,
            "m",
            &references,
            "bench",
        )
        .unwrap();
    }
    eprintln!(
        "enrolled {people} people with {templates} templates on the server in {:.0?}",
        filling.elapsed()
    );

    let before = resident_mib();
    let kiosk = Store::open_server(&url, &key).unwrap();
    let started = Instant::now();
    let mut gallery = Gallery::of_faces(&kiosk, "m").unwrap();
    eprintln!(
        "one load of {} templates: {:.2?}, resident memory {before:.0} -> {:.0} MiB",
        gallery.templates(),
        started.elapsed(),
        resident_mib()
    );
    c.bench_function(&format!("load_{templates}_templates_from_postgres"), |b| {
        b.iter(|| Gallery::of_faces(&kiosk, "m").unwrap())
    });

    let shape = TemplateShape {
        len: 128,
        norm_of_first: 128,
        norm: 1.3..=1.5,
    };
    let mut next = people;
    c.bench_function(
        &format!("duplicate_check_and_enroll_over_{templates}"),
        |b| {
            b.iter(|| {
                let references = [template(u64::MAX - next as u64)];
                let nearest = gallery.search(&references[0].embedding, 1).unwrap();
                let enrollment = Enrollment {
                    name: "New",
                    external_id: &format!("N{next}"),
                    modality: Modality::Face,
                    model_id: "m",
                    templates: &references,
                    shape: &shape,
                    checked_up_to: gallery.checked_up_to,
                    replace: false,
                };
                next += 1;
                // The guard sees what was enrolled since the gallery was read: the
                // bench's own earlier enrollments.
                desk.enroll_guarded(&enrollment, "bench", |newer| {
                    assert!(!nearest.is_empty() && newer.len() < 10_000);
                    Ok::<(), StoreError>(())
                })
                .unwrap()
            })
        },
    );

    let feed = GalleryFeed::listen(&url).unwrap();
    c.bench_function("enrollment_on_a_desk_to_a_match_on_a_kiosk", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let references = [template(u64::MAX / 2 - next as u64)];
                let started = Instant::now();
                let person = desk
                    .enroll(
                        "New",
                        &format!("N{next}"),
                        Modality::Face,
                        "m",
                        &references,
                        "bench",
                    )
                    .unwrap();
                next += 1;
                loop {
                    let change = feed.next_within(Duration::from_secs(1)).expect("a note");
                    gallery.follow(&kiosk, "m", &change).unwrap();
                    let found = gallery.search(&references[0].embedding, 1).unwrap();
                    if found[0].person_id == person {
                        break;
                    }
                }
                total += started.elapsed();
            }
            total
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(20));
    targets = site
}
criterion_main!(benches);
