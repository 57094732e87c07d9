//! Settings, re-embedding, batch enrollment (cancelled and killed), attendance export /
//! import, and backup / restore, on real photos and real database files.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::{data, models, shared, stdout_of, vouch_on};
use vouch::enroll::assess_face;
use vouch::imageio::load_rgb;
use vouch::matching::{FACE_BANDS, euclidean_distance};
use vouch::store::Store;
use vouch::types::{Bands, Modality};
use vouch::workflow::{self, EnrollRequest};

fn fail(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(!output.status.success(), "expected a failure");
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn bands_are_saved_per_modality_and_audited() {
    let mut store = Store::open_in_memory().unwrap();
    assert_eq!(store.bands(Modality::Face).unwrap(), FACE_BANDS);
    let strict = Bands {
        low: 0.5,
        high: 0.62,
    };
    common::set_bands(&mut store, Modality::Face, strict).unwrap();
    assert_eq!(store.bands(Modality::Face).unwrap(), strict);
    assert_ne!(store.bands(Modality::Signature).unwrap(), strict);
    let inverted = Bands {
        low: 0.7,
        high: 0.6,
    };
    assert!(common::set_bands(&mut store, Modality::Face, inverted).is_err());
    assert_eq!(store.bands(Modality::Face).unwrap(), strict);
    let report = store.audit_verify().unwrap();
    assert_eq!((report.rows, report.intact), (1, true));
}

#[test]
fn reembedding_rebuilds_the_gallery_from_stored_crops() {
    let path = data("astronaut.png");
    let bytes = std::fs::read(&path).unwrap();
    let sample = assess_face(models(), &load_rgb(&path).unwrap(), &bytes)
        .unwrap()
        .unwrap();
    let mut store = Store::open_in_memory().unwrap();
    let person = store
        .enroll(
            "Eileen",
            "E1",
            Modality::Face,
            "retired-model@000000000000",
            std::slice::from_ref(&sample.template),
            "tester",
        )
        .unwrap();
    let current = models().model_id();
    assert!(
        store
            .person_templates(person, &current, &vouch::face::TEMPLATE_SHAPE)
            .unwrap()
            .is_empty()
    );

    let cancel = AtomicBool::new(false);
    let mut steps = Vec::new();
    let report = workflow::reembed(&mut store, models(), "tester", &cancel, &mut |p| {
        steps.push(p)
    })
    .unwrap();
    assert_eq!((report.templates, report.cancelled), (1, false));
    assert_eq!(steps.last().unwrap().done, 1);
    let rebuilt = store
        .person_templates(person, &current, &vouch::face::TEMPLATE_SHAPE)
        .unwrap();
    assert_eq!(rebuilt.len(), 1);
    assert_eq!(
        store.person(person).unwrap().templates,
        1,
        "one photo, however many models have read it"
    );
    // The crop is the chip the enrollment embedded, stored losslessly.
    let drift = euclidean_distance(&rebuilt[0].embedding, &sample.template.embedding).unwrap();
    assert!(drift < 1e-3, "re-embedded template moved by {drift}");

    let again = workflow::reembed(&mut store, models(), "tester", &cancel, &mut |_| {}).unwrap();
    assert_eq!(again.templates, 0, "a second run has nothing left to do");
    assert!(store.audit_verify().unwrap().intact);
}

#[test]
fn attendance_export_import_and_backup_restore() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    stdout_of(
        vouch_on(&db, "tester")
            .args(["enroll", "--name", "Eileen Collins", "--id", "E100"])
            .arg(data("astronaut.png")),
    );
    stdout_of(
        vouch_on(&db, "tester")
            .arg("checkin")
            .arg(data("astronaut_mirrored.jpg")),
    );

    let csv_path = dir.path().join("attendance.csv");
    stdout_of(
        vouch_on(&db, "tester")
            .args(["export", "attendance", "--out"])
            .arg(&csv_path),
    );
    let csv_text = std::fs::read_to_string(&csv_path).unwrap();
    assert!(
        csv_text.starts_with("at,kind,score,external_id,name\n"),
        "{csv_text}"
    );
    assert!(csv_text.contains(",in,") && csv_text.contains("E100,Eileen Collins"));
    let json: serde_json::Value = serde_json::from_str(&stdout_of(vouch_on(&db, "tester").args([
        "export",
        "attendance",
        "--format",
        "json",
    ])))
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);

    // Importing our own export changes nothing; an event from another kiosk is added.
    assert!(
        stdout_of(
            vouch_on(&db, "tester")
                .args(["import", "attendance"])
                .arg(&csv_path)
        )
        .contains("0 events added, 1 already present")
    );
    let other_kiosk = dir.path().join("other.csv");
    std::fs::write(
        &other_kiosk,
        "at,kind,score,external_id,name\n2026-01-05T17:30:00Z,out,0.71,E100,Eileen Collins\n",
    )
    .unwrap();
    stdout_of(
        vouch_on(&db, "tester")
            .args(["import", "attendance"])
            .arg(&other_kiosk),
    );
    // A bad row anywhere leaves the whole file unimported.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "at,kind,score,external_id,name\n2026-01-06T08:00:00Z,in,0.8,E100,Eileen\n2026-01-06T09:00:00Z,lunch,0.8,E100,Eileen\n",
    )
    .unwrap();
    assert!(
        fail(
            vouch_on(&db, "tester")
                .args(["import", "attendance"])
                .arg(&bad)
        )
        .contains("lunch")
    );
    let events: serde_json::Value =
        serde_json::from_str(&stdout_of(vouch_on(&db, "tester").args([
            "export",
            "attendance",
            "--format",
            "json",
        ])))
        .unwrap();
    assert_eq!(events.as_array().unwrap().len(), 2);

    let backup = dir.path().join("backup.db");
    stdout_of(
        vouch_on(&db, "tester")
            .args(["export", "backup"])
            .arg(&backup),
    );
    stdout_of(vouch_on(&db, "tester").args(["people", "delete", "E100", "--yes"]));
    // A file that is not a Vouch database is refused and the store is untouched.
    let refused = fail(
        vouch_on(&db, "tester")
            .args(["import", "backup", "--yes"])
            .arg(data("not_an_image.png")),
    );
    assert!(refused.contains("not a Vouch database"), "{refused}");
    assert!(
        fail(
            vouch_on(&db, "tester")
                .args(["import", "backup"])
                .arg(&backup)
        )
        .contains("--yes")
    );
    stdout_of(
        vouch_on(&db, "tester")
            .args(["import", "backup", "--yes"])
            .arg(&backup),
    );
    assert!(stdout_of(vouch_on(&db, "tester").args(["people", "list"])).contains("E100"));
    assert!(stdout_of(vouch_on(&db, "tester").args(["audit", "verify"])).contains("intact"));
}

/// ORL as a batch-enrollment manifest: 3 shots for each of the 40 people.
fn orl_manifest(dir: &Path, test: &str) -> Option<std::path::PathBuf> {
    let orl = shared("data/faces/orl", test)?;
    let mut text = String::from("id,name,image\n");
    for subject in 1..=40 {
        for shot in 1..=3 {
            text.push_str(&format!(
                "S{subject:02},Subject {subject},{}\n",
                orl.join(format!("s{subject}/{shot}.pgm")).display()
            ));
        }
    }
    let path = dir.join("manifest.csv");
    std::fs::write(&path, text).unwrap();
    Some(path)
}

/// Every person present has exactly the templates their audit row says were enrolled.
fn assert_everyone_whole(db: &Path) -> usize {
    let store = Store::open(db).unwrap();
    let people = store.people(None).unwrap();
    let sql = rusqlite::Connection::open(db).unwrap();
    let mut statement = sql
        .prepare("SELECT detail FROM audit WHERE action = 'enroll'")
        .unwrap();
    let audited: Vec<serde_json::Value> = statement
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .map(|detail| serde_json::from_str(&detail.unwrap()).unwrap())
        .collect();
    assert_eq!(audited.len(), people.len());
    for person in &people {
        let row = audited
            .iter()
            .find(|a| a["external_id"] == person.external_id.as_str())
            .unwrap();
        assert!(person.templates > 0);
        assert_eq!(row["templates"], person.templates as u64, "{person:?}");
    }
    assert!(store.audit_verify().unwrap().intact);
    people.len()
}

#[test]
fn a_batch_enrollment_killed_midway_leaves_everyone_whole_or_absent() {
    let dir = tempfile::tempdir().unwrap();
    let Some(manifest) = orl_manifest(dir.path(), "batch_enrollment_kill") else {
        return;
    };
    let db = dir.path().join("vouch.db");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vouch"))
        .args(["--device", "cpu", "--db"])
        .arg(&db)
        .arg("enroll-batch")
        .arg(&manifest)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let enrolled = db.exists()
            && Store::open(&db)
                .and_then(|s| s.people(None))
                .is_ok_and(|p| p.len() >= 3);
        if enrolled || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no chance to tidy up
    child.wait().unwrap();
    let present = assert_everyone_whole(&db);
    assert!(
        (3..40).contains(&present),
        "killed with {present} of 40 enrolled"
    );

    // Running the batch again enrolls the rest and reports the ones already there.
    let rerun = vouch_on(&db, "tester")
        .args(["enroll-batch", "--json"])
        .arg(&manifest)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&rerun.stdout).unwrap();
    let failed = report["failed"].as_array().unwrap();
    let already = failed
        .iter()
        .filter(|f| f["reason"].as_str().unwrap().contains("already exists"))
        .count();
    assert_eq!(already, present, "{report}");
    let enrolled = report["enrolled"].as_array().unwrap().len();
    assert_eq!(enrolled + failed.len(), 40);
    assert_eq!(assert_everyone_whole(&db), present + enrolled);
}

#[test]
fn a_cancelled_batch_enrollment_stops_between_people() {
    let dir = tempfile::tempdir().unwrap();
    let Some(manifest) = orl_manifest(dir.path(), "batch_enrollment_cancel") else {
        return;
    };
    let requests = workflow::read_manifest(&manifest).unwrap();
    assert_eq!(requests.len(), 40);
    assert_eq!(
        requests[0],
        EnrollRequest {
            name: "Subject 1".into(),
            external_id: "S01".into(),
            images: requests[0].images.clone(),
        }
    );
    assert_eq!(requests[0].images.len(), 3);
    let db = dir.path().join("vouch.db");
    let mut store = Store::open(&db).unwrap();
    let cancel = AtomicBool::new(false);
    let report = workflow::enroll_batch(
        models(),
        &mut store,
        &requests,
        false,
        "tester",
        &cancel,
        &mut |p| {
            if p.done == 2 {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        },
    )
    .unwrap();
    assert_eq!(report.enrolled.len() + report.failed.len(), 3);
    assert_eq!(report.not_started, 37);
    drop(store);
    assert_eq!(assert_everyone_whole(&db), report.enrolled.len());
}

/// The audit details of every row with `action`, oldest first.
fn audited(db: &Path, action: &str) -> Vec<serde_json::Value> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut statement = conn
        .prepare("SELECT detail FROM audit WHERE action = ?1 ORDER BY id")
        .unwrap();
    statement
        .query_map([action], |row| row.get::<_, String>(0))
        .unwrap()
        .map(|detail| serde_json::from_str(&detail.unwrap()).unwrap())
        .collect()
}

#[test]
fn a_camera_punch_keeps_its_liveness_and_repeated_attacks_alert_the_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let mut store = Store::open(&db).unwrap();
    let mut gallery = vouch::gallery::Gallery::new(vouch::face::recognition::EMBEDDING_DIM);
    let request = vouch::workflow::EnrollRequest {
        name: "Eileen Collins".into(),
        external_id: "E100".into(),
        images: vec![data("astronaut.png")],
    };
    let enrolled =
        vouch::workflow::enroll_face(models(), &mut store, &mut gallery, &request, false, "clerk")
            .unwrap();
    let (face, _) = models()
        .main_face(&load_rgb(&data("astronaut_640x480.jpg")).unwrap(), "frame")
        .unwrap();
    let window = chrono::Duration::minutes(10);
    let punched = vouch::workflow::checkin(
        &mut store,
        &gallery,
        &face.embedding,
        Some(0.93),
        window,
        "kiosk",
    )
    .unwrap();
    assert!(matches!(
        punched.punch,
        vouch::store::Punch::Recorded { .. }
    ));
    let punches = audited(&db, "attendance");
    assert!((punches[0]["liveness"].as_f64().unwrap() - 0.93).abs() < 1e-6);
    // A liveness that is not a probability is refused, never written.
    assert!(
        store
            .punch(enrolled.person_id, 0.9, Some(f32::NAN), window, "kiosk")
            .is_err()
    );

    let mut monitor = vouch::kiosk::AttackMonitor::default();
    let alerts: Vec<bool> = (0..3)
        .map(|_| {
            vouch::workflow::record_attack(
                &mut store,
                &mut monitor,
                enrolled.person_id,
                0.04,
                "kiosk",
            )
            .unwrap()
        })
        .collect();
    assert_eq!(alerts, [false, false, true]);
    assert_eq!(audited(&db, "presentation_attack").len(), 3);
    assert_eq!(audited(&db, "alert").len(), 1);
    assert!(store.audit_verify().unwrap().intact);
}

#[test]
fn hours_per_day_and_per_person_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let mut store = Store::open(&db).unwrap();
    let mut gallery = vouch::gallery::Gallery::new(vouch::face::recognition::EMBEDDING_DIM);
    let request = EnrollRequest {
        name: "Eileen Collins".into(),
        external_id: "E100".into(),
        images: vec![data("astronaut.png")],
    };
    let enrolled =
        workflow::enroll_face(models(), &mut store, &mut gallery, &request, false, "clerk")
            .unwrap();
    // In, then out: no repeat window, so the second look is a second punch.
    for _ in 0..2 {
        store
            .punch(
                enrolled.person_id,
                0.9,
                Some(0.9),
                chrono::Duration::zero(),
                "kiosk",
            )
            .unwrap();
    }
    drop(store);
    let today = chrono::Local::now().date_naive().to_string();
    let days = stdout_of(
        vouch_on(&db, "manager").args(["export", "hours", "--from", &today, "--to", &today]),
    );
    let mut lines = days.lines();
    assert_eq!(
        lines.next(),
        Some(
            "date,external_id,name,first_in,last_out,worked_minutes,punches,corrected,missing_check_out"
        )
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&format!("{today},E100,Eileen Collins,")),
        "{row}"
    );
    assert!(row.ends_with(",0,2,0,false"), "{row}");
    let people = stdout_of(vouch_on(&db, "manager").args([
        "export",
        "hours",
        "--from",
        &today,
        "--to",
        &today,
        "--per-person",
        "--json",
    ]));
    let people: serde_json::Value = serde_json::from_str(&people).unwrap();
    assert_eq!(people[0]["days_present"], 1);
    assert_eq!(people[0]["days_missing_check_out"], 0);
    let backwards = vouch_on(&db, "manager")
        .args(["export", "hours", "--from", &today, "--to", "2000-01-01"])
        .output()
        .unwrap();
    assert!(!backwards.status.success());
}
