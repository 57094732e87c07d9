//! The store's promises on both engines: every test here runs once on a SQLite file and
//! once on a real PostgreSQL server (`common::server`: `VOUCH_TEST_PG`, or a throwaway
//! cluster started by the test itself). What differs is only how an attacker reaches the
//! rows (a SQLite shell, or a server session), never what Vouch then says.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Barrier};

use std::path::Path;
use vouch::face::TEMPLATE_SHAPE as SHAPE;
use vouch::gallery::Gallery;
use vouch::matching::FACE_BANDS;
use vouch::store::{
    AttendanceRecord, NewTemplate, Punch, Store, StoreError, Verification, exchange,
};

use vouch::types::{Bands, Decision, Modality, PunchKind};

use common::face_template as template;

/// Bands an operator set, to be read back as they were set.
const BANDS: Bands = Bands {
    low: 0.4,
    high: 0.6,
};

/// One store to test: a file, or a database on the test server.
struct Site {
    engine: &'static str,
    /// The file, or the server database's URL.
    db: PathBuf,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

impl Site {
    fn open(&self) -> Store {
        self.try_open().unwrap()
    }

    fn try_open(&self) -> Result<Store, StoreError> {
        match self.url() {
            Some(url) => Store::open_server(url, &self.key),
            None => Store::open_with_key(&self.db, &self.key),
        }
    }

    fn open_read_only(&self) -> Store {
        match self.url() {
            Some(url) => Store::open_server_read_only(url, &self.key),
            None => Store::open_read_only_with_key(&self.db, &self.key),
        }
        .unwrap()
    }

    /// The site with people E1..En enrolled (one template each, model "m").
    fn enrolled(test: &str, people: usize) -> Vec<Site> {
        let sites = sites(test);
        for site in &sites {
            let mut store = site.open();
            for i in 1..=people {
                enroll(&mut store, i);
            }
        }
        sites
    }

    /// What the audit finds wrong.
    fn problems(&self) -> Vec<String> {
        let report = self.open_read_only().audit_verify().unwrap();
        assert_eq!(report.intact, report.problems.is_empty());
        report.problems
    }

    /// One value of one row, read around Vouch (a template's embedding as stored).
    fn stored_bytes(&self, sql: &str) -> Vec<u8> {
        match self.url() {
            Some(url) => common::server::admin_client(url)
                .query_one(sql, &[])
                .unwrap()
                .get(0),
            None => rusqlite::Connection::open(&self.db)
                .unwrap()
                .query_row(sql, [], |row| row.get(0))
                .unwrap(),
        }
    }

    fn url(&self) -> Option<&str> {
        self.db.to_str().filter(|_| self.engine == "postgres")
    }

    /// What someone with the engine's own tools does around Vouch: runs SQL with the
    /// audit log's triggers out of the way.
    fn tamper(&self, sql: &str) {
        match self.url() {
            Some(url) => {
                let mut client = common::server::admin_client(url);
                client
                    .batch_execute(&format!(
                        "ALTER TABLE audit DISABLE TRIGGER USER; {sql}; ALTER TABLE audit ENABLE TRIGGER USER;"
                    ))
                    .unwrap();
            }
            None => {
                let conn = rusqlite::Connection::open(&self.db).unwrap();
                conn.execute_batch(&format!(
                    "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete; {sql};"
                ))
                .unwrap();
            }
        }
    }
}

/// A SQLite site, and a PostgreSQL one when a server is at hand.
fn sites(test: &str) -> Vec<Site> {
    let dir = tempfile::tempdir().unwrap();
    let mut sites = vec![Site {
        engine: "sqlite",
        db: dir.path().join("vouch.db"),
        key: dir.path().join("vouch.db.key"),
        _dir: dir,
    }];
    if let Some((url, _)) = common::server::database(test) {
        let dir = tempfile::tempdir().unwrap();
        sites.push(Site {
            engine: "postgres",
            db: PathBuf::from(url),
            key: dir.path().join("site.key"),
            _dir: dir,
        });
    }
    sites
}

fn enroll(store: &mut Store, i: usize) -> i64 {
    common::enroll_face(store, i, i as f32 / 10.0)
}

/// The audit of `site` does not hold, and says `needle` among its problems.
fn assert_found(site: &Site, report: &vouch::store::AuditReport, needle: &str) {
    assert!(!report.intact, "{}", site.engine);
    assert!(
        report.problems.iter().any(|p| p.contains(needle)),
        "{}: {:?}",
        site.engine,
        report.problems
    );
}

#[test]
fn enrollment_punches_and_deletion_keep_the_audit_whole() {
    for site in sites("enrollment_punches_and_deletion_keep_the_audit_whole") {
        let mut store = site.open();
        let ada = enroll(&mut store, 1);
        let bob = enroll(&mut store, 2);
        let templates = store.templates(Modality::Face, "m", &SHAPE).unwrap();
        assert_eq!(templates.len(), 2, "{}", site.engine);
        assert_eq!(templates[0].embedding, template(0.1).embedding);
        assert!(matches!(
            store.punch(ada, 0.9, None, chrono::Duration::zero(), "kiosk"),
            Ok(Punch::Recorded {
                kind: PunchKind::In,
                ..
            })
        ));
        assert!(matches!(
            store.punch(ada, 0.9, None, chrono::Duration::zero(), "kiosk"),
            Ok(Punch::Recorded {
                kind: PunchKind::Out,
                ..
            })
        ));
        assert!(matches!(
            store.punch(ada, 0.9, None, chrono::Duration::minutes(2), "kiosk"),
            Ok(Punch::Repeat { .. })
        ));
        store.set_bands(Modality::Face, BANDS, "operator").unwrap();
        store.delete_person(bob, "operator").unwrap();
        drop(store);

        let store = site.open_read_only();
        assert_eq!(store.people(None).unwrap().len(), 1, "{}", site.engine);
        assert_eq!(
            store.templates(Modality::Face, "m", &SHAPE).unwrap().len(),
            1
        );
        assert_eq!(store.attendance(None, None).unwrap().len(), 2);
        assert_eq!(store.bands(Modality::Face).unwrap(), BANDS);
        let report = store.audit_verify().unwrap();
        assert!(report.intact, "{}: {:?}", site.engine, report.problems);
        assert!(report.anchor_checked);
    }
}

#[test]
fn a_row_changed_around_vouch_is_refused_and_found() {
    for site in sites("a_row_changed_around_vouch_is_refused_and_found") {
        let mut store = site.open();
        enroll(&mut store, 1);
        store.set_bands(Modality::Face, BANDS, "operator").unwrap();
        drop(store);
        site.tamper("UPDATE people SET name = 'Mallory' WHERE external_id = 'E1'");
        let store = site.open();
        let refused = store.people(None).unwrap_err().to_string();
        assert!(refused.contains("seal"), "{}: {refused}", site.engine);
        assert_found(&site, &store.audit_verify().unwrap(), "people row");
    }
}

#[test]
fn the_audit_log_refuses_edits_and_a_cut_tail_is_found() {
    for site in sites("the_audit_log_refuses_edits_and_a_cut_tail_is_found") {
        let mut store = site.open();
        enroll(&mut store, 1);
        enroll(&mut store, 2);
        drop(store);
        // Through the engine's own SQL, with the triggers in place: refused.
        let refused = match site.url() {
            Some(url) => common::server::admin_client(url)
                .batch_execute("UPDATE audit SET actor = 'nobody'")
                .unwrap_err()
                .to_string(),
            None => rusqlite::Connection::open(&site.db)
                .unwrap()
                .execute_batch("DELETE FROM audit")
                .unwrap_err()
                .to_string(),
        };
        assert!(
            refused.contains("append-only") || refused.contains("db error"),
            "{refused}"
        );
        site.tamper("DELETE FROM audit WHERE id = (SELECT max(id) FROM audit)");
        assert_found(
            &site,
            &site.open_read_only().audit_verify().unwrap(),
            "cut from its end",
        );
    }
}

#[test]
fn a_store_without_its_key_is_refused() {
    for site in sites("a_store_without_its_key_is_refused") {
        let mut store = site.open();
        enroll(&mut store, 1);
        drop(store);
        std::fs::remove_file(&site.key).unwrap();
        let refused = site.try_open().err().expect("refused without its key");
        assert!(
            matches!(refused, StoreError::MissingKey { .. }),
            "{}: {refused}",
            site.engine
        );
    }
}

/// Two kiosks see the same person at the same moment: one punch, not two, on every
/// engine (the writers' lock serialises them; the second finds the first's punch).
#[test]
fn two_kiosks_punching_one_person_at_once_record_one_punch() {
    for site in sites("two_kiosks_punching_one_person_at_once_record_one_punch") {
        let mut store = site.open();
        let ada = enroll(&mut store, 1);
        drop(store);
        let site = Arc::new(site);
        for round in 0..5 {
            let start = Arc::new(Barrier::new(2));
            let kiosks: Vec<_> = (0..2)
                .map(|k| {
                    let (site, start) = (Arc::clone(&site), Arc::clone(&start));
                    std::thread::spawn(move || {
                        let mut store = site.open();
                        start.wait();
                        store
                            .punch(
                                ada,
                                0.9,
                                None,
                                chrono::Duration::hours(1),
                                &format!("kiosk {k}"),
                            )
                            .unwrap()
                    })
                })
                .collect();
            let punches: Vec<Punch> = kiosks.into_iter().map(|k| k.join().unwrap()).collect();
            let recorded = punches
                .iter()
                .filter(|p| matches!(p, Punch::Recorded { .. }))
                .count();
            let expected = usize::from(round == 0);
            assert_eq!(
                recorded, expected,
                "{} round {round}: {punches:?}",
                site.engine
            );
        }
        assert_eq!(
            site.open_read_only().attendance(None, None).unwrap().len(),
            1
        );
    }
}

/// A database that holds another application's tables is not a Vouch store: refused,
/// and nothing is written to it.
#[test]
fn another_applications_database_is_refused_untouched() {
    let Some((url, _)) =
        common::server::database("another_applications_database_is_refused_untouched")
    else {
        return;
    };
    let mut admin = common::server::admin_client(&url);
    admin
        .batch_execute("CREATE TABLE invoices (id BIGINT PRIMARY KEY, total NUMERIC)")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("site.key");
    let refused = Store::open_server(&url, &key).err().expect("refused");
    assert!(matches!(refused, StoreError::Foreign { .. }), "{refused}");
    let tables: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 1);
    assert!(!key.exists(), "no key is made for a store that was refused");
}

/// The role kiosks log in as (a member of `vouch_app`) runs Vouch, and cannot change or
/// remove an audit row even with the triggers gone: a compromised kiosk cannot rewrite
/// history.
#[test]
fn the_kiosk_role_cannot_rewrite_the_audit_log() {
    let Some((url, name)) = common::server::database("the_kiosk_role_cannot_rewrite_the_audit_log")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("site.key");
    drop(Store::open_server(&url, &key).unwrap());
    let mut admin = common::server::admin_client(&url);
    let kiosk = format!("{name}_kiosk");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {kiosk} LOGIN IN ROLE vouch_app;
             ALTER TABLE audit DISABLE TRIGGER USER;"
        ))
        .unwrap();
    let kiosk_url = url.replacen("vouch_admin@", &format!("{kiosk}@"), 1);
    assert_ne!(kiosk_url, url, "the test server's URL names its role");
    let mut store = Store::open_server(&kiosk_url, &key).unwrap();
    let ada = enroll(&mut store, 1);
    store
        .punch(ada, 0.9, None, chrono::Duration::zero(), "kiosk")
        .unwrap();
    drop(store);
    let mut as_kiosk = common::server::admin_client(&kiosk_url);
    for sql in [
        "UPDATE audit SET actor = 'nobody'",
        "DELETE FROM audit",
        "TRUNCATE audit",
    ] {
        let refused = as_kiosk.batch_execute(sql).unwrap_err();
        let reason = refused
            .as_db_error()
            .map_or(refused.to_string(), |e| e.message().to_string());
        assert!(reason.contains("permission denied"), "{sql}: {reason}");
    }
    let report = Store::open_server_read_only(&kiosk_url, &key)
        .unwrap()
        .audit_verify()
        .unwrap();
    assert!(report.intact, "{:?}", report.problems);
}

/// `vouch migrate`'s work: a kiosk's file onto the server and back into a new file, every
/// row and the whole audit chain intact at each step, the biometrics still opening, and
/// the server's own ids carrying on after the moved ones.
#[test]
fn a_site_moves_to_the_server_and_back_whole() {
    let Some((url, _)) = common::server::database("a_site_moves_to_the_server_and_back_whole")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (file, key) = (dir.path().join("kiosk.db"), dir.path().join("kiosk.db.key"));
    let mut kiosk = Store::open_with_key(&file, &key).unwrap();
    let ada = enroll(&mut kiosk, 1);
    let bob = enroll(&mut kiosk, 2);
    enroll(&mut kiosk, 3);
    kiosk
        .punch(ada, 0.9, None, chrono::Duration::zero(), "kiosk")
        .unwrap();
    kiosk.set_bands(Modality::Face, BANDS, "operator").unwrap();
    kiosk.delete_person(bob, "operator").unwrap();

    let mut server = Store::open_server(&url, &key).unwrap();
    let moved = kiosk
        .migrate_into(&mut server, "operator", &mut |_, _| {})
        .unwrap();
    assert!(moved.intact);
    let rows = |name: &str| {
        moved
            .tables
            .iter()
            .find(|(table, _)| table == name)
            .unwrap()
            .1
    };
    assert_eq!(
        (rows("people"), rows("templates"), rows("attendance")),
        (2, 2, 1)
    );
    assert_eq!(
        server.templates(Modality::Face, "m", &SHAPE).unwrap().len(),
        2
    );
    assert_eq!(server.bands(Modality::Face).unwrap(), BANDS);
    // New rows on the server take ids after the moved ones.
    let cid = enroll(&mut server, 4);
    assert!(cid > ada.max(bob), "{cid}");
    assert!(server.audit_verify().unwrap().intact);
    // Into a store that is not empty: refused.
    let refused = kiosk
        .migrate_into(&mut server, "operator", &mut |_, _| {})
        .unwrap_err();
    assert!(refused.to_string().contains("empty"), "{refused}");

    let back = dir.path().join("back.db");
    let mut returned = Store::open_with_key(&back, &key).unwrap();
    server
        .migrate_into(&mut returned, "operator", &mut |_, _| {})
        .unwrap();
    assert_eq!(returned.people(None).unwrap().len(), 3);
    let report = returned.audit_verify().unwrap();
    assert!(report.intact, "{:?}", report.problems);

    // A target made with another key would hold rows it cannot open: refused.
    let other = dir.path().join("other.db");
    let mut stranger = Store::open(&other).unwrap();
    let refused = kiosk
        .migrate_into(&mut stranger, "operator", &mut |_, _| {})
        .unwrap_err();
    assert!(refused.to_string().contains("key"), "{refused}");
}

#[test]
fn enrollment_is_bound_to_its_model_and_deletion_is_audited() {
    for site in sites("enrollment_is_bound_to_its_model_and_deletion_is_audited") {
        let mut store = site.open();
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
                &Verification {
                    person_id: ada,
                    modality: Modality::Face,
                    score: 0.8,
                    bands: FACE_BANDS,
                    decision: Decision::Accept,
                    evidence_sha256: None,
                },
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
}

/// Table row 2: a template of another size is never compared.
#[test]
fn a_64_value_embedding_is_refused_not_compared() {
    for site in sites("a_64_value_embedding_is_refused_not_compared") {
        let mut store = site.open();
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
}

/// Table row 9 (store side): names and ids that would corrupt a screen or a terminal.
#[test]
fn names_with_controls_are_refused() {
    for site in sites("names_with_controls_are_refused") {
        let mut store = site.open();
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
}

/// Table row 10: imported events are checked; every export imports again.
#[test]
fn impossible_events_are_refused_and_exports_always_reimport() {
    for site in sites("impossible_events_are_refused_and_exports_always_reimport") {
        let mut store = site.open();
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
}

/// Table row 4: edits, swaps, inserts and deletions in every table that decides.
#[test]
fn edited_swapped_inserted_and_deleted_rows_are_found() {
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
        for site in Site::enrolled(&format!("edited_rows_{name}"), 2) {
            let mut store = site.open();
            store
                .punch(1, 0.8, None, chrono::Duration::minutes(10), "kiosk")
                .unwrap();
            store
                .record_decision(
                    &Verification {
                        person_id: 2,
                        modality: Modality::Face,
                        score: 0.2,
                        bands: FACE_BANDS,
                        decision: Decision::Reject,
                        evidence_sha256: None,
                    },
                    "clerk",
                )
                .unwrap();
            common::set_bands(&mut store, Modality::Face, FACE_BANDS).unwrap();
            drop(store);
            site.tamper(sql);
            let problems = site.problems();
            assert!(
                problems.iter().any(|p| p.contains(found)),
                "{} {name}: no problem mentions {found:?}: {problems:?}",
                site.engine
            );
            // Reads refuse what they depend on: swapped templates do not open, edited
            // bands and people break their seals.
            let store = site.open_read_only();
            match name {
                "swap" => assert!(store.templates(Modality::Face, "m", &SHAPE).is_err()),
                "bands" => assert!(matches!(
                    store.bands(Modality::Face),
                    Err(StoreError::BadRow {
                        table: "settings",
                        ..
                    })
                )),
                "reid" => assert!(store.person_by_external_id("E2x", Modality::Face).is_err()),
                _ => {}
            }
        }
    }
}

#[test]
fn a_reopened_store_keeps_everything() {
    for site in Site::enrolled("a_reopened_store_keeps_everything", 1) {
        let store = site.open();
        assert_eq!(store.people(None).unwrap()[0].templates, 1);
        assert!(store.audit_verify().unwrap().intact);
    }
}

#[test]
fn a_key_rotation_reencrypts_everything_and_retires_the_old_key() {
    const EMBEDDING: &str = "SELECT embedding FROM templates WHERE id = 1";
    for site in Site::enrolled("a_key_rotation_reencrypts_everything", 3) {
        let before = site.stored_bytes(EMBEDDING);
        let mut store = site.open();
        let cancel = std::sync::atomic::AtomicBool::new(false);
        let rotation = store.rotate_keys("tester", &cancel, &mut |_| {}).unwrap();
        assert!(rotation.finished && !rotation.resumed);
        assert_eq!((rotation.key, rotation.templates), (2, 3));
        drop(store);
        assert_ne!(before, site.stored_bytes(EMBEDDING), "{}", site.engine);
        let key_file = std::fs::read_to_string(&site.key).unwrap();
        assert_eq!(
            key_file.matches("\"secret\"").count(),
            1,
            "the old key is retired"
        );
        let store = site.open();
        assert_eq!(
            store.templates(Modality::Face, "m", &SHAPE).unwrap().len(),
            3
        );
        let report = store.audit_verify().unwrap();
        assert!(report.intact, "{}: {report:?}", site.engine);
    }
}

/// A forgotten check-out is added by a supervisor as a new punch, never an edit: the
/// audit names who and why, the day report counts it, and what makes no sense is refused.
#[test]
fn a_correction_is_a_new_audited_punch() {
    for site in Site::enrolled("a_correction_is_a_new_audited_punch", 1) {
        let mut store = site.open();
        let window = chrono::Duration::minutes(2);
        let person = store.people(None).unwrap()[0].id;
        store
            .punch(person, 0.9, Some(0.95), window, "kiosk")
            .unwrap();
        let an_hour_on = chrono::Utc::now() + chrono::Duration::hours(1);
        let earlier = chrono::Utc::now() - chrono::Duration::minutes(1);
        let reason = "forgot to check out; left by the side door";
        // Refused: nobody with that id, no reason, a time in the future.
        for (who, why, when) in [
            ("E9", reason, earlier),
            ("E1", " ", earlier),
            ("E1", reason, an_hour_on),
        ] {
            assert!(
                store
                    .correct_attendance(who, PunchKind::Out, when, why, "ana")
                    .is_err()
            );
        }
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
        assert!(site.problems().is_empty(), "{}", site.engine);
        // A correction written around Vouch has no audit row: found.
        site.tamper(
            "INSERT INTO attendance (person_id, kind, at, score) VALUES (1, 'out', '2026-11-30T17:00:00.000Z', 0)",
        );
        assert!(!site.problems().is_empty(), "{}", site.engine);
    }
}

/// A kiosk PIN is a way in: a hash swapped around Vouch (to a PIN the attacker knows)
/// breaks the setting's seal and is refused, never checked; deleting the person deletes it.
#[test]
fn a_kiosk_pin_edited_around_vouch_is_refused() {
    for site in Site::enrolled("a_kiosk_pin_edited_around_vouch_is_refused", 2) {
        let mut store = site.open();
        let people = store.people(None).unwrap();
        store.set_pin(people[0].id, "2468", "clerk").unwrap();
        store.set_pin(people[1].id, "1357", "clerk").unwrap();
        assert!(store.check_pin(people[0].id, "2468", "kiosk").unwrap());
        assert!(!store.check_pin(people[0].id, "1357", "kiosk").unwrap());
        drop(store);
        // Person 1 gets person 2's hash and seal: the attacker knows 1357.
        site.tamper(&format!(
            "UPDATE settings SET (value, seal) = (SELECT value, seal FROM settings WHERE key = 'pin.person.{}') WHERE key = 'pin.person.{}'",
            people[1].id, people[0].id
        ));
        let mut store = site.open();
        assert!(store.check_pin(people[0].id, "1357", "kiosk").is_err());
        drop(store);
        assert!(!site.problems().is_empty(), "{}", site.engine);
    }
    for site in Site::enrolled("a_deleted_persons_pin_goes_with_them", 1) {
        let mut store = site.open();
        let person = store.people(None).unwrap()[0].id;
        store.set_pin(person, "2468", "clerk").unwrap();
        store.delete_person(person, "clerk").unwrap();
        assert!(!store.has_pin(person).unwrap());
        drop(store);
        assert!(site.problems().is_empty(), "{}", site.engine);
    }
}

/// The desk asks whether a questioned file was judged before: the audit log answers, the
/// account deleted since included, and a decision edited around Vouch is refused.
#[test]
fn earlier_checks_of_one_file_come_from_the_audit_and_are_checked() {
    for site in Site::enrolled("earlier_checks_of_one_file_come_from_the_audit", 2) {
        let mut store = site.open();
        let (cheque, other_cheque) = ("ab".repeat(32), "cd".repeat(32));
        let id = |store: &Store, external_id| {
            store
                .person_by_external_id(external_id, Modality::Face)
                .unwrap()
                .id
        };
        let (first, second) = (id(&store, "E1"), id(&store, "E2"));
        for (person_id, evidence, decision) in [
            (first, &cheque, Decision::Accept),
            (second, &other_cheque, Decision::Reject),
            (second, &cheque, Decision::Review),
        ] {
            store
                .record_decision(
                    &Verification {
                        person_id,
                        modality: Modality::Face,
                        score: 0.5,
                        bands: BANDS,
                        decision,
                        evidence_sha256: Some(evidence),
                    },
                    "clerk-a",
                )
                .unwrap();
        }
        let earlier = store.earlier_checks(&cheque).unwrap();
        let seen: Vec<(Decision, &str, &str)> = earlier
            .iter()
            .map(|e| (e.decision, e.by.as_str(), e.against()))
            .collect();
        assert_eq!(
            seen,
            [
                (Decision::Accept, "clerk-a", "Person 1 (E1)"),
                (Decision::Review, "clerk-a", "Person 2 (E2)")
            ],
            "{}",
            site.engine
        );
        assert!(store.earlier_checks(&"ef".repeat(32)).unwrap().is_empty());
        // Deleted accounts, one of whose row ids a file gives again to the next person
        // enrolled (SQLite, once its table is empty): that person is not whom it was checked
        // against.
        store.delete_person(first, "t").unwrap();
        store.delete_person(second, "t").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let third = enroll(&mut store, 3);
        if site.engine == "sqlite" {
            assert_eq!(third, first, "the id given again");
        }
        let against: Vec<String> = store
            .earlier_checks(&cheque)
            .unwrap()
            .iter()
            .map(|e| e.against().to_string())
            .collect();
        assert_eq!(
            against,
            ["an account deleted since", "an account deleted since"],
            "{}",
            site.engine
        );
        drop(store);
        site.tamper(
            "UPDATE audit SET detail = replace(detail, '\"decision\":\"review\"', '\"decision\":\"paid\"')",
        );
        let error = site.open().earlier_checks(&cheque).unwrap_err().to_string();
        assert!(
            error.contains("audit row") && error.contains("\"paid\" is not a decision"),
            "{}: {error}",
            site.engine
        );
    }
}
