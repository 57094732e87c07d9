//! Issue 15's attacks as a hostile tester makes them, with only the `vouch` binary and a
//! SQLite shell: every command refuses a tampered store with the row named (never a
//! score, never a panic), read commands work on a read-only copy, a busy store says so,
//! two enrollments of one face race and only one wins, exports defuse formulas, and a
//! photograph is not taken for a signature.

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::{data, json_of, models, stdout_of, vouch_on};
use vouch::gallery::Gallery;
use vouch::store::{Keys, Store};
use vouch::workflow::{self, EnrollRequest};

fn vouch(db: &Path) -> Command {
    vouch_on(db, "tester")
}

/// The command fails cleanly (exit 1, not a panic's 101) and says `needle`.
fn refused(command: &mut Command, needle: &str) -> String {
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout {stdout} stderr {stderr}"
    );
    assert!(stderr.contains(needle), "{stderr}");
    assert!(!stdout.contains("accept"), "{stdout}");
    stderr
}

fn enroll_astronaut(db: &Path) {
    json_of(
        vouch(db)
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
}

#[test]
fn an_emptied_template_stops_every_command_with_the_row_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    enroll_astronaut(&db);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("UPDATE templates SET embedding = X''", [])
        .unwrap();
    let photo = data("astronaut_mirrored.jpg");
    refused(
        vouch(&db).args(["verify", "--id", "E100"]).arg(&photo),
        "templates row 1",
    );
    refused(vouch(&db).arg("identify").arg(&photo), "templates row 1");
    refused(vouch(&db).arg("checkin").arg(&photo), "templates row 1");
    refused(
        vouch(&db)
            .args(["enroll", "--name", "Someone", "--id", "E200"])
            .arg(&photo),
        "templates row 1",
    );
    let audit = vouch(&db).args(["audit", "verify"]).output().unwrap();
    assert_eq!(audit.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&audit.stdout).contains("templates row 1 was changed"));
}

#[test]
fn two_enrollments_of_one_face_at_once_enroll_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    Store::open(&db).unwrap();
    // Both desks load their gallery before either enrolls: neither sees the other's face
    // in memory; only the check inside the write transaction can.
    let prepared: Vec<(Store, Gallery)> = (0..2)
        .map(|_| {
            let store = Store::open(&db).unwrap();
            let gallery = Gallery::of_faces(&store, &models().model_id()).unwrap();
            (store, gallery)
        })
        .collect();
    let barrier = std::sync::Barrier::new(2);
    let results: Vec<vouch::Result<_>> = std::thread::scope(|scope| {
        let handles: Vec<_> = prepared
            .into_iter()
            .zip([("E1", "astronaut.png"), ("E2", "astronaut_mirrored.jpg")])
            .map(|((mut store, mut gallery), (id, photo))| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    workflow::enroll_face(
                        models(),
                        &mut store,
                        &mut gallery,
                        &EnrollRequest {
                            name: format!("Person {id}"),
                            external_id: id.into(),
                            images: vec![data(photo)],
                        },
                        false,
                        "desk",
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let enrolled = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(enrolled, 1, "{results:?}");
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(vouch::Error::MatchesAnother { .. }))),
        "{results:?}"
    );
    assert_eq!(Store::open(&db).unwrap().people(None).unwrap().len(), 1);
}

#[test]
fn read_commands_work_on_a_read_only_copy_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    enroll_astronaut(&db);
    let evidence = dir.path().join("evidence");
    std::fs::create_dir(&evidence).unwrap();
    let copy = evidence.join("vouch.db");
    stdout_of(vouch(&db).args(["export", "backup"]).arg(&copy));
    std::fs::copy(Keys::path_for(&db), Keys::path_for(&copy)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o444)).unwrap();
        std::fs::set_permissions(&evidence, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let before = std::fs::read(&copy).unwrap();
    assert!(stdout_of(vouch(&copy).args(["people", "list"])).contains("E100"));
    assert!(stdout_of(vouch(&copy).args(["audit", "verify"])).contains("intact"));
    assert!(stdout_of(vouch(&copy).args(["settings", "show"])).contains("face"));
    stdout_of(vouch(&copy).args(["export", "attendance"]));
    stdout_of(
        vouch(&copy)
            .args(["identify", "--json"])
            .arg(data("astronaut_mirrored.jpg")),
    );
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        before,
        "a read command wrote to the file"
    );
    let files = std::fs::read_dir(&evidence).unwrap().count();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&evidence, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert_eq!(
        files, 2,
        "only the copy and its key: nothing was created beside them"
    );
}

#[test]
fn a_busy_database_says_so_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    Store::open(&db).unwrap();
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let stderr = refused(
        vouch(&db).args([
            "settings",
            "set-bands",
            "--modality",
            "face",
            "--low",
            "0.4",
            "--high",
            "0.5",
        ]),
        "busy",
    );
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    holder.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn exports_defuse_formulas_and_import_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    json_of(
        vouch(&db)
            .args([
                "enroll",
                "--name",
                "=cmd|' /C calc'!A0",
                "--id",
                "+1+2",
                "--json",
            ])
            .arg(data("astronaut.png")),
    );
    json_of(
        vouch(&db)
            .args(["checkin", "--json"])
            .arg(data("astronaut_mirrored.jpg")),
    );
    let csv = dir.path().join("punches.csv");
    stdout_of(vouch(&db).args(["export", "attendance", "--out"]).arg(&csv));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.contains(",'+1+2,'=cmd"), "{text}");
    let again = stdout_of(vouch(&db).args(["import", "attendance"]).arg(&csv));
    assert!(
        again.contains("0 events added, 1 already present"),
        "{again}"
    );
    refused(
        vouch(&db)
            .args(["enroll", "--name", "Ada\nLovelace", "--id", "E7"])
            .arg(data("astronaut.png")),
        "control character",
    );
    refused(
        vouch(&db)
            .args(["enroll", "--name", "Ada\u{1b}[31m", "--id", "E8"])
            .arg(data("astronaut.png")),
        "control character",
    );
}

#[test]
fn refused_files_are_each_named_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let stderr = refused(
        vouch(&db)
            .args(["enroll", "--name", "Nobody", "--id", "E1"])
            .arg(data("coffee.png"))
            .arg(data("two_faces.png")),
        "coffee.png (no face found)",
    );
    assert!(stderr.contains("two_faces.png (2 faces"), "{stderr}");
    let stderr = refused(
        vouch(&db)
            .args([
                "signature",
                "enroll",
                "--name",
                "A. Holder",
                "--id",
                "ACC-1",
            ])
            .arg(data("astronaut.png")),
        "not a scan of a signature",
    );
    assert!(stderr.contains("astronaut.png"), "{stderr}");
}
