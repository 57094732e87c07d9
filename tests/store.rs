//! The SQLite store against its own users: transactions, model binding, and every attack
//! of issue 15's table made with a SQLite shell (a row each): crafted templates, cut and
//! edited audit logs, edited, swapped and inserted rows in every table, crafted backups,
//! deleted people that linger, biometrics at rest, foreign files.

mod common;

use std::path::{Path, PathBuf};

use vouch::face::TEMPLATE_SHAPE as SHAPE;
use vouch::gallery::Gallery;
use vouch::matching::FACE_BANDS;
use vouch::store::{AttendanceRecord, NewTemplate, Store, StoreError, exchange};
use vouch::types::{Decision, Modality, PunchKind};

use common::face_template as template;

/// A database file with people E1..En enrolled (one template each, model "m").
fn enrolled(dir: &Path, name: &str, people: usize) -> PathBuf {
    let path = dir.join(name);
    let mut store = Store::open(&path).unwrap();
    for i in 1..=people {
        common::enroll_face(&mut store, i, i as f32 / 10.0);
    }
    path
}

/// What an attacker with a SQLite shell does: drop the audit triggers, run SQL.
fn tamper(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;",
    )
    .unwrap();
    conn.execute_batch(sql).unwrap();
}

fn problems(path: &Path) -> Vec<String> {
    let report = Store::open(path).unwrap().audit_verify().unwrap();
    assert_eq!(report.intact, report.problems.is_empty());
    report.problems
}

fn assert_found(path: &Path, needle: &str) {
    let found = problems(path);
    assert!(
        found.iter().any(|p| p.contains(needle)),
        "no problem mentions {needle:?}: {found:?}"
    );
}

/// The database file, its write-ahead log and any other given files.
fn file_bytes(paths: &[&Path]) -> Vec<u8> {
    let mut all = Vec::new();
    for path in paths {
        for candidate in [
            path.to_path_buf(),
            PathBuf::from(format!("{}-wal", path.display())),
        ] {
            if let Ok(bytes) = std::fs::read(&candidate) {
                all.extend(bytes);
            }
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn enrollment_is_bound_to_its_model_and_deletion_is_audited() {
    let mut store = Store::open_in_memory().unwrap();
    let ada = store
        .enroll(
            "Ada",
            "E1",
            Modality::Face,
            "model-a",
            &[template(0.1), template(0.2)],
            "tester",
        )
        .unwrap();
    store
        .enroll(
            "Bob",
            "E2",
            Modality::Face,
            "model-b",
            &[template(0.5)],
            "tester",
        )
        .unwrap();
    assert_eq!(
        store
            .templates(Modality::Face, "model-a", &SHAPE)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store
            .templates(Modality::Face, "model-b", &SHAPE)
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .templates(Modality::Signature, "model-a", &SHAPE)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .person_templates(ada, "model-a", &SHAPE)
            .unwrap()
            .len(),
        2
    );
    assert!(matches!(
        store.enroll(
            "Ada again",
            "E1",
            Modality::Face,
            "model-a",
            &[template(0.3)],
            "tester"
        ),
        Err(StoreError::Duplicate { .. })
    ));
    store
        .record_decision(
            ada,
            Modality::Face,
            0.8,
            FACE_BANDS,
            Decision::Accept,
            "clerk",
        )
        .unwrap();
    store.delete_person(ada, "tester").unwrap();
    assert_eq!(store.people(None).unwrap().len(), 1);
    assert!(
        store
            .templates(Modality::Face, "model-a", &SHAPE)
            .unwrap()
            .is_empty()
    );
    let report = store.audit_verify().unwrap();
    assert!(report.intact, "{report:?}");
    assert_eq!(report.rows, 4); // two enrollments, a verification, a deletion
}

/// Table row 1: an empty embedding blob, from a crafted backup or a SQLite shell.
#[test]
fn an_empty_embedding_is_refused_on_restore_and_on_every_read() {
    let dir = tempfile::tempdir().unwrap();
    let live = enrolled(dir.path(), "live.db", 2);
    let crafted = dir.path().join("crafted.db");
    Store::open(&live).unwrap().backup_to(&crafted).unwrap();
    tamper(
        &crafted,
        "UPDATE templates SET embedding = X'' WHERE person_id = 1",
    );
    let refused = Store::open(&live)
        .unwrap()
        .restore_from(&crafted, "tester")
        .unwrap_err();
    assert!(matches!(refused, StoreError::Tampered { .. }), "{refused}");
    assert_eq!(Store::open(&live).unwrap().people(None).unwrap().len(), 2);

    tamper(
        &live,
        "UPDATE templates SET embedding = X'' WHERE person_id = 1",
    );
    let store = Store::open(&live).unwrap();
    let read = store.templates(Modality::Face, "m", &SHAPE).unwrap_err();
    assert!(
        matches!(read, StoreError::BadRow { table: "templates", ref row, .. } if row == "1"),
        "{read}"
    );
    assert!(
        Gallery::of_faces(&store, "m").is_err(),
        "identify and check-in load this"
    );
    assert_found(&live, "templates row 1 was changed outside Vouch");
}

/// Table row 2: a template of another size is never compared.
#[test]
fn a_64_value_embedding_is_refused_not_compared() {
    let mut store = Store::open_in_memory().unwrap();
    let short = NewTemplate {
        embedding: vec![0.1; 64],
        ..template(0.1)
    };
    store
        .enroll("Short", "E1", Modality::Face, "m", &[short], "tester")
        .unwrap();
    let refused = store.templates(Modality::Face, "m", &SHAPE).unwrap_err();
    assert!(refused.to_string().contains("64 values"), "{refused}");
    assert!(vouch::matching::euclidean_distance(&[0.1; 64], &[0.1; 128]).is_err());
    let mut gallery = Gallery::new(128);
    assert!(gallery.add_person(1, [[0.1f32; 64].as_slice()]).is_err());
}

/// Table row 3: rows cut from the end of the audit log, up to all of them.
#[test]
fn cutting_the_audit_logs_tail_is_found() {
    let dir = tempfile::tempdir().unwrap();
    for (cut, name) in [(1, "one"), (3, "three"), (4, "all")] {
        let path = enrolled(dir.path(), &format!("{name}.db"), 4);
        tamper(&path, &format!("DELETE FROM audit WHERE id > 4 - {cut}"));
        assert_found(&path, "rows were cut from its end");
    }
    // The log and its anchor gone: the file is refused, never sealed anew.
    let path = enrolled(dir.path(), "stripped.db", 2);
    tamper(&path, "DELETE FROM audit; DELETE FROM anchor;");
    let refused = Store::open(&path).err().expect("refused");
    assert!(matches!(refused, StoreError::Tampered { .. }), "{refused}");
    let report = Store::open_read_only(&path)
        .unwrap()
        .audit_verify()
        .unwrap();
    assert!(!report.intact, "{report:?}");
}

/// Table row 4: edits, swaps, inserts and deletions in every table that decides.
#[test]
fn edited_swapped_inserted_and_deleted_rows_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let attacks = [
        (
            "swap",
            "UPDATE templates SET person_id = 3 - person_id",
            "templates row 1 was changed",
        ),
        (
            "rename",
            "UPDATE people SET name = 'Mallory' WHERE id = 1",
            "people row 1 was changed",
        ),
        (
            "reid",
            "UPDATE people SET external_id = 'E2x' WHERE id = 2",
            "people row 2: its seal does not match",
        ),
        (
            "punch",
            "INSERT INTO attendance (person_id, kind, at, score) VALUES (1, 'in', '2026-11-30T08:00:00.000Z', 0.9)",
            "attendance row 2 was added",
        ),
        (
            "unpunch",
            "DELETE FROM attendance",
            "attendance row 1 was deleted",
        ),
        (
            "decision",
            "UPDATE decisions SET decision = 'accept', score = 0.99",
            "decisions row 1 was changed",
        ),
        (
            "bands",
            "UPDATE settings SET value = '{\"low\":0.0,\"high\":0.0}' WHERE key = 'bands.face'",
            "settings row bands.face",
        ),
        (
            "gone",
            "DELETE FROM people WHERE id = 2",
            "people row 2 was deleted",
        ),
    ];
    for (name, sql, found) in attacks {
        let path = enrolled(dir.path(), &format!("{name}.db"), 2);
        {
            let mut store = Store::open(&path).unwrap();
            store
                .punch(1, 0.8, None, chrono::Duration::minutes(10), "kiosk")
                .unwrap();
            store
                .record_decision(
                    2,
                    Modality::Face,
                    0.2,
                    FACE_BANDS,
                    Decision::Reject,
                    "clerk",
                )
                .unwrap();
            common::set_bands(&mut store, Modality::Face, FACE_BANDS).unwrap();
        }
        tamper(&path, sql);
        assert_found(&path, found);
    }
    // Reads refuse what they depend on: swapped templates do not open, edited bands and
    // people break their seals.
    let store = Store::open(&dir.path().join("swap.db")).unwrap();
    assert!(store.templates(Modality::Face, "m", &SHAPE).is_err());
    let store = Store::open(&dir.path().join("bands.db")).unwrap();
    assert!(matches!(
        store.bands(Modality::Face),
        Err(StoreError::BadRow {
            table: "settings",
            ..
        })
    ));
    let store = Store::open(&dir.path().join("reid.db")).unwrap();
    assert!(store.person_by_external_id("E2x", Modality::Face).is_err());
}

/// Table row 5: a backup that carries its own triggers (or views, or indexes).
#[test]
fn a_backup_with_its_own_schema_objects_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let live = enrolled(dir.path(), "live.db", 2);
    for (name, extra) in [
        (
            "trigger",
            "CREATE TRIGGER eat_punches AFTER INSERT ON attendance BEGIN DELETE FROM attendance; END;",
        ),
        ("unguard", "DROP TRIGGER audit_no_delete;"),
        ("view", "CREATE VIEW everyone AS SELECT * FROM people;"),
        ("index", "CREATE INDEX people_by_name ON people (name);"),
    ] {
        let crafted = dir.path().join(format!("{name}.db"));
        Store::open(&live).unwrap().backup_to(&crafted).unwrap();
        rusqlite::Connection::open(&crafted)
            .unwrap()
            .execute_batch(extra)
            .unwrap();
        let before = std::fs::read(&crafted).unwrap();
        let refused = Store::open(&live)
            .unwrap()
            .restore_from(&crafted, "tester")
            .unwrap_err();
        assert!(
            refused.to_string().contains("not exactly what Vouch makes"),
            "{name}: {refused}"
        );
        assert_eq!(
            std::fs::read(&crafted).unwrap(),
            before,
            "{name}: the source was modified"
        );
    }
    // A true backup restores, and the restored database audits intact.
    let backup = dir.path().join("true.db");
    let mut store = Store::open(&live).unwrap();
    store.backup_to(&backup).unwrap();
    store.restore_from(&backup, "tester").unwrap();
    assert!(store.audit_verify().unwrap().intact);
}

/// Table row 6: a deleted person leaves nothing readable in the file, its log, or a
/// backup taken after.
#[test]
fn a_deleted_person_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = enrolled(dir.path(), "vouch.db", 2);
    let sealed: Vec<Vec<u8>> = {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mut statement = conn
            .prepare("SELECT embedding FROM templates WHERE person_id = 1 UNION ALL SELECT crop FROM templates WHERE person_id = 1")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(sealed.len(), 2);
    let mut store = Store::open(&path).unwrap();
    store.delete_person(1, "tester").unwrap();
    let backup = dir.path().join("after.db");
    store.backup_to(&backup).unwrap();
    drop(store);
    let bytes = file_bytes(&[&path, &backup]);
    for blob in &sealed {
        assert!(
            !contains(&bytes, &blob[..32]),
            "a deleted blob is still in the files"
        );
    }
    let audit = problems(&path);
    assert!(audit.is_empty(), "{audit:?}");
}

/// Table row 7: biometrics never rest in the clear; the files are private.
#[test]
fn biometrics_are_encrypted_at_rest_and_the_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("site");
    let path = enrolled(&folder, "vouch.db", 1);
    let backup = folder.join("backup.db");
    Store::open(&path).unwrap().backup_to(&backup).unwrap();
    let known = template(0.1);
    let embedding_bytes: Vec<u8> = known
        .embedding
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let bytes = file_bytes(&[&path, &backup]);
    assert!(
        !contains(&bytes, &embedding_bytes[..64]),
        "an embedding rests in the clear"
    );
    assert!(
        !contains(&bytes, b"CROP-BYTES-OF"),
        "a crop rests in the clear"
    );
    // Yet the store reads them back whole.
    let store = Store::open(&path).unwrap();
    let read = store.templates(Modality::Face, "m", &SHAPE).unwrap();
    assert_eq!(read[0].embedding, known.embedding);
    assert_eq!(store.first_crop(1).unwrap(), known.crop);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&folder), 0o700);
        for file in [&path, &backup, &vouch::store::Keys::path_for(&path)] {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
    }
}

/// Table row 9 (store side): names and ids that would corrupt a screen or a terminal.
#[test]
fn names_with_controls_are_refused() {
    let mut store = Store::open_in_memory().unwrap();
    for (name, id) in [
        ("Ada\nLovelace", "E1"),
        ("\u{1b}[2J\u{1b}[31mAda", "E2"),
        ("Ada", "E3\r"),
        ("Ada\u{202E}", "E4"),
    ] {
        let refused = store
            .enroll(name, id, Modality::Face, "m", &[template(0.1)], "t")
            .unwrap_err();
        assert!(matches!(refused, StoreError::BadText { .. }), "{refused}");
    }
    assert!(store.people(None).unwrap().is_empty());
    store
        .enroll(
            "=cmd|' /C calc'!A0",
            "+1+2",
            Modality::Face,
            "m",
            &[template(0.1)],
            "t",
        )
        .unwrap();
    store
        .punch(1, 0.9, None, chrono::Duration::minutes(10), "kiosk")
        .unwrap();
    let csv = exchange::write(
        &store.attendance(None, None).unwrap(),
        exchange::Format::Csv,
    )
    .unwrap();
    let text = String::from_utf8(csv).unwrap();
    assert!(text.contains(",'+1+2,'=cmd"), "{text}");
}

/// Table row 10: imported events are checked; every export imports again.
#[test]
fn impossible_events_are_refused_and_exports_always_reimport() {
    let mut store = Store::open_in_memory().unwrap();
    store
        .enroll("Ada", "E1", Modality::Face, "m", &[template(0.1)], "t")
        .unwrap();
    store
        .enroll("Bob", "E2", Modality::Face, "m", &[template(0.5)], "t")
        .unwrap();
    let event = |score: f32, at: &str| AttendanceRecord {
        at: at.into(),
        kind: PunchKind::In,
        score,
        external_id: Some("E1".into()),
        name: None,
        correction: None,
    };
    let overflowing = exchange::read(
        "at,kind,score,external_id,name\n2026-11-30T08:00:00Z,in,1e39,E1,\n",
        Path::new("sheet.csv"),
    )
    .unwrap();
    for bad in [
        overflowing[0].clone(),
        event(f32::INFINITY, "2026-11-30T08:00:00Z"),
        event(-5.0, "2026-11-30T08:00:00Z"),
        event(1.5, "2026-11-30T08:00:00Z"),
        event(0.9, "9999-01-01T00:00:00Z"),
    ] {
        assert!(
            store
                .import_attendance(std::slice::from_ref(&bad), "t")
                .is_err(),
            "{bad:?}"
        );
    }
    assert!(store.attendance(None, None).unwrap().is_empty());
    store
        .punch(2, 0.9, None, chrono::Duration::minutes(10), "kiosk")
        .unwrap();
    store.delete_person(2, "t").unwrap();
    store
        .punch(1, 0.8, None, chrono::Duration::minutes(10), "kiosk")
        .unwrap();
    for format in [exchange::Format::Csv, exchange::Format::Json] {
        let exported = exchange::write(&store.attendance(None, None).unwrap(), format).unwrap();
        let records =
            exchange::read(std::str::from_utf8(&exported).unwrap(), Path::new("x")).unwrap();
        assert_eq!(records.len(), 2);
        assert!(
            records.iter().any(|r| r.external_id.is_none()),
            "the deleted person's punch"
        );
        let mut other = Store::open_in_memory().unwrap();
        other
            .enroll("Ada", "E1", Modality::Face, "m", &[template(0.1)], "t")
            .unwrap();
        assert_eq!(other.import_attendance(&records, "t").unwrap(), (2, 0));
        assert_eq!(other.import_attendance(&records, "t").unwrap(), (0, 2));
    }
}

/// Table row 11 (store side): reading never writes, even on a read-only copy.
#[test]
fn reading_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = enrolled(dir.path(), "vouch.db", 2);
    let copy_dir = dir.path().join("evidence");
    std::fs::create_dir(&copy_dir).unwrap();
    let copy = copy_dir.join("vouch.db");
    Store::open(&path).unwrap().backup_to(&copy).unwrap();
    std::fs::copy(
        vouch::store::Keys::path_for(&path),
        vouch::store::Keys::path_for(&copy),
    )
    .unwrap();
    let before = std::fs::read(&copy).unwrap();
    {
        let store = Store::open_read_only(&copy).unwrap();
        assert_eq!(store.people(None).unwrap().len(), 2);
        assert!(store.audit_verify().unwrap().intact);
        assert!(matches!(
            common::set_bands(
                &mut Store::open_read_only(&copy).unwrap(),
                Modality::Face,
                FACE_BANDS
            ),
            Err(StoreError::ReadOnly { .. })
        ));
    }
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    let files: Vec<_> = std::fs::read_dir(&copy_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        files.len(),
        2,
        "no log or shared-memory file was made: {files:?}"
    );
}

/// Table row 12: another application's database, even without a table, is refused and
/// left as it was.
#[test]
fn foreign_and_corrupt_files_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.db");
    std::fs::write(
        &text,
        "not a database at all, just some text that is long enough".repeat(20),
    )
    .unwrap();
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE invoices (n INTEGER);")
        .unwrap();
    let tableless = dir.path().join("tableless.db");
    rusqlite::Connection::open(&tableless)
        .unwrap()
        .execute_batch("PRAGMA application_id = 1234; PRAGMA user_version = 7;")
        .unwrap();
    for path in [&text, &other, &tableless] {
        let before = std::fs::read(path).unwrap();
        for opened in [Store::open(path).err(), Store::open_read_only(path).err()] {
            assert!(
                matches!(opened, Some(StoreError::Foreign { .. })),
                "{}: {opened:?}",
                path.display()
            );
        }
        assert_eq!(
            std::fs::read(path).unwrap(),
            before,
            "{} was modified",
            path.display()
        );
        assert!(
            !vouch::store::Keys::path_for(path).exists(),
            "no key was made for it"
        );
    }
}

#[test]
fn a_reopened_file_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = enrolled(dir.path(), "vouch.db", 1);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.people(None).unwrap()[0].templates, 1);
    assert!(store.audit_verify().unwrap().intact);
}

#[test]
fn a_key_rotation_reencrypts_everything_and_retires_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = enrolled(dir.path(), "vouch.db", 3);
    let before: Vec<u8> = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT embedding FROM templates WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    let mut store = Store::open(&path).unwrap();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let rotation = store.rotate_keys("tester", &cancel, &mut |_| {}).unwrap();
    assert!(rotation.finished && !rotation.resumed);
    assert_eq!((rotation.key, rotation.templates), (2, 3));
    drop(store);
    let after: Vec<u8> = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT embedding FROM templates WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_ne!(before, after);
    let key_file = std::fs::read_to_string(vouch::store::Keys::path_for(&path)).unwrap();
    assert_eq!(
        key_file.matches("\"secret\"").count(),
        1,
        "the old key is retired"
    );
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.templates(Modality::Face, "m", &SHAPE).unwrap().len(),
        3
    );
    let report = store.audit_verify().unwrap();
    assert!(report.intact, "{report:?}");
}

/// A database written by the Vouch before the seals is brought under them when opened:
/// its biometrics encrypted (and gone from the file in the clear), its rows in the
/// ledger's baseline, its log anchored.
#[test]
fn a_database_from_before_the_seals_is_sealed_on_opening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let known = template(0.3);
    let plain: Vec<u8> = known
        .embedding
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../src/store/schema.sql"))
            .unwrap();
        conn.execute_batch(
            "PRAGMA application_id = 1448039747; PRAGMA user_version = 1;
             INSERT INTO people (id, name, external_id, modality, created_at)
             VALUES (1, 'Ada', 'E1', 'face', '2026-11-01T08:00:00.000Z');
             INSERT INTO settings (key, value) VALUES ('bands.face', '{\"low\":0.4,\"high\":0.5}');",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO templates (id, person_id, model_id, embedding, quality, source_sha256, crop, created_at)
             VALUES (1, 1, 'm', ?1, 0.9, 'x', ?2, '2026-11-01T08:00:00.000Z')",
            rusqlite::params![plain, known.crop],
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.templates(Modality::Face, "m", &SHAPE).unwrap()[0].embedding,
        known.embedding
    );
    assert_eq!(store.bands(Modality::Face).unwrap().high, 0.5);
    let report = store.audit_verify().unwrap();
    assert!(report.intact && report.rows == 1, "{report:?}");
    drop(store);
    let bytes = file_bytes(&[&path]);
    assert!(
        !contains(&bytes, &plain[..64]),
        "the old clear embedding is still in the file"
    );
    assert!(
        !contains(&bytes, b"CROP-BYTES-OF"),
        "the old clear crop is still in the file"
    );
}

#[test]
fn processes_opening_a_new_database_at_once_share_one_key_and_one_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let starting_gun = std::sync::Barrier::new(4);
    std::thread::scope(|scope| {
        let openers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    starting_gun.wait();
                    Store::open(&path).map(drop)
                })
            })
            .collect();
        for opener in openers {
            opener.join().unwrap().unwrap();
        }
    });
    let mut store = Store::open(&path).unwrap();
    store
        .enroll("Ana", "E1", Modality::Face, "m", &[template(0.1)], "tester")
        .unwrap();
    assert!(store.audit_verify().unwrap().intact);
    assert!(Store::open(&path).unwrap().audit_verify().unwrap().intact);
}

/// A forgotten check-out is added by a supervisor as a new punch, never an edit: the
/// audit names who and why, the day report counts it, and what makes no sense is refused.
#[test]
fn a_correction_is_a_new_audited_punch() {
    let dir = tempfile::tempdir().unwrap();
    let path = enrolled(dir.path(), "vouch.db", 1);
    let mut store = Store::open(&path).unwrap();
    let window = chrono::Duration::minutes(2);
    let person = store.people(None).unwrap()[0].id;
    store
        .punch(person, 0.9, Some(0.95), window, "kiosk")
        .unwrap();
    let an_hour_on = chrono::Utc::now() + chrono::Duration::hours(1);
    let earlier = chrono::Utc::now() - chrono::Duration::minutes(1);
    let reason = "forgot to check out; left by the side door";
    // Refused: nobody with that id, no reason, a time in the future.
    assert!(
        store
            .correct_attendance("E9", PunchKind::Out, earlier, reason, "ana")
            .is_err()
    );
    assert!(
        store
            .correct_attendance("E1", PunchKind::Out, earlier, " ", "ana")
            .is_err()
    );
    assert!(
        store
            .correct_attendance("E1", PunchKind::Out, an_hour_on, reason, "ana")
            .is_err()
    );
    let added = store
        .correct_attendance("E1", PunchKind::Out, earlier, reason, "ana")
        .unwrap();
    assert_eq!(added.score, 0.0);
    // The same punch twice is refused.
    assert!(
        store
            .correct_attendance("E1", PunchKind::Out, earlier, reason, "ana")
            .is_err()
    );
    let records = store.attendance(None, None).unwrap();
    assert_eq!(records.len(), 2);
    let correction = records
        .iter()
        .find_map(|r| r.correction.clone())
        .expect("the correction is read back with its reason");
    assert_eq!(
        (correction.by.as_str(), correction.reason.as_str()),
        ("ana", reason)
    );
    assert_eq!(records.iter().filter(|r| r.correction.is_some()).count(), 1);
    let days = vouch::attendance::daily(&records, &chrono::Utc).unwrap();
    assert_eq!(days[0].corrected, 1);
    drop(store);
    assert!(problems(&path).is_empty());
    // A correction written in a SQLite shell has no audit row: found.
    tamper(
        &path,
        "INSERT INTO attendance (person_id, kind, at, score) VALUES (1, 'out', '2026-11-30T17:00:00.000Z', 0)",
    );
    assert!(!problems(&path).is_empty());
}

/// A kiosk PIN is a way in: a hash swapped in a SQLite shell (to a PIN the attacker knows)
/// breaks the setting's seal and is refused, never checked; deleting the person deletes it.
#[test]
fn a_kiosk_pin_edited_in_the_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = enrolled(dir.path(), "vouch.db", 2);
    let mut store = Store::open(&path).unwrap();
    let people = store.people(None).unwrap();
    store.set_pin(people[0].id, "2468", "clerk").unwrap();
    store.set_pin(people[1].id, "1357", "clerk").unwrap();
    assert!(store.check_pin(people[0].id, "2468", "kiosk").unwrap());
    assert!(!store.check_pin(people[0].id, "1357", "kiosk").unwrap());
    drop(store);
    // Person 1 gets person 2's hash and seal: the attacker knows 1357.
    tamper(
        &path,
        &format!(
            "UPDATE settings SET (value, seal) = (SELECT value, seal FROM settings WHERE key = 'pin.person.{}') WHERE key = 'pin.person.{}'",
            people[1].id, people[0].id
        ),
    );
    let mut store = Store::open(&path).unwrap();
    assert!(store.check_pin(people[0].id, "1357", "kiosk").is_err());
    drop(store);
    assert!(!problems(&path).is_empty());

    let other = tempfile::tempdir().unwrap();
    let path = enrolled(other.path(), "vouch.db", 1);
    let mut store = Store::open(&path).unwrap();
    let person = store.people(None).unwrap()[0].id;
    store.set_pin(person, "2468", "clerk").unwrap();
    store.delete_person(person, "clerk").unwrap();
    assert!(!store.has_pin(person).unwrap());
    drop(store);
    assert!(problems(&path).is_empty());
}
