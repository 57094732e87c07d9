//! The bank clerk's wait: one questioned cheque scan checked against an account's 12
//! enrolled reference signatures, end to end (`workflow::verify_signature`: decode and
//! normalise the scan, embed it, score it against the references, record the decision,
//! decode the references' kept ink and fit it onto the canvas for display), by the shipped
//! model and by the same model reading its stroke descriptor on the ink at 180x264; a
//! forger's copy of a reference, turned and slanted, which the copy check looks at twice; and
//! a genuine scan so like its writer's references that the copy check looks twice at seven
//! of them. CEDAR writers 31 and 37 from `../shared`; skipped with a message when that is
//! absent.
//!
//! Each check presents a file never checked before (the scan with one pixel nudged), as a
//! cheque would be; looking up the earlier checks of a file in a log of 10,000 decisions is
//! timed apart.
//!
//! The copy check alone (`signature::superimpose`), on the repository's own scans.
//!
//! And the two comparisons that learn nothing, which one-shot runs make for every query and
//! candidate (`signature::shape`, `signature::distortion`): one pair of the repository's
//! own scans (tests/data/signatures), each drawing described once, the pair compared.

use std::path::PathBuf;

use candle_core::Device;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use image::GrayImage;
use vouch::matching::SIGNATURE_BANDS;
use vouch::signature::blur::blur_sigma_2;
use vouch::signature::distortion::GradientContexts;
use vouch::signature::shape::InkShape;
use vouch::signature::superimpose::overlaps;
use vouch::signature::variation::{Variation, apply};
use vouch::signature::{SIGNATURE_MODEL_FILE, SignatureModel};
use vouch::store::{NewTemplate, Store, Verification};
use vouch::types::{Decision, Modality};
use vouch::workflow::{EnrollRequest, enroll_signature, verify_signature};

const REFERENCES: usize = 12;

fn verify_one_scan(c: &mut Criterion) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = std::env::var_os("VOUCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("../shared"));
    let genuine = shared.join("data/signatures/cedar/genuine");
    if !genuine.is_dir() {
        eprintln!("SKIPPED signature bench: {} is absent", genuine.display());
        return;
    }
    let scan = |writer: usize, n: usize| genuine.join(format!("original_{writer}_{n}.png"));
    let load = || {
        SignatureModel::load(
            &repo.join("models").join(SIGNATURE_MODEL_FILE),
            &Device::Cpu,
        )
        .expect("models/")
    };
    let shipped = load();
    let (height, width) = shipped.canvas;
    let mut ink_descriptor = load();
    // The path a model fitted with `--descriptor-canvas` takes: the descriptor read on the
    // ink fitted onto a canvas 1.2 times the encoder's (timing only; its scorer is the
    // shipped one).
    ink_descriptor.descriptor_canvas = (height * 6 / 5, width * 6 / 5);
    let page = |writer: usize, n: usize| vouch::imageio::load(&scan(writer, n)).unwrap().to_luma8();
    let cheque = page(31, REFERENCES + 1);
    // Writer 37 signs so alike that this genuine scan lies at 0.55 or better on 7 of the 12
    // references: the copy check's second look at its slowest on a genuine signature.
    let close_cheque = page(37, REFERENCES + 1);
    // A forger's copy of the first reference, turned and slanted to pass for a new signing:
    // the copy check's second look (turns and slants together) runs on it.
    let copy = apply(
        &apply(&page(31, 1), Variation::Rotation(3.0), 0).unwrap(),
        Variation::Slant(0.1),
        0,
    )
    .unwrap();
    let presented = tempfile::tempdir().unwrap();
    let mut presentations = 0u32;
    // The same signature in a file of its own each time: one grey level of one pixel
    // differs, so no check finds an earlier one and each pays for the whole judgement.
    let mut fresh_file = |page: &GrayImage| {
        presentations += 1;
        let mut nudged = page.clone();
        let pixel =
            nudged.get_pixel_mut(presentations % page.width(), presentations / page.width());
        pixel.0[0] ^= 1;
        let path = presented.path().join(format!("cheque-{presentations}.png"));
        nudged.save(&path).unwrap();
        path
    };
    for (name, model, writer, questioned) in [
        (
            "signature_verify_1_scan_12_references",
            &shipped,
            31,
            &cheque,
        ),
        (
            "signature_verify_1_scan_12_references_descriptor_on_ink_180x264",
            &ink_descriptor,
            31,
            &cheque,
        ),
        (
            "signature_verify_1_scan_12_references_turned_and_slanted_copy",
            &shipped,
            31,
            &copy,
        ),
        (
            "signature_verify_1_scan_12_references_genuine_close_to_7",
            &shipped,
            37,
            &close_cheque,
        ),
    ] {
        let folder = tempfile::tempdir().unwrap();
        let mut store = Store::open(&folder.path().join("bench.db")).unwrap();
        let account = format!("ACC-{writer}");
        let request = EnrollRequest {
            name: format!("Writer {writer}"),
            external_id: account.clone(),
            images: (1..=REFERENCES).map(|n| scan(writer, n)).collect(),
        };
        enroll_signature(model, &mut store, &request, "bench").unwrap();
        c.bench_function(name, |b| {
            b.iter_batched(
                || fresh_file(questioned),
                |questioned| {
                    verify_signature(model, &mut store, &account, &questioned, "bench").unwrap()
                },
                BatchSize::PerIteration,
            )
        });
    }
}

/// What every desk check adds to find a cheque's file checked before: a search of the
/// audit log's verifications by digest (the index `audit_by_evidence`), here 10,000
/// decisions on 100 files, one of which is asked for (100 earlier checks, each read back
/// and checked).
fn earlier_checks(c: &mut Criterion) {
    let folder = tempfile::tempdir().unwrap();
    let mut store = Store::open(&folder.path().join("bench.db")).unwrap();
    let person_id = store
        .enroll(
            "Writer 31",
            "ACC-31",
            Modality::Signature,
            "m",
            &[NewTemplate {
                embedding: vec![0.1; 4],
                quality: 1.0,
                source_sha256: "0".repeat(64),
                crop: None,
            }],
            "bench",
        )
        .unwrap();
    let file = |n: usize| format!("{n:064x}");
    for n in 0..10_000 {
        store
            .record_decision(
                &Verification {
                    person_id,
                    modality: Modality::Signature,
                    score: 0.5,
                    bands: SIGNATURE_BANDS,
                    decision: Decision::Review,
                    evidence_sha256: Some(&file(n % 100)),
                },
                "bench",
            )
            .unwrap();
    }
    let asked = file(7);
    c.bench_function("signature_earlier_checks_10000_decisions", |b| {
        b.iter(|| assert_eq!(store.earlier_checks(&asked).unwrap().len(), 100))
    });
}

fn compare_two_drawings(c: &mut Criterion) {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/signatures");
    let drawing = |name: &str| {
        let path = data.join(name);
        (
            vouch::imageio::load(&path).unwrap().to_luma8(),
            path.display().to_string(),
        )
    };
    let ((a, a_source), (b, b_source)) = (drawing("w1_1.png"), drawing("w2_1.png"));
    let (shape_a, shape_b) = (
        InkShape::of(&a, &a_source).unwrap(),
        InkShape::of(&b, &b_source).unwrap(),
    );
    c.bench_function("oneshot_shape_distance_1_pair", |bench| {
        bench.iter(|| shape_a.distance(&shape_b))
    });
    let (contexts_a, contexts_b) = (
        GradientContexts::of(&a, &a_source).unwrap(),
        GradientContexts::of(&b, &b_source).unwrap(),
    );
    c.bench_function("oneshot_distortion_distance_1_pair", |bench| {
        bench.iter(|| contexts_a.distance(&contexts_b))
    });
}

/// The copy check alone (`signature::superimpose`), which the desk runs on every check: a
/// questioned canvas laid on 12 references' (the repository's scans, each normalised by the
/// shipped model; the references repeat its 4 writers' 16 scans). Another writer's scan
/// takes the first look only; a turned and slanted copy of a reference, the second too.
fn copy_check(c: &mut Criterion) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = SignatureModel::load(
        &repo.join("models").join(SIGNATURE_MODEL_FILE),
        &Device::Cpu,
    )
    .expect("models/");
    let scan = |writer: usize, n: usize| {
        let path = repo.join(format!("tests/data/signatures/w{writer}_{n}.png"));
        vouch::imageio::load(&path).unwrap().to_luma8()
    };
    let canvas = |scan: GrayImage| {
        let scan = image::DynamicImage::ImageLuma8(scan);
        model.normalise(&scan, "bench").unwrap().canvas
    };
    let references: Vec<_> = (0..REFERENCES)
        .map(|i| canvas(scan(1 + i % 4, 1 + i / 4)))
        .collect();
    let turned = apply(&scan(1, 1), Variation::Rotation(3.0), 0).unwrap();
    let copy = canvas(apply(&turned, Variation::Slant(0.1), 0).unwrap());
    for (name, questioned) in [
        ("signature_copy_check_12_references", canvas(scan(1, 4))),
        (
            "signature_copy_check_12_references_turned_and_slanted_copy",
            copy,
        ),
    ] {
        c.bench_function(name, |bench| {
            bench.iter(|| overlaps(&questioned, &references))
        });
    }
}

/// The normaliser's blur of a whole page (686x382, the largest of the repository's
/// scans), Vouch's beside `image`'s, whose bytes it reproduces: the peer in one command.
fn scan_blur(c: &mut Criterion) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/signatures/w1_3.png");
    let page = vouch::imageio::load(&path).unwrap().to_luma8();
    let mut group = c.benchmark_group("signature_scan_blur");
    group.bench_function("vouch", |bench| bench.iter(|| blur_sigma_2(&page)));
    group.bench_function("image_fast_blur", |bench| {
        bench.iter(|| image::imageops::fast_blur(&page, 2.0))
    });
    group.finish();
}

/// The encoder on one canvas (a desk check's) and on an enrollment's 12 (the repository's
/// scans, normalised by the shipped model): on the CPU's planes, as Vouch runs it, beside
/// candle's tensors, as training and a GPU run it (the peer in one command).
fn embed(c: &mut Criterion) {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(SIGNATURE_MODEL_FILE);
    let planes = SignatureModel::load(&file, &Device::Cpu).expect("models/");
    let tensors = SignatureModel::load_on_tensors(&file, &Device::Cpu).expect("models/");
    let canvases: Vec<GrayImage> = (0..REFERENCES)
        .map(|i| {
            let name = format!("tests/data/signatures/w{}_{}.png", 1 + i % 4, 1 + i / 4);
            let scan = vouch::imageio::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name));
            planes.normalise(&scan.unwrap(), "bench").unwrap().canvas
        })
        .collect();
    let mut group = c.benchmark_group("signature_embed");
    for (path, model) in [("planes", &planes), ("tensors", &tensors)] {
        for count in [1, REFERENCES] {
            group.bench_function(format!("{path}_{count}_canvases"), |bench| {
                bench.iter(|| model.embed_canvases(&canvases[..count]).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = verify_one_scan, earlier_checks, compare_two_drawings, copy_check, scan_blur, embed
}
criterion_main!(benches);
