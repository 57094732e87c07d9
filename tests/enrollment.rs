//! Enrollment, verification and identification through the real binary and real photos,
//! and identification accuracy on ORL.

mod common;

use assert_cmd::Command;
use common::{data, json_of, models, shared, vouch_on};
use vouch::gallery::Gallery;
use vouch::imageio::load_rgb;
use vouch::matching::FACE_BANDS;

fn vouch(db: &std::path::Path) -> Command {
    vouch_on(db, "tester")
}

fn stdout_json(output: &std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `vouch ARGS [PHOTO] --json` on the database, which must succeed.
fn run_json(db: &std::path::Path, args: &[&str], photo: Option<&str>) -> serde_json::Value {
    let mut command = vouch(db);
    command.args(args).arg("--json");
    if let Some(name) = photo {
        command.arg(data(name));
    }
    json_of(&mut command)
}

#[test]
fn enroll_verify_identify_delete() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let copy = dir.path().join("astronaut-again.png");
    std::fs::copy(data("astronaut.png"), &copy).unwrap();
    let enrolled = vouch(&db)
        .args([
            "enroll",
            "--name",
            "Eileen Collins",
            "--id",
            "E100",
            "--json",
        ])
        .arg(data("astronaut.png"))
        .arg(data("coffee.png"))
        .arg(data("two_faces.png"))
        .arg(&copy)
        .output()
        .unwrap();
    let json = stdout_json(&enrolled);
    assert_eq!(json["enrolled"], 1);
    let reasons = String::from_utf8_lossy(&enrolled.stderr);
    assert!(
        reasons.contains("no face found")
            && reasons.contains("2 faces")
            && reasons.contains("the same picture as"),
        "{reasons}"
    );

    let verified = run_json(
        &db,
        &["verify", "--id", "E100"],
        Some("astronaut_mirrored.jpg"),
    );
    assert_eq!(verified["decision"], "accept", "{verified}");
    let photo = std::fs::read(data("astronaut_mirrored.jpg")).unwrap();
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(photo));
    assert_eq!(verified["photo_sha256"], digest.as_str(), "{verified}");
    let identified = run_json(&db, &["identify"], Some("astronaut_mirrored.jpg"));
    assert_eq!(identified[0]["external_id"], "E100");

    let first = run_json(&db, &["checkin"], Some("astronaut_mirrored.jpg"));
    assert_eq!(
        (first["status"].as_str(), first["kind"].as_str()),
        (Some("recorded"), Some("in")),
        "{first}"
    );
    let repeat = run_json(&db, &["checkin"], Some("astronaut.png"));
    assert_eq!(repeat["status"], "repeat", "{repeat}");
    let window = run_json(
        &db,
        &["settings", "set-repeat-window", "--minutes", "0"],
        None,
    );
    assert_eq!(window["status"], "approved", "{window}");
    let out = run_json(&db, &["checkin"], Some("astronaut.png"));
    assert_eq!(out["kind"], "out", "{out}");
    let stranger = vouch(&db)
        .args(["checkin"])
        .arg(data("coffee.png"))
        .output()
        .unwrap();
    assert!(!stranger.status.success());
    let shown = run_json(&db, &["people", "show", "E100"], None);
    assert_eq!(shown["templates"], 1);

    // The same face under another id is refused as a duplicate identity.
    let duplicate = vouch(&db)
        .args(["enroll", "--name", "Someone", "--id", "E200"])
        .arg(data("astronaut_mirrored.jpg"))
        .output()
        .unwrap();
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already matches Eileen Collins"));

    let unconfirmed = vouch(&db)
        .args(["people", "delete", "E100"])
        .output()
        .unwrap();
    assert!(!unconfirmed.status.success());
    assert!(
        vouch(&db)
            .args(["people", "delete", "E100", "--yes"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let people = run_json(&db, &["people", "list"], None);
    assert_eq!(people.as_array().unwrap().len(), 0);
    let audit = run_json(&db, &["audit", "verify"], None);
    assert_eq!(audit["intact"], true);
    assert_eq!(audit["rows"], 6); // enroll, verify, a punch, the repeat window, a punch, delete
}

/// ORL: enroll 3 photos of each of 40 people, identify the other 7.
#[test]
fn orl_rank_one_identification() {
    let Some(orl) = shared("data/faces/orl", "orl_rank_one_identification") else {
        return;
    };
    let embed = |subject: usize, shot: usize| {
        let path = orl.join(format!("s{subject}/{shot}.pgm"));
        models()
            .main_face(&load_rgb(&path).unwrap(), "orl")
            .ok()
            .map(|(face, _)| face.embedding)
    };
    let mut gallery = Gallery::new(128);
    for subject in 1..=40 {
        let references: Vec<Vec<f32>> = (1..=3).filter_map(|shot| embed(subject, shot)).collect();
        gallery
            .add_person(subject as i64, references.iter().map(Vec::as_slice))
            .unwrap();
    }
    let (mut correct, mut false_accepts, mut total, mut no_face) = (0, 0, 0, 0);
    for subject in 1..=40 {
        for shot in 4..=10 {
            total += 1;
            let Some(probe) = embed(subject, shot) else {
                no_face += 1;
                continue;
            };
            let best = gallery.search(&probe, 1).unwrap()[0];
            if best.person_id == subject as i64 {
                correct += 1;
            } else if best.score >= FACE_BANDS.high {
                false_accepts += 1;
            }
        }
    }
    let rank1 = correct as f64 / total as f64;
    eprintln!(
        "ORL rank-1 {correct}/{total} = {:.2}% ({no_face} probes without a face), wrong top-1 in the accept band: {false_accepts}",
        100.0 * rank1
    );
    // Measured 91.4% (256/280): the 92x112 grey ORL shots are far below the network's
    // 150 px chips; this guards against regressions.
    assert!(rank1 >= 0.90, "rank-1 {rank1}");
}
