//! The SQLite store: transactions, model binding, the audit chain, refusing foreign files.

mod common;

use std::path::Path;

use vouch::matching::FACE_BANDS;
use vouch::store::{NewTemplate, Store, StoreError};
use vouch::types::{Decision, Modality};

fn template(seed: f32) -> NewTemplate {
    NewTemplate {
        embedding: (0..128).map(|i| seed + i as f32 * 0.001).collect(),
        quality: 0.9,
        source_sha256: format!("{seed}"),
        crop: None,
    }
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
    assert_eq!(store.templates(Modality::Face, "model-a").unwrap().len(), 2);
    assert_eq!(store.templates(Modality::Face, "model-b").unwrap().len(), 1);
    assert!(
        store
            .templates(Modality::Signature, "model-a")
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.person_templates(ada, "model-a").unwrap().len(), 2);
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
            .templates(Modality::Face, "model-a")
            .unwrap()
            .is_empty()
    );
    let report = store.audit_verify().unwrap();
    assert!(report.intact, "{report:?}");
    assert_eq!(report.rows, 4); // two enrollments, a verification, a deletion
}

fn tamper(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();
    conn.execute_batch(sql).unwrap();
}

#[test]
fn the_audit_chain_finds_edited_and_deleted_rows() {
    let dir = tempfile::tempdir().unwrap();
    for (sql, problem) in [
        ("UPDATE audit SET actor = 'mallory' WHERE id = 2", "changed"),
        ("DELETE FROM audit WHERE id = 2", "missing"),
    ] {
        let path = dir.path().join(format!("{}.db", problem));
        {
            let mut store = Store::open(&path).unwrap();
            for (i, id) in ["E1", "E2", "E3"].iter().enumerate() {
                store
                    .enroll(id, id, Modality::Face, "m", &[template(i as f32)], "tester")
                    .unwrap();
            }
            // The triggers refuse edits through SQL, from any client.
            let sql = rusqlite::Connection::open(&path).unwrap();
            assert!(
                sql.execute("UPDATE audit SET actor = 'x' WHERE id = 1", [])
                    .is_err()
            );
            assert!(sql.execute("DELETE FROM audit WHERE id = 3", []).is_err());
        }
        tamper(&path, sql);
        let report = Store::open(&path).unwrap().audit_verify().unwrap();
        assert!(!report.intact);
        assert!(
            report.problem.as_deref().unwrap().contains(problem),
            "{report:?}"
        );
    }
}

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
    for path in [&text, &other] {
        let before = std::fs::read(path).unwrap();
        assert!(
            matches!(Store::open(path), Err(StoreError::Foreign { .. })),
            "{}",
            path.display()
        );
        assert_eq!(
            std::fs::read(path).unwrap(),
            before,
            "{} was modified",
            path.display()
        );
    }
}

#[test]
fn a_reopened_file_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vouch.db");
    Store::open(&path)
        .unwrap()
        .enroll("Ada", "E1", Modality::Face, "m", &[template(0.1)], "t")
        .unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.people(None).unwrap()[0].templates, 1);
    assert!(store.audit_verify().unwrap().intact);
}
