//! The real `vouch` binary, as a user runs it.

mod common;

use assert_cmd::Command;
use common::data;

fn vouch() -> Command {
    let mut command = Command::cargo_bin("vouch").unwrap();
    command.args(["--device", "cpu"]);
    command
}

/// Runs `vouch ARGS --json`, which must succeed, and parses what it prints.
fn success_json(args: &[std::ffi::OsString]) -> serde_json::Value {
    let output = vouch().args(args).arg("--json").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

#[test]
fn embed_prints_every_face_as_json() {
    let json = success_json(&["face".into(), "embed".into(), data("two_faces.png").into()]);
    let faces = json["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 2);
    for face in faces {
        assert_eq!(face["embedding"].as_array().unwrap().len(), 128);
        assert_eq!(face["landmarks"].as_array().unwrap().len(), 68);
        assert!(face["detection_score"].as_f64().unwrap() > 0.5);
        assert!(face["bbox"]["width"].as_f64().unwrap() > 20.0);
    }
    assert!(
        json["model"]
            .as_str()
            .unwrap()
            .starts_with("faceapi-dlib-resnet+mirror@")
    );
}

#[test]
fn embed_saves_aligned_chips_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let status = vouch()
        .args(["face", "embed"])
        .arg(data("astronaut.png"))
        .arg("--chips")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(status.status.success());
    let chip = image::open(dir.path().join("astronaut_face0.png")).unwrap();
    assert_eq!((chip.width(), chip.height()), (150, 150));
}

fn compare_json(first: &str, second: &str) -> serde_json::Value {
    success_json(&[
        "face".into(),
        "compare".into(),
        data(first).into(),
        data(second).into(),
    ])
}

#[test]
fn compare_decides_same_person() {
    let json = compare_json("astronaut.png", "astronaut_mirrored.jpg");
    let score = json["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score));
    assert!(json["same_person"].as_bool().unwrap(), "{json}");
    assert_eq!(json["decision"], "same person");
}

#[test]
fn compare_uses_the_main_face_of_several() {
    assert_eq!(
        compare_json("two_faces.png", "astronaut.png")["faces_in_first"],
        2
    );
}

fn fails_with(args: &[&str], needle: &str) {
    let output = vouch().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "succeeded: {args:?}");
    assert!(
        stderr.contains(needle),
        "stderr of {args:?} lacks `{needle}`: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_input_exits_non_zero_with_a_clear_message() {
    let path = |name: &str| data(name).display().to_string();
    fails_with(&["face", "embed", &path("coffee.png")], "no face found");
    fails_with(
        &["face", "embed", &path("corrupt.jpg")],
        "not a readable image",
    );
    fails_with(
        &["face", "embed", &path("not_an_image.png")],
        "not a readable image",
    );
    fails_with(
        &["face", "embed", &path("huge_20000x20000.pgm")],
        "20000x20000",
    );
    fails_with(&["face", "embed", &path("missing.png")], "cannot read");
    fails_with(
        &[
            "face",
            "compare",
            &path("astronaut.png"),
            &path("coffee.png"),
        ],
        "no face found",
    );
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.csv");
    std::fs::write(
        &manifest,
        format!(
            "path,identity,kind\n{},w1,genuine\n",
            path("signatures/w1_1.png")
        ),
    )
    .unwrap();
    let manifest = manifest.display().to_string();
    fails_with(
        &[
            "eval",
            "copies",
            "--manifest",
            &manifest,
            "--copies-of",
            "13",
        ],
        "copies of 13 references laid on 12",
    );
    fails_with(
        &["eval", "copies", "--manifest", &path("missing.csv")],
        "missing.csv",
    );
}

#[test]
fn missing_models_are_named() {
    let empty = tempfile::tempdir().unwrap();
    let models = empty.path().display().to_string();
    fails_with(
        &[
            "--models",
            &models,
            "face",
            "embed",
            &data("astronaut.png").display().to_string(),
        ],
        "model file not found",
    );
}

#[test]
fn cuda_without_the_feature_is_refused() {
    if cfg!(feature = "cuda") {
        return;
    }
    let output = Command::cargo_bin("vouch")
        .unwrap()
        .args(["--device", "cuda", "face", "embed"])
        .arg(data("astronaut.png"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no `cuda` feature"));
}

#[test]
fn the_device_comparison_refuses_to_compare_the_cpu_with_itself() {
    fails_with(
        &["bench", "devices"],
        "compares an accelerator with the CPU",
    );
}

#[test]
fn options_that_only_folds_read_are_refused_without_them() {
    // Without --folds the model is scored as it is, and without --train-epochs the folds
    // reuse its encoder: an option either would ignore would have its figures read as that
    // recipe's, so each is refused, naming what it needs.
    let verify = ["eval", "verify", "--manifest", "signatures.csv"];
    let refused = |options: &[&str], needed: &str| {
        fails_with(&[&verify[..], options].concat(), needed);
    };
    refused(&["--cohort", "3"], "--folds");
    refused(&["--descriptor-canvas", "180x264"], "--folds");
    refused(&["--fit-data", "svc.csv"], "--folds");
    refused(&["--seed", "2"], "--folds");
    refused(&["--folds", "4", "--canvas", "52x52"], "--train-epochs");
    refused(&["--folds", "4", "--lr", "0.0001"], "--train-epochs");
    refused(&["--folds", "4", "--runs", "crossval"], "--train-epochs");
    refused(
        &["--folds", "4", "--train-init", "omniglot.safetensors"],
        "--train-epochs",
    );
    // Given what they need, they pass clap and reach the missing manifest.
    refused(
        &[
            "--folds",
            "4",
            "--cohort",
            "3",
            "--train-epochs",
            "1",
            "--lr",
            "0.0001",
        ],
        "cannot read signatures.csv",
    );
}

#[test]
fn import_faceapi_reproduces_the_shipped_weights() {
    // The npm package is not in the repository; its path comes from the environment.
    let Some(source) = std::env::var_os("VOUCH_FACEAPI_MODEL_DIR") else {
        eprintln!(
            "SKIPPED import_faceapi_reproduces_the_shipped_weights: set VOUCH_FACEAPI_MODEL_DIR to the npm package's model/ folder"
        );
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let output = vouch()
        .args(["models", "import-faceapi"])
        .arg(&source)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (_, file) in vouch::models::faceapi::NETWORKS {
        let shipped = std::fs::read(common::repo().join("models").join(file)).unwrap();
        assert!(
            std::fs::read(out.path().join(file)).unwrap() == shipped,
            "{file} differs"
        );
    }
}

#[test]
fn a_persons_offset_and_re_enrolment_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let at_db = |args: &[&str]| {
        let mut all: Vec<std::ffi::OsString> = vec!["--db".into(), db.clone().into()];
        all.extend(args.iter().map(Into::into));
        all
    };
    let mut enroll = at_db(&["signature", "enroll", "--name", "Writer 1", "--id", "ACC-1"]);
    enroll.extend((1..=3).map(|n| data(&format!("signatures/w1_{n}.png")).into()));
    success_json(&enroll);
    let set_offset = |offset: &str| {
        at_db(&[
            "settings",
            "set-offset",
            "--modality",
            "signature",
            "--id",
            "ACC-1",
            "--offset",
            offset,
        ])
    };
    // A single-user desk applies a proposal as it is made.
    let proposal = success_json(&set_offset("-0.05"));
    assert_eq!(proposal["status"], "approved");
    assert_eq!(proposal["evidence"]["evaluation"]["genuine"], 2);
    let settings = success_json(&at_db(&["settings", "show"]));
    let offsets = settings["person_offsets"].as_array().unwrap();
    assert_eq!(offsets.len(), 1);
    assert_eq!(offsets[0]["external_id"], "ACC-1");
    assert!((offsets[0]["offset"].as_f64().unwrap() + 0.05).abs() < 1e-6);
    let refused = vouch().args(set_offset("0.4")).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("±0.15"));

    let mut reenroll = at_db(&["people", "reenroll", "ACC-1", "--modality", "signature"]);
    reenroll.push(data("signatures/w1_4.png").into());
    let report = success_json(&reenroll);
    assert_eq!(report["enrolled"], 1);
    let person = success_json(&at_db(&[
        "people",
        "show",
        "ACC-1",
        "--modality",
        "signature",
    ]));
    assert_eq!(person["templates"], 1);
    let listed = common::stdout_of(vouch().args(at_db(&["people", "list"])));
    assert!(
        listed.contains("ACC-1\tWriter 1\tsignature\t1 reference\t")
            && listed.trim_end().ends_with("\tneeds a second reference"),
        "{listed}"
    );
}

/// `vouch correct` adds a forgotten punch; the hours report counts it as corrected.
#[test]
fn a_correction_from_the_command_line_is_counted_in_the_hours() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let mut enroll = common::vouch_on(&db, "clerk");
    enroll.args([
        "enroll",
        "--name",
        "Eileen Collins",
        "--id",
        "E100",
        common::data("astronaut.png").to_str().unwrap(),
    ]);
    common::stdout_of(&mut enroll);
    let when = chrono::Local::now() - chrono::Duration::minutes(30);
    let at = when.format("%Y-%m-%d %H:%M").to_string();
    let mut correct = common::vouch_on(&db, "ana");
    correct.args([
        "correct",
        "--id",
        "E100",
        "--kind",
        "in",
        "--at",
        &at,
        "--reason",
        "kiosk was down",
    ]);
    assert!(common::stdout_of(&mut correct).contains("added check-in for Eileen Collins"));
    let mut refused = common::vouch_on(&db, "ana");
    refused.args([
        "correct", "--id", "E100", "--kind", "sideways", "--at", &at, "--reason", "x",
    ]);
    refused.assert().failure();
    let today = when.date_naive().to_string();
    let mut hours = common::vouch_on(&db, "ana");
    hours.args([
        "export", "hours", "--from", &today, "--to", &today, "--json",
    ]);
    let days = common::json_of(&mut hours);
    assert_eq!(days[0]["corrected"], 1, "{days}");
    assert_eq!(days[0]["missing_check_out"], true, "{days}");
}

/// A machine whose config file names a database that is not there (moved, a mistyped
/// address) refuses to start, naming the file and the address, instead of making an empty
/// database without the site's staff and operators.
/// A machine's config file may fix the window's look whatever its system prefers (a kiosk
/// in a daylit lobby); a look it does not know is refused, naming the file.
#[test]
fn a_config_fixes_the_windows_look_only_with_a_look_it_knows() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vouch.toml");
    let global = vouch::cli::Cli::parse_from(["vouch", "--device", "cpu"]).global;
    assert_eq!(
        global.context_with(config.clone()).unwrap().theme,
        vouch::context::Theme::System
    );
    std::fs::write(&config, "theme = \"light\"\n").unwrap();
    assert_eq!(
        global.context_with(config.clone()).unwrap().theme,
        vouch::context::Theme::Light
    );

    std::fs::write(&config, "theme = \"sepia\"\n").unwrap();
    let output = vouch()
        .env("VOUCH_CONFIG", &config)
        .args(["people", "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("vouch.toml") && stderr.contains("sepia"),
        "{stderr}"
    );
}

#[test]
fn a_config_naming_a_missing_database_is_refused_and_nothing_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vouch.toml");
    let missing = dir.path().join("gone").join("site.db");
    for (db, reason) in [
        (missing.display().to_string(), "there is no database at"),
        (
            "postgres//kiosk1dbhost/vouch".to_string(),
            "nor a database file's whole path",
        ),
    ] {
        std::fs::write(&config, format!("db = {db:?}\n")).unwrap();
        let output = vouch()
            .env("VOUCH_CONFIG", &config)
            .current_dir(dir.path())
            .args(["people", "list"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{db}: {stderr}");
        assert!(
            stderr.contains(reason) && stderr.contains("vouch.toml"),
            "{stderr}"
        );
    }
    assert!(!missing.with_file_name("").exists());
    assert!(!dir.path().join("postgres").exists());
}
