//! The store's promises on both engines: every test here runs once on a SQLite file and
//! once on a real PostgreSQL server (`common::server`: `VOUCH_TEST_PG`, or a throwaway
//! cluster started by the test itself). What differs is only how an attacker reaches the
//! rows (a SQLite shell, or a server session), never what Vouch then says.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Barrier};

use vouch::face::TEMPLATE_SHAPE as SHAPE;
use vouch::store::{Punch, Store, StoreError};
use vouch::types::{Bands, Modality, PunchKind};

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
