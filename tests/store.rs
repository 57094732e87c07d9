//! What only the SQLite file has, against its own users: crafted templates and backups
//! restored from a file, a cut log on a file stripped of its anchor, deleted people that
//! linger in the file's pages, biometrics at rest and the files' modes, foreign and
//! corrupt files, read-only copies, files from before the seals, processes opening a new
//! file at once. The promises both engines keep are tested on both in
//! `store_backends.rs`.

mod common;

use std::path::{Path, PathBuf};

use vouch::face::TEMPLATE_SHAPE as SHAPE;
use vouch::gallery::Gallery;
use vouch::matching::FACE_BANDS;
use vouch::store::{Store, StoreError};
use vouch::types::Modality;

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
