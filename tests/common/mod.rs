//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Device;
use vouch::face::FaceModels;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn data(name: &str) -> PathBuf {
    repo().join("tests/data").join(name)
}

/// One value read straight from the database file, as an auditor with `sqlite3` would,
/// past Vouch's own checks.
pub fn read_one<T: rusqlite::types::FromSql>(db: &Path, sql: &str) -> T {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |row| row.get(0))
        .unwrap()
}

/// The real models, loaded once per test binary.
pub fn models() -> &'static FaceModels {
    static MODELS: OnceLock<FaceModels> = OnceLock::new();
    MODELS.get_or_init(|| {
        FaceModels::load(&repo().join("models"), &Device::Cpu)
            .expect("models/ holds the converted weights")
    })
}

/// `../shared` (or `$VOUCH_SHARED`) joined with `relative`, or `None` with a message
/// saying which test skips and why.
pub fn shared(relative: &str, test: &str) -> Option<PathBuf> {
    let base = std::env::var_os("VOUCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared"));
    let path = base.join(relative);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED {test}: {} is absent (set VOUCH_SHARED to the shared data folder)",
            path.display()
        );
        None
    }
}

/// A photo of two different people where the rules can disagree: the astronaut large at
/// the left edge, and ORL subject 1 (shot `shot`, enlarged) smaller at the centre. The
/// subject of the photo is the face at its centre. `None` without ../shared.
pub fn two_people_photo(dir: &Path, shot: u32, test: &str) -> Option<PathBuf> {
    let orl = shared(&format!("data/faces/orl/s1/{shot}.pgm"), test)?;
    let mut canvas = image::RgbImage::from_pixel(960, 600, image::Rgb([128, 128, 128]));
    let astronaut = image::open(data("astronaut.png")).unwrap().to_rgb8();
    image::imageops::replace(&mut canvas, &astronaut, 0, 44);
    let centre = enlarged_orl(&orl, 2);
    let (w, h) = centre.dimensions();
    image::imageops::replace(
        &mut canvas,
        &centre,
        i64::from(480 - w / 2),
        i64::from(300 - h / 2),
    );
    let path = dir.join(format!("two_people_{shot}.png"));
    canvas.save(&path).unwrap();
    Some(path)
}

/// An ORL shot (92x112 grey) enlarged `factor` times as RGB, so its face is wide enough
/// to enrol.
pub fn enlarged_orl(path: &Path, factor: u32) -> image::RgbImage {
    let grey = image::open(path).unwrap().to_rgb8();
    image::imageops::resize(
        &grey,
        grey.width() * factor,
        grey.height() * factor,
        image::imageops::FilterType::CatmullRom,
    )
}

/// The binary on the CPU with a database, acting as `operator`.
pub fn vouch_on(db: &Path, operator: &str) -> assert_cmd::Command {
    let mut command = assert_cmd::Command::cargo_bin("vouch").unwrap();
    command
        .args(["--device", "cpu", "--operator", operator, "--db"])
        .arg(db);
    command
}

/// What a command that must succeed printed on stdout (the test fails with its stderr
/// otherwise).
pub fn stdout_of(command: &mut assert_cmd::Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The JSON a command that must succeed printed.
pub fn json_of(command: &mut assert_cmd::Command) -> serde_json::Value {
    let stdout = stdout_of(command);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Scans 1-4 of writers 1-4 (tests/data/signatures) as a training folder under `dir`,
/// one folder per writer.
pub fn writer_folders(dir: &Path) -> PathBuf {
    let root = dir.join("scans");
    for writer in 1..=4 {
        let folder = root.join(format!("writer{writer}"));
        std::fs::create_dir_all(&folder).unwrap();
        for n in 1..=4 {
            std::fs::copy(
                data(&format!("signatures/w{writer}_{n}.png")),
                folder.join(format!("{n}.png")),
            )
            .unwrap();
        }
    }
    root
}

/// A face-shaped template (128 values of norm 1.4, as the network's are), different per
/// seed, with a crop whose bytes are known.
pub fn face_template(seed: f32) -> vouch::store::NewTemplate {
    let raw: Vec<f32> = (0..128).map(|i| seed + i as f32 * 0.001).collect();
    let norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
    vouch::store::NewTemplate {
        embedding: raw.iter().map(|v| v * 1.4 / norm).collect(),
        quality: 0.9,
        source_sha256: format!("{seed}"),
        crop: Some(format!("CROP-BYTES-OF-{seed}-").repeat(40).into_bytes()),
    }
}

/// Bands set as a single-user desk sets them: a proposal applied as it is made.
#[allow(dead_code)]
pub fn set_bands(
    store: &mut vouch::store::Store,
    modality: vouch::types::Modality,
    bands: vouch::types::Bands,
) -> Result<vouch::store::Proposal, vouch::store::StoreError> {
    store.propose(
        vouch::store::Change::Bands { modality, bands },
        serde_json::json!({}),
        &vouch::store::Session::single_user("supervisor"),
    )
}

/// The shipped signature model, and its file.
pub fn shipped_signature_model() -> (PathBuf, vouch::signature::SignatureModel) {
    let shipped = repo()
        .join("models")
        .join(vouch::signature::SIGNATURE_MODEL_FILE);
    let model = vouch::signature::SignatureModel::load(&shipped, &Device::Cpu).unwrap();
    (shipped, model)
}

/// The shipped signature model written to `path` with one metadata entry replaced: a
/// model that reads scans otherwise.
pub fn shipped_signature_with(path: &Path, key: &str, value: String) -> PathBuf {
    let (shipped, _) = shipped_signature_model();
    let weights = vouch::models::load_weights(&shipped, &Device::Cpu).unwrap();
    let mut metadata = weights.metadata;
    metadata.insert(key.into(), value);
    let tensors: Vec<_> = weights.tensors.into_iter().collect();
    vouch::models::save_weights(path, &tensors, metadata).unwrap();
    path.to_path_buf()
}

/// Enrols `Writer N` (`ACC-N`) from their first three test scans.
pub fn enroll_writer(
    store: &mut vouch::store::Store,
    model: &vouch::signature::SignatureModel,
    writer: u32,
) {
    vouch::workflow::enroll_signature(
        model,
        store,
        &vouch::workflow::EnrollRequest {
            name: format!("Writer {writer}"),
            external_id: format!("ACC-{writer}"),
            images: (1..=3)
                .map(|n| data(&format!("signatures/w{writer}_{n}.png")))
                .collect(),
        },
        "ana",
    )
    .unwrap();
}
/// Enrols `Writer N` (`ACC-N`) as Vouch did before it kept each reference's ink: each
/// reference stored as its normalised canvas.
pub fn enroll_writer_as_before(
    store: &mut vouch::store::Store,
    model: &vouch::signature::SignatureModel,
    writer: u32,
) {
    let templates: Vec<_> = (1..=3)
        .map(|n| {
            use sha2::Digest;
            let scan = data(&format!("signatures/w{writer}_{n}.png"));
            let (normalised, embedding) = model.embed_scan(&scan).unwrap();
            vouch::store::NewTemplate {
                embedding,
                quality: normalised.ink_fraction,
                source_sha256: hex::encode(sha2::Sha256::digest(std::fs::read(&scan).unwrap())),
                crop: Some(vouch::signature::reference::png_bytes(&normalised.canvas).unwrap()),
            }
        })
        .collect();
    store
        .enroll(
            &format!("Writer {writer}"),
            &format!("ACC-{writer}"),
            vouch::types::Modality::Signature,
            &model.model_id(),
            &templates,
            "ana",
        )
        .unwrap();
}
/// The largest difference between two runs of numbers, value by value.
pub fn largest_difference<'a>(
    a: impl IntoIterator<Item = &'a f32>,
    b: impl IntoIterator<Item = &'a f32>,
) -> f32 {
    a.into_iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// A person's signature templates under one model, in enrollment order.
pub fn signature_templates(
    store: &vouch::store::Store,
    person_id: i64,
    model_id: &str,
) -> Vec<vouch::store::StoredTemplate> {
    store
        .person_templates(person_id, model_id, &vouch::signature::TEMPLATE_SHAPE)
        .unwrap()
}
pub mod server;

/// Person `i` ("Person i", id "Ei") enrolled with one template of model "m" made from
/// `seed`, by "tester".
pub fn enroll_face(store: &mut vouch::store::Store, i: usize, seed: f32) -> i64 {
    store
        .enroll(
            &format!("Person {i}"),
            &format!("E{i}"),
            vouch::types::Modality::Face,
            "m",
            &[face_template(seed)],
            "tester",
        )
        .unwrap()
}
