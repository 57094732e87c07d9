//! Bounded fuzzing in the suite (proptest, fixed case counts, no persistence): mutated
//! photos in every format the decoder takes go through decode -> detect -> embed; mutated
//! and arbitrary CSV through the attendance importer; mutated backups through restore.
//! Nothing may panic, and a refused restore must leave the database as it was.

mod common;

use std::path::Path;

use common::{data, face_template, models};
use proptest::prelude::*;
use vouch::store::{Store, exchange};
use vouch::types::Modality;

/// Flips bytes at the given places, then maybe cuts the end off.
fn mutate(seed: &[u8], flips: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for &(at, value) in flips {
        if !bytes.is_empty() {
            let at = at % bytes.len();
            bytes[at] ^= value;
        }
    }
    if let Some(cut) = cut {
        bytes.truncate(cut % (bytes.len() + 1));
    }
    bytes
}

/// The chip as every format the decoder takes, and the photos of tests/data.
fn photo_seeds() -> &'static [(String, Vec<u8>)] {
    static SEEDS: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let chip = image::open(data("chip_astronaut.png")).unwrap();
        let mut seeds: Vec<(String, Vec<u8>)> = [
            image::ImageFormat::Png,
            image::ImageFormat::Jpeg,
            image::ImageFormat::Bmp,
            image::ImageFormat::Tiff,
            image::ImageFormat::WebP,
            image::ImageFormat::Gif,
            image::ImageFormat::Pnm,
        ]
        .into_iter()
        .map(|format| {
            let mut bytes = Vec::new();
            chip.to_rgb8()
                .write_to(&mut std::io::Cursor::new(&mut bytes), format)
                .unwrap();
            (format!("chip.{}", format.extensions_str()[0]), bytes)
        })
        .collect();
        seeds.push((
            "astronaut_mirrored.jpg".into(),
            std::fs::read(data("astronaut_mirrored.jpg")).unwrap(),
        ));
        seeds
    })
}

/// `cases` per property, or `VOUCH_FUZZ_CASES` for a longer run outside CI.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("VOUCH_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn mutated_photos_never_panic_from_decode_to_embedding(
        seed in 0usize..8,
        flips in prop::collection::vec((any::<usize>(), 1u8..=255), 1..12),
        cut in prop::option::of(any::<usize>()),
    ) {
        let (name, bytes) = &photo_seeds()[seed];
        let mutated = mutate(bytes, &flips, cut);
        if let Ok(picture) = vouch::imageio::decode_rgb(&mutated, Path::new(name)) {
            for face in models().analyze(&picture).unwrap() {
                prop_assert_eq!(face.embedding.len(), 128);
                prop_assert!(face.embedding.iter().all(|v| v.is_finite()));
            }
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_attendance_sheet_is_imported_whole_or_refused(
        text in prop_oneof![
            ".*",
            "at,kind,score,external_id,name\n[0-9T:.Z-]{0,30},(in|out|x),[-0-9.e]{0,8},E1?,[ -~]{0,10}\n",
        ],
        flips in prop::collection::vec((any::<usize>(), 1u8..=127), 0..6),
    ) {
        let mut store = Store::open_in_memory().unwrap();
        store.enroll("Ada", "E1", Modality::Face, "m", &[face_template(0.1)], "t").unwrap();
        let bytes = mutate(text.as_bytes(), &flips, None);
        let Ok(text) = String::from_utf8(bytes) else { return Ok(()) };
        if let Ok(records) = exchange::read(&text, Path::new("sheet.csv")) {
            let before = store.attendance(None, None).unwrap().len();
            match store.import_attendance(&records, "t") {
                Ok((added, _)) => prop_assert_eq!(store.attendance(None, None).unwrap().len(), before + added),
                Err(_) => prop_assert_eq!(store.attendance(None, None).unwrap().len(), before),
            }
            prop_assert!(store.audit_verify().unwrap().intact);
        }
    }
}

struct Site {
    _dir: tempfile::TempDir,
    live: std::path::PathBuf,
    backup: Vec<u8>,
}

fn site() -> &'static std::sync::Mutex<Site> {
    static SITE: std::sync::OnceLock<std::sync::Mutex<Site>> = std::sync::OnceLock::new();
    SITE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live.db");
        let mut store = Store::open(&live).unwrap();
        for i in 1..=3 {
            store
                .enroll(
                    &format!("P{i}"),
                    &format!("E{i}"),
                    Modality::Face,
                    "m",
                    &[face_template(i as f32)],
                    "t",
                )
                .unwrap();
        }
        let path = dir.path().join("backup.db");
        store.backup_to(&path).unwrap();
        let backup = std::fs::read(&path).unwrap();
        std::sync::Mutex::new(Site {
            _dir: dir,
            live,
            backup,
        })
    })
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn a_mutated_backup_restores_whole_or_not_at_all(
        flips in prop::collection::vec((any::<usize>(), 1u8..=255), 1..8),
        cut in prop::option::of(any::<usize>()),
    ) {
        let site = site().lock().unwrap();
        let crafted = site.live.with_file_name("crafted.db");
        std::fs::write(&crafted, mutate(&site.backup, &flips, cut)).unwrap();
        let mut store = Store::open(&site.live).unwrap();
        let restored = store.restore_from(&crafted, "t");
        let report = store.audit_verify().unwrap();
        prop_assert!(report.intact, "{:?} after {:?}", report, restored);
        prop_assert_eq!(store.people(None).unwrap().len(), 3);
    }
}
