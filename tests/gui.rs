//! The real window, driven through egui_kittest by its accessible labels: enroll from an
//! image, punch at the kiosk from an image file, verify a cheque signature, move the
//! threshold slider and see FAR change, start and cancel a training run.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::Device;
use common::{data, json_of, models, repo, vouch_on};
use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use vouch::context::Context;
use vouch::gui::{App, Tab};
use vouch::types::Modality;

fn context(db: &Path) -> Context {
    Context {
        models_dir: repo().join("models"),
        signature_model: None,
        db: db.to_path_buf(),
        key: None,
        device: Device::Cpu,
        operator: "kittest".into(),
        login: None,
        min_face_score: vouch::face::DEFAULT_MIN_DETECTION_SCORE,
        config: db.with_file_name("vouch.toml"),
        theme: vouch::context::Theme::System,
    }
}

/// The real `App` as eframe runs it: `logic`, then `ui`, every frame.
fn harness(db: &Path) -> Harness<'static, App> {
    let context = context(db);
    Harness::builder()
        .with_size(egui::vec2(1200.0, 800.0))
        .build_eframe(move |cc| App::new(context, &cc.egui_ctx).unwrap())
}

/// Steps the window until `done` holds (the worker answers in the background).
fn wait_for(harness: &mut Harness<'_, App>, what: &str, done: impl Fn(&Harness<'_, App>) -> bool) {
    let started = Instant::now();
    while !done(harness) {
        if started.elapsed() > Duration::from_secs(120) {
            let seen: Vec<String> = harness
                .query_all_by_label_contains("")
                .filter_map(|node| {
                    let node = node.accesskit_node();
                    node.label().or_else(|| node.value())
                })
                .collect();
            panic!("timed out waiting for {what}; the window shows {seen:#?}");
        }
        std::thread::sleep(Duration::from_millis(20));
        harness.step();
    }
}

fn shows(harness: &Harness<'_, App>, text: &str) -> bool {
    harness.query_by_label_contains(text).is_some()
}

fn type_into(harness: &mut Harness<'_, App>, label: &str, text: &str) {
    harness.get_by_label(label).focus();
    harness.step();
    harness.get_by_label(label).type_text(text);
    harness.step();
}

/// Types `text` over whatever the field held before.
fn replace_in(harness: &mut Harness<'_, App>, label: &str, text: &str) {
    harness.get_by_label(label).focus();
    harness.step();
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    harness.step();
    harness.key_press(egui::Key::Backspace);
    harness.step();
    type_into(harness, label, text);
}

fn ready(harness: &mut Harness<'_, App>) {
    wait_for(harness, "the models to load", |h| shows(h, "face model"));
}

#[test]
fn faces_enrolled_under_an_earlier_model_are_re_embedded_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let path = data("astronaut.png");
    let sample = vouch::enroll::assess_face(
        models(),
        &vouch::imageio::load_rgb(&path).unwrap(),
        &std::fs::read(&path).unwrap(),
    )
    .unwrap()
    .unwrap();
    vouch::store::Store::open(&db)
        .unwrap()
        .enroll(
            "Eileen Collins",
            "E100",
            Modality::Face,
            "retired-model@000000000000",
            std::slice::from_ref(&sample.template),
            "tester",
        )
        .unwrap();
    let mut harness = harness(&db);
    ready(&mut harness);
    assert!(shows(&harness, "1 enrolled face"));
}

#[test]
fn enroll_from_an_image_then_punch_at_the_kiosk() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = harness(&dir.path().join("vouch.db"));
    ready(&mut harness);
    harness.get_by_label("Enrollment").click();
    harness.step();
    type_into(&mut harness, "Name", "Eileen Collins");
    type_into(&mut harness, "Employee or account id", "E100");
    type_into(
        &mut harness,
        "Reference images (one path per line, or drop files here)",
        &data("astronaut.png").display().to_string(),
    );
    harness.get_by_label("Check quality").click();
    wait_for(&mut harness, "quality feedback", |h| {
        shows(h, "good: one face")
    });
    harness.get_by_label("Enroll").click();
    wait_for(&mut harness, "the enrollment", |h| {
        shows(h, "Enrolled Eileen Collins (E100)")
    });
    wait_for(&mut harness, "the people list", |h| {
        shows(h, "Eileen Collins (E100) · 1 reference")
    });

    harness.get_by_label("Kiosk").click();
    harness.step();
    assert!(shows(&harness, "Check in from image"));
    type_into(
        &mut harness,
        "Image file",
        &data("astronaut_mirrored.jpg").display().to_string(),
    );
    harness.get_by_label("Check in from image").click();
    wait_for(&mut harness, "the punch", |h| {
        shows(h, "check-in  Eileen Collins (E100)")
    });
    harness.get_by_label("Check in from image").click();
    // A repeat within the window is said to the person and records nothing.
    wait_for(&mut harness, "the repeat", |h| {
        shows(h, "Already checked in at ")
    });
    assert_eq!(
        harness
            .query_all_by_label_contains("check-in  Eileen Collins (E100)")
            .count(),
        1
    );

    // Delete asks first.
    harness.get_by_label("Enrollment").click();
    harness.step();
    harness.get_by_label("Delete E100").click();
    harness.step();
    harness.get_by_label("Confirm delete").click();
    wait_for(&mut harness, "the deletion", |h| {
        !shows(h, "Eileen Collins (E100) ·")
    });
}

fn enroll_signatures(db: &Path) {
    let (_, model) = common::shipped_signature_model();
    let mut store = vouch::store::Store::open(db).unwrap();
    for writer in 1..=4 {
        common::enroll_writer(&mut store, &model, writer);
    }
}

/// How many references the desk draws beside the questioned scan.
fn references_shown(harness: &Harness<'_, App>) -> usize {
    (1..=12)
        .filter(|n| shows(harness, &format!("Reference {n}:")))
        .count()
}

/// Types an account and a scan at the signature desk, over what the fields held, and
/// waits for a verdict (after an earlier check, wait for the new verdict's own words too).
fn verify_at_the_desk(harness: &mut Harness<'_, App>, account: &str, scan: &str) {
    harness.get_by_label("Signature desk").click();
    harness.step();
    replace_in(harness, "Account", account);
    replace_in(
        harness,
        "Questioned scan",
        &data(scan).display().to_string(),
    );
    harness.get_by_label("Verify signature").click();
    wait_for(harness, "the verdict", |h| shows(h, "Verdict:"));
}

#[test]
fn the_signature_desk_shows_a_verdict_with_per_reference_scores() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    enroll_signatures(&db);
    let mut harness = harness(&db);
    ready(&mut harness);
    verify_at_the_desk(&mut harness, "ACC-1", "signatures/w1_4.png");
    assert_eq!(references_shown(&harness), 3);
    assert!(shows(
        &harness,
        "Writer 1 (ACC-1): scored against 3 references"
    ));
    assert!(!shows(&harness, "compare the pens"));
    assert!(!shows(&harness, "lies on it"));

    // A reference's own scan presented as the cheque: a copy, for a second clerk.
    verify_at_the_desk(&mut harness, "ACC-1", "signatures/w1_2.png");
    wait_for(&mut harness, "the copy found", |h| {
        shows(h, "Reference 2: the questioned lies on it")
    });
    assert!(shows(&harness, "REVIEW by a second clerk"));
    assert!(shows(&harness, "stroke for stroke"));

    // The first cheque's very file again: its earlier check is listed beside the verdict,
    // which cannot be an acceptance.
    verify_at_the_desk(&mut harness, "ACC-1", "signatures/w1_4.png");
    wait_for(&mut harness, "the earlier check listed", |h| {
        shows(h, "Checked before: ")
    });
    assert!(shows(&harness, "against Writer 1 (ACC-1)"));
    assert!(!shows(&harness, "GENUINE (accept)"));
}

/// A clerk enrols an account holder's signature in the window, then checks a cheque.
#[test]
fn a_signature_enrolled_in_the_window_is_checked_at_the_desk() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = harness(&dir.path().join("vouch.db"));
    ready(&mut harness);
    harness.get_by_label("Enrollment").click();
    harness.step();
    let face_override = "Enroll even if the face matches someone else";
    assert!(shows(&harness, face_override));
    wait_for(&mut harness, "the empty list said", |h| {
        shows(h, "Nobody is enrolled yet.")
    });
    harness.get_by_label("Signatures").click();
    harness.step();
    // A signature is never compared with other accounts': the face's override is not offered.
    assert!(!shows(&harness, face_override));
    type_into(&mut harness, "Name", "A. Holder");
    type_into(&mut harness, "Employee or account id", "ACC-7");
    let images = "Reference images (one path per line, or drop files here)";
    type_into(
        &mut harness,
        images,
        &data("signatures/w2_1.png").display().to_string(),
    );
    harness.get_by_label("Enroll").click();
    wait_for(&mut harness, "the enrollment", |h| {
        shows(h, "Enrolled A. Holder (ACC-7) with 1 reference.")
    });
    // One reference is enrolled, with the advice to enrol more, which the clerk follows.
    assert!(shows(&harness, "One reference only"));
    wait_for(&mut harness, "the people list", |h| {
        shows(h, "A. Holder (ACC-7) · 1 reference")
    });
    assert!(shows(&harness, "needs a second reference"));
    harness.get_by_label("Re-enrol ACC-7").click();
    wait_for(&mut harness, "the re-enrolment form", |h| {
        shows(h, "Re-enrol A. Holder (ACC-7)")
    });
    let references = ["signatures/w2_1.png", "signatures/w2_2.png"]
        .map(|name| data(name).display().to_string())
        .join("\n");
    type_into(&mut harness, images, &references);
    harness.get_by_label("Replace references").click();
    wait_for(&mut harness, "the re-enrolment", |h| {
        shows(h, "Re-enrolled A. Holder (ACC-7) with 2 references.")
    });
    assert!(!shows(&harness, "One reference only"));
    wait_for(&mut harness, "the people list", |h| {
        shows(h, "A. Holder (ACC-7) · 2 references")
    });
    assert!(!shows(&harness, "needs a second reference"));
    type_into(&mut harness, "Search people", "Zhang");
    assert!(shows(
        &harness,
        "Nobody enrolled matches \u{201c}Zhang\u{201d}."
    ));
    verify_at_the_desk(&mut harness, "ACC-7", "signatures/w2_3.png");
    assert!(shows(
        &harness,
        "A. Holder (ACC-7): scored against 2 references"
    ));
}

#[test]
fn an_account_holders_chinese_name_is_drawn_at_the_desk() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let (_, model) = common::shipped_signature_model();
    let mut store = vouch::store::Store::open(&db).unwrap();
    vouch::workflow::enroll_signature(
        &model,
        &mut store,
        &vouch::workflow::EnrollRequest {
            name: "王涛".into(),
            external_id: "ACC-88".into(),
            images: vec![data("signatures/w1_1.png")],
        },
        "ana",
    )
    .unwrap();
    drop(store);
    let mut harness = harness(&db);
    ready(&mut harness);
    // The same name written by another hand.
    verify_at_the_desk(&mut harness, "ACC-88", "signatures/w2_1.png");
    assert!(shows(&harness, "FORGED? (reject)"));
    assert!(shows(
        &harness,
        "王涛 (ACC-88): scored against 1 reference "
    ));
    assert!(shows(
        &harness,
        "Before returning the cheque, compare the pens"
    ));
    // The holder's own hand is accepted, and one reference is too few to take that alone.
    verify_at_the_desk(&mut harness, "ACC-88", "signatures/w1_2.png");
    wait_for(&mut harness, "the acceptance", |h| {
        shows(h, "GENUINE (accept)")
    });
    assert!(shows(&harness, "Accepted against a single reference"));
    assert!(!shows(&harness, "compare the pens"));
    // Staff at a kiosk may be Japanese or Korean too.
    for name in ["王涛", "さとう ゆき", "김민준"] {
        let drawn = harness
            .ctx
            .fonts_mut(|fonts| fonts.has_glyphs(&egui::FontId::proportional(14.0), name));
        assert!(
            drawn,
            "no installed font draws {name}, so it shows as boxes: scripts/setup-debian.sh installs fonts-noto-cjk"
        );
    }
}

/// The text of the one node whose label contains `needle`.
fn text_containing(harness: &Harness<'_, App>, needle: &str) -> String {
    let node = harness.get_by_label_contains(needle);
    let node = node.accesskit_node();
    node.value().or_else(|| node.label()).unwrap_or_default()
}

fn far_text(harness: &Harness<'_, App>) -> String {
    text_containing(harness, "manual review")
}

/// The window on four enrolled writers, at the workbench with their scores loaded.
fn workbench_on_enrolled_signatures(db: &Path) -> Harness<'static, App> {
    enroll_signatures(db);
    let mut harness = harness(db);
    ready(&mut harness);
    harness.get_by_label("Threshold workbench").click();
    harness.step();
    harness.get_by_label("Signatures").click();
    harness.step();
    harness
        .get_by_label("Scores from enrolled references")
        .click();
    wait_for(&mut harness, "scores", |h| shows(h, "genuine scores"));
    harness
}

#[test]
fn moving_the_threshold_changes_far_and_saving_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let mut harness = workbench_on_enrolled_signatures(&db);
    harness
        .get_by_role_and_label(egui::accesskit::Role::Slider, "Threshold")
        .set_value_accesskit(0.0);
    harness.step();
    harness.step();
    let accept_all = far_text(&harness);
    assert!(accept_all.starts_with("FAR 100.00%"), "{accept_all}");
    harness
        .get_by_role_and_label(egui::accesskit::Role::Slider, "Threshold")
        .set_value_accesskit(1.0);
    harness.step();
    harness.step();
    let reject_all = far_text(&harness);
    assert!(reject_all.starts_with("FAR 0.00%"), "{reject_all}");
    harness.get_by_label("Propose threshold").click();
    wait_for(&mut harness, "the change", |h| {
        shows(h, "in force: accept ≥ 1.000")
    });
    drop(harness);
    let store = vouch::store::Store::open(&db).unwrap();
    let saved = store.bands(Modality::Signature).unwrap();
    assert_eq!(saved.high, 1.0);
    let audited: i64 = common::read_one(&db, "SELECT count(*) FROM audit WHERE action = 'propose'");
    assert_eq!(audited, 1);
}

#[test]
fn a_training_run_starts_shows_progress_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = common::writer_folders(dir.path());
    // A second branch's folder, also `scans`, with writers of the same names: other people.
    let other_branch = common::writer_folders(&dir.path().join("branch2"));
    let mut harness = harness(&dir.path().join("vouch.db"));
    ready(&mut harness);
    harness.state_mut().tab(Tab::Training);
    harness.step();
    let data_label = "Training data (folders or manifests, one per line)";
    type_into(&mut harness, data_label, &data_dir.display().to_string());
    harness.key_press(egui::Key::Enter);
    harness.step();
    harness
        .get_by_label(data_label)
        .type_text(&other_branch.display().to_string());
    harness.step();
    harness.get_by_label("Start training").click();
    wait_for(&mut harness, "a training step", |h| {
        h.state().training_step().is_some()
    });
    // 8 writers of 4 scans; a fifth of the writers (2) validate.
    assert!(shows(
        &harness,
        "Training on 24 scans of 6 writers; validating on 8 scans of 2 other writers"
    ));
    harness.get_by_label("Cancel training").click();
    wait_for(&mut harness, "the cancellation", |h| {
        shows(h, "Training cancelled")
    });
    // A cancelled run is never offered for activation.
    assert!(harness.query_by_label("Check and propose").is_none());
    let runs: Vec<PathBuf> = std::fs::read_dir(dir.path().join("models"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "one new run folder; the shipped model is untouched"
    );
}

/// A second version of the signature model: the shipped weights under another identity.
fn another_signature_model_version(dir: &Path) -> PathBuf {
    let (shipped, _) = common::shipped_signature_model();
    let weights = vouch::models::load_weights(&shipped, &Device::Cpu).unwrap();
    let mut metadata = weights.metadata.clone();
    metadata.insert("note".into(), "a second version, for a test".into());
    let mut tensors: Vec<_> = weights.tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let version = dir.join("signature-v2.safetensors");
    vouch::models::save_weights(&version, &tensors, metadata).unwrap();
    version
}

#[test]
fn signatures_enrolled_under_an_earlier_model_are_re_embedded_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    // Enrolled before an update replaced the shipped model (its scorer, say).
    let earlier = vouch::signature::SignatureModel::load(
        &another_signature_model_version(dir.path()),
        &Device::Cpu,
    )
    .unwrap();
    common::enroll_writer(&mut vouch::store::Store::open(&db).unwrap(), &earlier, 1);
    let mut harness = harness(&db);
    ready(&mut harness);
    verify_at_the_desk(&mut harness, "ACC-1", "signatures/w1_4.png");
    assert_eq!(references_shown(&harness), 3);
    drop(harness);
    let (_, shipped) = common::shipped_signature_model();
    let store = vouch::store::Store::open(&db).unwrap();
    assert!(
        store
            .templates_missing_model(Modality::Signature, &shipped.model_id())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn after_activation_the_cli_and_the_desk_score_with_the_same_model_and_rollback_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    enroll_signatures(&db);
    let version = another_signature_model_version(dir.path());
    let (shipped, _) = common::shipped_signature_model();
    // What an approved activation does: the references re-embedded, then the change.
    let mut store = vouch::store::Store::open(&db).unwrap();
    let model = vouch::signature::SignatureModel::load(&version, &Device::Cpu).unwrap();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    vouch::workflow::reembed(&mut store, &model, "tester", &cancel, &mut |_| {}).unwrap();
    store
        .propose(
            vouch::store::Change::SignatureModel {
                path: std::path::absolute(&version).unwrap().display().to_string(),
                model_id: model.model_id(),
            },
            serde_json::json!({}),
            &vouch::store::Session::single_user("tester"),
        )
        .unwrap();
    let activated = model.model_id();
    // The training tab fine-tunes from what the context names.
    assert_eq!(
        context(&db).signature_model_path(Some(&store)).unwrap(),
        std::path::absolute(&version).unwrap()
    );
    drop(store);
    let shipped_id = vouch::signature::SignatureModel::load(&shipped, &Device::Cpu)
        .unwrap()
        .model_id();
    assert_ne!(activated, shipped_id);

    let cli = json_of(
        vouch_on(&db, "tester")
            .args(["signature", "verify", "--id", "ACC-1", "--json"])
            .arg(data("signatures/w1_4.png")),
    );
    assert_eq!(cli["model"], activated.as_str(), "{cli}");

    let mut harness = harness(&db);
    ready(&mut harness);
    assert!(shows(&harness, &format!("signature model {activated}")));
    verify_at_the_desk(&mut harness, "ACC-1", "signatures/w1_4.png");
    assert!(shows(&harness, &format!("by {activated}")));

    // Rollback from the window: one governed step (applied at once on a single-user desk).
    harness.get_by_label("Changes").click();
    wait_for(&mut harness, "the rollback button", |h| {
        shows(h, "Propose rollback to shipped")
    });
    harness.get_by_label("Propose rollback to shipped").click();
    wait_for(&mut harness, "the rollback", |h| shows(h, "(approved)"));
    harness.get_by_label("Signature desk").click();
    harness.step();
    harness.get_by_label("Verify signature").click();
    wait_for(&mut harness, "the shipped model's verdict", |h| {
        shows(h, &format!("by {shipped_id}"))
    });
}

#[test]
fn a_photo_of_two_people_punches_the_same_person_from_the_cli_and_the_window() {
    let test = "a_photo_of_two_people_punches_the_same_person_from_the_cli_and_the_window";
    let dir = tempfile::tempdir().unwrap();
    let Some(photo) = common::two_people_photo(dir.path(), 5, test) else {
        return;
    };
    let orl = common::shared("data/faces/orl/s1", test).unwrap();
    let mut references = Vec::new();
    for shot in 1..=3 {
        let path = dir.path().join(format!("orl_s1_{shot}.png"));
        common::enlarged_orl(&orl.join(format!("{shot}.pgm")), 3)
            .save(&path)
            .unwrap();
        references.push(path);
    }
    // The premise: the largest face is not the photo's subject.
    let picture = vouch::imageio::load_rgb(&photo).unwrap();
    let faces = common::models().analyze(&picture).unwrap();
    let largest = (0..faces.len())
        .max_by(|&a, &b| faces[a].bbox.area().total_cmp(&faces[b].bbox.area()))
        .unwrap();
    let subject = vouch::face::subject_index(&faces, picture.dimensions()).unwrap();
    assert_ne!(
        largest,
        subject,
        "{:?}",
        faces.iter().map(|f| f.bbox).collect::<Vec<_>>()
    );
    let db_cli = dir.path().join("cli.db");
    let db_window = dir.path().join("window.db");
    for db in [&db_cli, &db_window] {
        json_of(
            vouch_on(db, "tester")
                .args([
                    "enroll",
                    "--name",
                    "Eileen Collins",
                    "--id",
                    "E100",
                    "--json",
                ])
                .arg(data("astronaut.png")),
        );
        json_of(
            vouch_on(db, "tester")
                .args(["enroll", "--name", "ORL One", "--id", "ORL-1", "--json"])
                .args(&references),
        );
    }
    let punched = json_of(
        vouch_on(&db_cli, "tester")
            .arg("checkin")
            .arg(&photo)
            .arg("--json"),
    );
    assert_eq!(punched["external_id"], "ORL-1", "{punched}");

    let mut harness = harness(&db_window);
    ready(&mut harness);
    type_into(&mut harness, "Image file", &photo.display().to_string());
    harness.get_by_label("Check in from image").click();
    wait_for(&mut harness, "the punch", |h| shows(h, "check-in  "));
    assert!(shows(&harness, "check-in  ORL One (ORL-1)"));
}

#[test]
fn a_database_changed_outside_vouch_is_said_so_when_the_window_opens() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    common::set_bands(
        &mut vouch::store::Store::open(&db).unwrap(),
        Modality::Face,
        vouch::matching::FACE_BANDS,
    )
    .unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE settings SET value = '{\"low\":0.0,\"high\":0.0}' WHERE key = 'bands.face'",
            [],
        )
        .unwrap();
    let mut harness = harness(&db);
    wait_for(&mut harness, "the audit", |h| {
        shows(h, "the database fails its audit")
    });
    assert!(shows(&harness, "settings row bands.face"));
}

/// A database with supervisors ana and cy, and a kiosk account.
fn governed_db(db: &Path) {
    let mut store = vouch::store::Store::open(db).unwrap();
    let desk = vouch::store::Session::single_user("setup");
    use vouch::types::Role;
    store
        .add_operator("ana", Role::Supervisor, "correct horse battery", &desk)
        .unwrap();
    let ana = store.login("ana", "correct horse battery").unwrap();
    store
        .add_operator("cy", Role::Supervisor, "staple paper clip", &ana)
        .unwrap();
    store
        .add_operator("kiosk1", Role::Kiosk, "2468", &ana)
        .unwrap();
}

fn log_in(harness: &mut Harness<'_, App>, name: &str, secret: &str) {
    open_login(harness);
    type_into(harness, "Operator", name);
    type_into(harness, "Password or PIN", secret);
    harness.get_by_label("Enter").click();
    wait_for(harness, "the login", |h| shows(h, &format!("{name} (")));
}

/// The login dialog: a locked window without a camera opens on it by itself.
fn open_login(harness: &mut Harness<'_, App>) {
    wait_for(harness, "the lock", |h| {
        h.query_all_by_label("Log in").count() > 0
    });
    if harness.query_by_label("Operator").is_none() {
        harness
            .get_by_role_and_label(egui::accesskit::Role::Button, "Log in")
            .click();
    }
    wait_for(harness, "the login dialog", |h| {
        h.query_by_label("Operator").is_some()
    });
}

fn log_out(harness: &mut Harness<'_, App>) {
    harness.get_by_label("Log out").click();
    wait_for(harness, "the logout", |h| {
        h.query_all_by_label("Log in").count() > 0
    });
}

#[test]
fn the_window_starts_locked_and_the_kiosk_role_reaches_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    governed_db(&db);
    let mut harness = harness(&db);
    ready(&mut harness);
    wait_for(&mut harness, "the lock", |h| {
        h.query_all_by_label("Log in").count() > 0 && h.state().has_camera().is_some()
    });
    if harness.state().has_camera() == Some(false) {
        // No kiosk to show: the locked window opens on the login by itself.
        wait_for(&mut harness, "the login dialog", |h| {
            h.query_by_label("Operator").is_some()
        });
    }
    for tab in [
        "Enrollment",
        "Signature desk",
        "Threshold workbench",
        "Training",
        "Changes",
    ] {
        assert!(!shows(&harness, tab), "{tab} is open while locked");
    }
    log_in(&mut harness, "kiosk1", "2468");
    for tab in ["Enrollment", "Signature desk", "Training", "Changes"] {
        assert!(!shows(&harness, tab), "{tab} is open to the kiosk role");
    }
    assert!(
        !shows(&harness, "Check in from image"),
        "a photo of someone is not someone: files are a supervisor's testing aid"
    );
    log_out(&mut harness);
    log_in(&mut harness, "ana", "correct horse battery");
    for tab in ["Enrollment", "Signature desk", "Training", "Changes"] {
        assert!(shows(&harness, tab), "{tab} is closed to a supervisor");
    }
    // A wrong secret is said in the dialog, where the person is looking, and leaves the
    // window locked; the name stays, so only the secret is typed again.
    log_out(&mut harness);
    open_login(&mut harness);
    type_into(&mut harness, "Operator", "ana");
    type_into(&mut harness, "Password or PIN", "guess");
    harness.get_by_label("Enter").click();
    wait_for(&mut harness, "the refusal", |h| {
        shows(h, "Not logged in: wrong operator name or secret (ana)")
    });
    assert!(!shows(&harness, "Enrollment"));
    assert!(
        harness.query_by_label("Operator").is_some(),
        "the refused login closed its dialog"
    );
    assert!(
        !shows(&harness, "Error: "),
        "the refusal also went to the status bar, away from the dialog"
    );
    type_into(&mut harness, "Password or PIN", "correct horse battery");
    harness.get_by_label("Enter").click();
    wait_for(&mut harness, "the login with the name kept", |h| {
        shows(h, "ana (")
    });
    assert!(
        !shows(&harness, "Not logged in"),
        "the refusal outlived the login"
    );
}

/// The single-user desk's first supervisor: a secret the store refuses is said in the
/// dialog, which stays open with the name, and the desk stays a single-user one.
#[test]
fn a_refused_first_supervisor_is_said_in_its_dialog() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = harness(&dir.path().join("vouch.db"));
    ready(&mut harness);
    wait_for(&mut harness, "the single-user desk", |h| {
        shows(h, "Create the first supervisor")
    });
    harness.get_by_label("Create the first supervisor").click();
    wait_for(&mut harness, "the dialog", |h| {
        h.query_by_label("Operator").is_some()
    });
    type_into(&mut harness, "Operator", "ana");
    type_into(&mut harness, "Password or PIN", "short");
    harness.get_by_label("Create supervisor").click();
    wait_for(&mut harness, "the refusal", |h| {
        shows(h, "The supervisor was not created: ")
    });
    assert!(
        harness.query_by_label("Create supervisor").is_some(),
        "the refused first supervisor closed its dialog"
    );
    assert!(shows(&harness, "Single-user desk"));
    type_into(&mut harness, "Password or PIN", "correct horse battery");
    harness.get_by_label("Create supervisor").click();
    wait_for(&mut harness, "the supervisor, with the name kept", |h| {
        shows(h, "ana (supervisor)")
    });
}

#[test]
fn a_proposal_made_in_the_window_waits_for_a_second_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    governed_db(&db);
    let mut harness = harness(&db);
    ready(&mut harness);
    log_in(&mut harness, "ana", "correct horse battery");
    harness.get_by_label("Changes").click();
    wait_for(&mut harness, "the proposals", |h| {
        shows(h, "Propose window")
    });
    harness.get_by_label("Propose window").click();
    wait_for(&mut harness, "the proposal", |h| {
        shows(h, "waits for a second supervisor")
    });
    harness.get_by_label("Approve #1").click();
    wait_for(&mut harness, "the refusal", |h| {
        shows(h, "needs a second supervisor")
    });
    log_out(&mut harness);
    log_in(&mut harness, "cy", "staple paper clip");
    harness.get_by_label("Changes").click();
    wait_for(&mut harness, "the proposals", |h| shows(h, "Approve #1"));
    harness.get_by_label("Approve #1").click();
    wait_for(&mut harness, "the approval", |h| shows(h, "approved by cy"));
    drop(harness);
    let store = vouch::store::Store::open(&db).unwrap();
    assert_eq!(
        store.proposal(1).unwrap().status,
        vouch::store::ProposalStatus::Approved
    );
}

/// The percentages after `name ` in the workbench's rates line.
fn rate_in(text: &str, name: &str) -> f64 {
    let start = text.find(&format!("{name} ")).expect(name) + name.len() + 1;
    text[start..]
        .split('%')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_workbench_presets_meet_their_labels_and_a_proposal_report_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let mut harness = workbench_on_enrolled_signatures(&db);
    for (preset, limit) in [("Preset: FAR ≤ 1%", 1.0), ("Preset: FAR ≤ 0.1%", 0.1)] {
        harness.get_by_label(preset).click();
        harness.step();
        harness.step();
        let far = rate_in(&far_text(&harness), "FAR");
        assert!(far <= limit, "{preset}: FAR {far}%");
    }
    harness.get_by_label_contains("Preset: EER").click();
    harness.step();
    harness.step();
    let summary = text_containing(&harness, "genuine scores;");
    let eer = rate_in(&summary, "EER");
    let rates = far_text(&harness);
    let (far, frr) = (rate_in(&rates, "FAR"), rate_in(&rates, "FRR"));
    assert!(
        ((far + frr) / 2.0 - eer).abs() < 0.01,
        "{summary} / {rates}"
    );
    // What standards ask for beside the EER, and what could not be measured here.
    assert!(shows(&harness, "Figures for the report (ISO/IEC 19795-1)"));
    assert!(harness.query_all_by_label_contains("not supported").count() > 0);
    assert!(shows(&harness, "FTE and FTA: not measured"));

    harness.get_by_label("Propose threshold").click();
    wait_for(&mut harness, "the change", |h| shows(h, "in force: accept"));
    harness.get_by_label("Changes").click();
    wait_for(&mut harness, "the proposals", |h| {
        shows(h, "Save report #1")
    });
    harness.get_by_label("Save report #1").click();
    wait_for(&mut harness, "the report", |h| shows(h, "Report saved"));
    let report = std::fs::read_to_string(dir.path().join("reports/proposal-1.html")).unwrap();
    assert_eq!(report.matches("<svg").count(), 2, "DET and histogram");
    assert!(report.contains("FNMR at fixed FMR"));
}

#[test]
fn a_problem_enrollee_is_re_enrolled_from_the_workbench() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let mut harness = workbench_on_enrolled_signatures(&db);
    // At 1.0 every genuine attempt is rejected: everyone is a goat.
    harness
        .get_by_role_and_label(egui::accesskit::Role::Slider, "Threshold")
        .set_value_accesskit(1.0);
    harness.step();
    harness.step();
    assert!(shows(&harness, "Writer 1 (ACC-1): often rejected (goat)"));
    harness.get_by_label("Act on Writer 1 (ACC-1)").click();
    harness.step();
    assert!(shows(&harness, "own offset (positive is stricter)"));
    harness.get_by_label("Re-enrol…").click();
    wait_for(&mut harness, "the re-enrolment form", |h| {
        shows(h, "Re-enrol Writer 1 (ACC-1)")
    });
    let scans = ["signatures/w1_4.png", "signatures/w1_1.png"]
        .map(|name| data(name).display().to_string())
        .join("\n");
    type_into(
        &mut harness,
        "Reference images (one path per line, or drop files here)",
        &scans,
    );
    harness.get_by_label("Replace references").click();
    wait_for(&mut harness, "the re-enrolment", |h| {
        shows(h, "Re-enrolled Writer 1 (ACC-1) with 2 references.")
    });
    drop(harness);
    let store = vouch::store::Store::open(&db).unwrap();
    let person = store
        .person_by_external_id("ACC-1", Modality::Signature)
        .unwrap();
    assert_eq!(person.templates, 2);
    assert!(store.audit_verify().unwrap().intact);
}

fn enroll_astronaut(db: &Path) {
    enroll_photo(db, "Eileen Collins", "E100", "astronaut.png");
}

/// Plays a recorded sequence (a folder) as the kiosk's camera.
fn play_as_camera(harness: &mut Harness<'_, App>, sequence: &Path) {
    type_into(
        harness,
        "Recorded sequence",
        &sequence.display().to_string(),
    );
    harness.get_by_label("Play as the camera").click();
}

fn enroll_photo(db: &Path, name: &str, external_id: &str, photo: &str) {
    let mut store = vouch::store::Store::open(db).unwrap();
    enroll_photo_into(&mut store, name, external_id, photo);
}

fn enroll_photo_into(store: &mut vouch::store::Store, name: &str, external_id: &str, photo: &str) {
    let mut gallery = vouch::gallery::Gallery::new(vouch::face::recognition::EMBEDDING_DIM);
    vouch::workflow::enroll_face(
        models(),
        store,
        &mut gallery,
        &vouch::workflow::EnrollRequest {
            name: name.into(),
            external_id: external_id.into(),
            images: vec![data(photo)],
        },
        false,
        "clerk",
    )
    .unwrap();
}

/// The recorded sequence (tests/data/kiosk) played as the camera: the kiosk loop runs
/// behind the window on every frame, asks for a blink, then greets the person by name and
/// lists the punch; nothing is said about an unknown face.
#[test]
fn the_kiosk_camera_asks_for_a_blink_then_greets_the_person() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    enroll_photo(&db, "Mei Chen", "E200", "kiosk/reference.jpg");
    let mut harness = harness(&db);
    ready(&mut harness);
    play_as_camera(&mut harness, &data("kiosk"));
    wait_for(&mut harness, "the blink prompt", |h| {
        shows(h, "Blink, please.")
    });
    wait_for(&mut harness, "the greeting", |h| {
        shows(h, ", Mei: checked in ")
    });
    assert!(shows(&harness, "check-in  Mei Chen (E200)"));
    assert!(!shows(&harness, "We do not recognise you"));
}

fn check_in_from_file(harness: &mut Harness<'_, App>, image: &str) {
    replace_in(harness, "Image file", &data(image).display().to_string());
    harness.get_by_label("Check in from image").click();
}

#[test]
fn the_kiosk_greets_by_name_says_when_it_failed_and_keeps_the_days_punches() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    enroll_astronaut(&db);
    let mut harness = harness(&db);
    ready(&mut harness);
    check_in_from_file(&mut harness, "coffee.png");
    wait_for(&mut harness, "the refusal", |h| shows(h, "Not recognised."));
    check_in_from_file(&mut harness, "astronaut_640x480.jpg");
    wait_for(&mut harness, "the greeting", |h| {
        shows(h, ", Eileen: checked in ")
    });
    assert!(
        !shows(&harness, "Not recognised."),
        "the failure stays over the punch"
    );
    assert!(shows(&harness, "check-in  Eileen Collins (E100)"));
    drop(harness);

    // After a restart the day's punches are listed again, before anyone punches.
    let mut harness = self::harness(&db);
    ready(&mut harness);
    wait_for(&mut harness, "today's punches", |h| {
        shows(h, "check-in  Eileen Collins (E100)")
    });
}

/// The day's attendance on screen, and a supervisor adding the forgotten check-out: a new
/// punch listed with who added it and why.
#[test]
fn a_forgotten_check_out_is_added_on_screen_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    enroll_astronaut(&db);
    // Checked in two minutes ago (at another kiosk), never out.
    let checked_in = vouch::store::AttendanceRecord {
        at: (chrono::Utc::now() - chrono::Duration::minutes(2))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        kind: vouch::types::PunchKind::In,
        score: 0.9,
        external_id: Some("E100".into()),
        name: None,
        correction: None,
    };
    vouch::store::Store::open(&db)
        .unwrap()
        .import_attendance(&[checked_in], "kiosk-2")
        .unwrap();
    let mut harness = harness(&db);
    ready(&mut harness);
    harness.get_by_label("Attendance").click();
    wait_for(&mut harness, "the day's attendance", |h| {
        shows(h, "no check-out")
    });
    harness.get_by_label("Add a forgotten punch").click();
    harness.step();
    type_into(&mut harness, "Employee id", "E100");
    // A minute ago, in local time (the field holds a default to replace).
    let at = (chrono::Local::now() - chrono::Duration::minutes(1))
        .format("%Y-%m-%d %H:%M")
        .to_string();
    replace_in(&mut harness, "Local time", &at);
    type_into(&mut harness, "Reason", "left by the side door");
    harness.get_by_label("Add punch").click();
    wait_for(&mut harness, "the correction in the report", |h| {
        shows(h, "1 corrected") && shows(h, "left by the side door")
    });
    assert!(!shows(&harness, "no check-out"));
}

/// Enrolment at the camera: the coach looks at the frames (here a recorded sequence of a
/// still, frontal face), keeps the best five as reference photos, and they are checked.
#[test]
fn a_coached_capture_at_the_camera_keeps_the_best_frames() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let sequence = dir.path().join("sequence");
    std::fs::create_dir(&sequence).unwrap();
    for index in 0..45 {
        std::fs::copy(
            data("astronaut_640x480.jpg"),
            sequence.join(format!("frame_{index:02}.jpg")),
        )
        .unwrap();
    }
    std::fs::write(
        sequence.join("sequence.json"),
        r#"{"fps": 30, "frames": 45, "face_in_view_from": 0}"#,
    )
    .unwrap();
    let mut harness = harness(&db);
    ready(&mut harness);
    play_as_camera(&mut harness, &sequence);
    harness.step();
    harness.get_by_label("Enrollment").click();
    harness.step();
    // The button is enabled once the camera has given a frame.
    let started = Instant::now();
    while !shows(&harness, "Stop capture") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no camera frame"
        );
        harness.get_by_label("Capture with coaching").click();
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_for(&mut harness, "the capture to end", |h| {
        shows(h, "Kept the best 5 of")
    });
    wait_for(&mut harness, "the kept photos checked", |h| {
        h.query_all_by_label_contains("good: one face").count() == 5
    });
}

/// The camera not sure (every frame in the review band): the kiosk asks for a second look,
/// then for the PIN of the likely person (set on the Enrollment tab), and their PIN punches.
#[test]
fn the_kiosk_asks_for_a_pin_when_it_is_not_sure() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    enroll_photo(&db, "Mei Chen", "E200", "kiosk/reference.jpg");
    {
        let mut store = vouch::store::Store::open(&db).unwrap();
        common::set_bands(
            &mut store,
            Modality::Face,
            vouch::types::Bands {
                low: 0.5,
                high: 0.995,
            },
        )
        .unwrap();
    }
    let mut harness = harness(&db);
    ready(&mut harness);
    // The clerk sets her kiosk PIN on the Enrollment tab.
    harness.get_by_label("Enrollment").click();
    harness.step();
    type_into(&mut harness, "Kiosk PIN for id", "E200");
    type_into(&mut harness, "PIN", "2468");
    harness.get_by_label("Set PIN").click();
    wait_for(&mut harness, "the PIN set", |h| {
        shows(h, "Kiosk PIN set for Mei Chen (E200)")
    });
    harness.get_by_label("Kiosk").click();
    harness.step();
    play_as_camera(&mut harness, &data("kiosk"));
    wait_for(&mut harness, "the PIN pad", |h| {
        shows(h, "please enter your PIN")
    });
    // A person who hesitates still sees why the pad is there after the message has gone.
    wait_for(&mut harness, "the pad's own line", |h| {
        shows(h, "Please type your PIN, then press Enter PIN") && !shows(h, "please enter your PIN")
    });
    assert!(
        shows(&harness, "Camera picture: ? "),
        "the face is marked as not sure while the pad waits"
    );
    type_into(&mut harness, "PIN", "2468");
    harness.get_by_label("Enter PIN").click();
    wait_for(&mut harness, "the greeting", |h| {
        shows(h, ", Mei: checked in ")
    });
    assert!(
        harness.query_by_label("Enter PIN").is_none(),
        "the pad goes with the greeting"
    );
    assert!(
        !shows(&harness, "Camera picture: ?"),
        "the PIN answered the face's question mark"
    );
}

/// Someone nobody enrolled at the camera: told so, large, and nothing is punched.
#[test]
fn the_kiosk_camera_tells_an_unknown_face_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    enroll_astronaut(&db);
    let mut harness = harness(&db);
    ready(&mut harness);
    play_as_camera(&mut harness, &data("kiosk"));
    wait_for(&mut harness, "the unknown message", |h| {
        shows(h, "We do not recognise you.")
    });
    assert!(!shows(&harness, "checked in"));
}

/// A kiosk on a shared server whose server goes away: it says so, still greets the person
/// at its camera (known from its roster), keeps the punch in its outbox, and once the server is back
/// records it, once, at the time it was made, with the audit saying it arrived late.
#[test]
fn a_kiosk_on_a_server_keeps_punching_while_the_server_is_away() {
    let Some(cluster) = common::server::Cluster::for_test(
        "a_kiosk_on_a_server_keeps_punching_while_the_server_is_away",
    ) else {
        return;
    };
    let url = cluster.database("offline_kiosk");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("site.key");
    let server = PathBuf::from(&url);
    {
        let mut store = vouch::store::Store::open_server(&url, &key).unwrap();
        enroll_photo_into(&mut store, "Mei Chen", "E200", "kiosk/reference.jpg");
    }
    let context = Context {
        key: Some(key.clone()),
        config: dir.path().join("vouch.toml"),
        ..context(&server)
    };
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1200.0, 800.0))
        .build_eframe(move |cc| App::new(context, &cc.egui_ctx).unwrap());
    ready(&mut harness);

    cluster.shut_down().unwrap();
    wait_for(&mut harness, "the kiosk to say it is offline", |h| {
        shows(h, "Offline: the site's server cannot be reached.")
    });
    play_as_camera(&mut harness, &data("kiosk"));
    wait_for(&mut harness, "the greeting", |h| {
        shows(h, ", Mei: noted at ")
    });
    assert!(
        !shows(&harness, "refused"),
        "a server going away is not a server refusing"
    );
    wait_for(&mut harness, "the punch kept", |h| {
        shows(h, "Offline: 1 punch kept on this kiosk")
    });

    cluster.start_again().unwrap();
    wait_for(&mut harness, "the punch sent", |h| {
        !shows(h, "Offline:") && !shows(h, "Back online")
    });
    wait_for(&mut harness, "the list to show it recorded", |h| {
        shows(h, "check-in  Mei Chen (E200)")
    });
    let store = vouch::store::Store::open_server_read_only(&url, &key).unwrap();
    let punches = store.attendance(None, None).unwrap();
    assert_eq!(punches.len(), 1, "recorded once");
    assert_eq!(punches[0].external_id.as_deref(), Some("E200"));
    let late: i64 = common::server::admin_client(&url)
        .query_one(
            "SELECT count(*) FROM audit WHERE action = 'attendance' AND detail LIKE '%\"delayed\"%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(late, 1, "the audit says the punch arrived late");
}

/// A mistyped address (the `:` and `@` lost) or a file that is not there is refused from
/// the Changes tab: nothing is written, and no empty database is made in its place.
#[test]
fn a_mistyped_database_is_refused_and_no_empty_one_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let config = dir.path().join("vouch.toml");
    let missing = dir.path().join("elsewhere").join("vouch.db");
    let mut harness = harness(&db);
    ready(&mut harness);
    harness.get_by_label("Changes").click();
    wait_for(&mut harness, "the settings", |h| {
        shows(h, "This machine's database")
    });
    for (typed, refusal) in [
        (
            "postgres//kiosk1dbhost/vouch",
            "nor a database file's whole path",
        ),
        (missing.to_str().unwrap(), "there is no database at"),
    ] {
        replace_in(&mut harness, "Database", typed);
        harness.get_by_label("Use from next start").click();
        wait_for(&mut harness, refusal, |h| shows(h, refusal));
    }
    drop(harness);
    assert!(!config.exists(), "nothing written");
    assert!(!missing.exists() && !missing.with_file_name("").exists());
    let cwd = std::env::current_dir().unwrap();
    assert!(
        !cwd.join("postgres").exists(),
        "no database made under {cwd:?}"
    );
}

/// Started for the window with a configuration that cannot work, vouch opens a window that
/// says why (a kiosk's launcher has no terminal), and Close closes it.
#[test]
fn a_window_that_cannot_start_says_why() {
    let reason = "/etc/vouch/vouch.toml: there is no database at /srv/vouch/site.db";
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1024.0, 700.0))
        .build_eframe(|_| vouch::gui::cannot_start::CannotStart::new(reason.into()));
    harness.step();
    for text in ["Vouch cannot start", reason] {
        assert!(harness.query_by_label_contains(text).is_some(), "{text}");
    }
    harness.get_by_label("Close").click();
    harness.step();
    let commands = &harness.output().viewport_output[&egui::ViewportId::ROOT].commands;
    assert!(commands.contains(&egui::ViewportCommand::Close));
}

/// A database file that is not Vouch's: the window says so, large, instead of a kiosk that
/// looks as if it were waiting for a camera; and the file is left as it was.
#[test]
fn a_window_on_a_file_that_is_not_a_vouch_database_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&db, &bytes).unwrap();
    let mut harness = harness(&db);
    wait_for(&mut harness, "the reason", |h| {
        shows(h, "Vouch cannot start") && shows(h, "is not a Vouch database")
    });
    assert!(harness.query_by_label("Kiosk").is_none(), "no tabs");
    drop(harness);
    assert_eq!(std::fs::read(&db).unwrap(), bytes);
}

/// A supervisor points this machine at the site's server from the Changes tab: a server
/// that does not answer is refused and nothing is written; the site's server is opened
/// first, then named in the config file, the switch audited in the database the machine
/// leaves, and the next start (no flags) opens the server.
#[test]
fn the_window_points_this_machine_at_the_sites_server() {
    let Some((url, _)) = common::server::database("switch_database") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let config = dir.path().join("vouch.toml");
    let look = "theme = \"light\"\n";
    std::fs::write(&config, look).unwrap();
    let key = dir.path().join("site.key");
    let mut harness = harness(&db);
    ready(&mut harness);
    harness.get_by_label("Changes").click();
    wait_for(&mut harness, "the settings", |h| {
        shows(h, "This machine's database")
    });

    type_into(
        &mut harness,
        "Database",
        "postgres://nobody@127.0.0.1:9/none",
    );
    harness.get_by_label("Use from next start").click();
    wait_for(&mut harness, "the refusal", |h| shows(h, "Not changed:"));
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        look,
        "nothing written for a server that did not answer"
    );

    replace_in(&mut harness, "Database", &url);
    type_into(&mut harness, "Key file", &key.display().to_string());
    harness.get_by_label("Use from next start").click();
    wait_for(&mut harness, "the switch", |h| shows(h, "Saved in"));
    drop(harness);

    let saved = vouch::context::SiteConfig::load(&config).unwrap();
    assert_eq!(saved.db, Some(PathBuf::from(&url)));
    assert_eq!(saved.key, Some(key.clone()));
    assert_eq!(
        saved.theme,
        Some(vouch::context::Theme::Light),
        "the machine keeps its look"
    );
    let switches: i64 = common::read_one(
        &db,
        "SELECT count(*) FROM audit WHERE action = 'machine_database' AND actor = 'kittest'",
    );
    assert_eq!(
        switches, 1,
        "the switch is in the audit of the database left"
    );

    let listed = common::stdout_of(
        assert_cmd::Command::cargo_bin("vouch")
            .unwrap()
            .env("VOUCH_CONFIG", &config)
            .args(["--device", "cpu", "people", "list", "--json"]),
    );
    assert_eq!(
        listed.trim(),
        "[]",
        "the next start opens the site's (empty) server"
    );
    let mut admin = common::server::admin_client(&url);
    let marked: i64 = admin
        .query_one("SELECT count(*) FROM vouch_meta", &[])
        .unwrap()
        .get(0);
    assert!(marked > 0, "the server holds Vouch's schema");
}
