//! Several kiosks and desks on one PostgreSQL server: the gallery follows what the others
//! change within a second, twenty kiosks punching at once lose and double nothing, and a
//! kiosk cut off from the server keeps its punches and sends each once when it returns.
//! On a real server (`common::server`); skipped, saying so, when there is none.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use vouch::face::TEMPLATE_SHAPE as SHAPE;
use vouch::gallery::Gallery;
use vouch::store::{GalleryFeed, Punch, Store};
use vouch::types::{Modality, PunchKind};
use vouch::workflow;

use common::face_template as template;

fn enroll(store: &mut Store, i: usize) -> i64 {
    common::enroll_face(store, i, i as f32 / 1000.0)
}

/// Follows the feed until `done` holds of the gallery, or a second has passed; returns
/// how long it took.
fn follow_until(
    feed: &GalleryFeed,
    gallery: &mut Gallery,
    store: &Store,
    done: impl Fn(&Gallery) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        if let Some(change) = feed.next_within(Duration::from_millis(50)) {
            gallery.follow(store, "m", &change).unwrap();
        }
        if done(gallery) {
            return Some(start.elapsed());
        }
    }
    None
}

#[test]
fn every_kiosks_gallery_follows_an_enrollment_and_a_deletion_within_a_second() {
    let Some((url, _)) = common::server::database("every_kiosks_gallery_follows") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("site.key");
    let mut desk = Store::open_server(&url, &key).unwrap();
    enroll(&mut desk, 1);
    let kiosk = Store::open_server(&url, &key).unwrap();
    let feed = GalleryFeed::listen(&url).unwrap();
    let mut gallery =
        Gallery::from_templates(128, &kiosk.templates(Modality::Face, "m", &SHAPE).unwrap())
            .unwrap();
    assert_eq!(gallery.people(), 1);

    let probe = template(0.002).embedding;
    let bob = enroll(&mut desk, 2);
    let seen = follow_until(&feed, &mut gallery, &kiosk, |g| {
        g.search(&probe, 1).unwrap()[0].person_id == bob
    });
    let seen = seen.expect("the kiosk matched the new enrollment within a second");
    eprintln!("enrollment visible on the other kiosk after {seen:?}");

    desk.delete_person(bob, "desk").unwrap();
    let gone = follow_until(&feed, &mut gallery, &kiosk, |g| {
        g.search(&probe, 5)
            .unwrap()
            .iter()
            .all(|c| c.person_id != bob)
    });
    let gone = gone.expect("the deleted person was never matched after a second");
    eprintln!("deletion visible on the other kiosk after {gone:?}");
    assert_eq!(gallery.people(), 1);
}

/// 20 kiosks x 500 punches of 200 people, all at once against one server: every punch
/// recorded exactly once, and each person's punches alternate in and out.
#[test]
fn twenty_kiosks_punching_at_once_lose_and_double_nothing() {
    const KIOSKS: usize = 20;
    const PUNCHES: usize = 500;
    const PEOPLE: usize = 200;
    let Some((url, _)) = common::server::database("twenty_kiosks_punching_at_once") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(dir.path().join("site.key"));
    let mut desk = Store::open_server(&url, &key).unwrap();
    let people: Arc<Vec<i64>> = Arc::new((1..=PEOPLE).map(|i| enroll(&mut desk, i)).collect());
    let start = Instant::now();
    let kiosks: Vec<_> = (0..KIOSKS)
        .map(|k| {
            let (url, key, people) = (url.clone(), Arc::clone(&key), Arc::clone(&people));
            std::thread::spawn(move || {
                let mut store = Store::open_server(&url, &key).unwrap();
                let mut latencies = Vec::with_capacity(PUNCHES);
                let mut recorded = 0;
                for n in 0..PUNCHES {
                    let person = people[(k * 7919 + n * 31) % people.len()];
                    let began = Instant::now();
                    let punch = store
                        .punch(
                            person,
                            0.9,
                            Some(0.9),
                            chrono::Duration::zero(),
                            &format!("kiosk {k}"),
                        )
                        .unwrap();
                    latencies.push(began.elapsed());
                    recorded += usize::from(matches!(punch, Punch::Recorded { .. }));
                }
                (recorded, latencies)
            })
        })
        .collect();
    let mut recorded = 0;
    let mut latencies = Vec::new();
    for kiosk in kiosks {
        let (count, times) = kiosk.join().unwrap();
        recorded += count;
        latencies.extend(times);
    }
    let wall = start.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    eprintln!(
        "{} punches from {KIOSKS} kiosks in {wall:?}: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    assert_eq!(recorded, KIOSKS * PUNCHES, "every punch was recorded");
    let reader = Store::open_server_read_only(&url, &key).unwrap();
    let rows = reader.attendance(None, None).unwrap();
    assert_eq!(rows.len(), KIOSKS * PUNCHES, "none lost, none doubled");
    let mut by_person: std::collections::BTreeMap<String, Vec<(String, PunchKind)>> =
        Default::default();
    for row in &rows {
        by_person
            .entry(row.external_id.clone().unwrap())
            .or_default()
            .push((row.at.clone(), row.kind));
    }
    for (person, punches) in by_person {
        for pair in punches.windows(2) {
            let same_day = pair[0].0[..10] == pair[1].0[..10];
            assert!(
                !same_day || pair[0].1 != pair[1].1,
                "{person}: two {:?} in a row at {} and {}",
                pair[1].1,
                pair[0].0,
                pair[1].0
            );
        }
    }
    let report = reader.audit_verify().unwrap();
    assert!(report.intact, "{:?}", report.problems);
}

/// The server goes away mid-run: the kiosk keeps naming the faces it sees from its
/// roster and punching into its outbox (a refused attack too); the server returns: every
/// queued punch arrives exactly once, in order, with its own time, and the audit says it
/// was late. A second delivery of the same punches records nothing.
#[test]
fn a_kiosk_cut_off_from_the_server_loses_no_punch() {
    let Some(cluster) =
        common::server::Cluster::for_test("a_kiosk_cut_off_from_the_server_loses_no_punch")
    else {
        return;
    };
    let url = cluster.database("fault");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("site.key");
    let mut store = Store::open_server(&url, &key).unwrap();
    let people: Vec<i64> = (1..=5).map(|i| enroll(&mut store, i)).collect();
    store.keep_outbox(&dir.path().join("outbox.db")).unwrap();
    let mut gallery =
        Gallery::from_templates(128, &store.templates(Modality::Face, "m", &SHAPE).unwrap())
            .unwrap();
    gallery.keep_roster(&store).unwrap();
    let site_window = store.repeat_window().unwrap();

    let mut queued = Vec::new();
    for n in 0..30 {
        if n == 10 {
            cluster.stop().unwrap();
        }
        if n == 25 {
            cluster.start_again().unwrap();
        }
        let i = n % people.len();
        if n == 12 {
            assert_eq!(
                workflow::kiosk_repeat_window(&store, &gallery).unwrap(),
                site_window,
                "the roster keeps the site's repeat window"
            );
            store
                .audit_append(
                    "kiosk",
                    "presentation_attack",
                    r#"{"matched_person_id": 1, "liveness": 0.1}"#,
                )
                .unwrap();
        }
        let probe = template((i + 1) as f32 / 1000.0).embedding;
        let report = workflow::checkin(
            &mut store,
            &gallery,
            &probe,
            Some(0.9),
            chrono::Duration::zero(),
            "kiosk",
        )
        .unwrap_or_else(|e| panic!("punch {n}: {e}"));
        assert_eq!(report.name, format!("Person {}", i + 1), "punch {n}");
        if let Punch::Queued { at } = report.punch {
            queued.push((people[i], at));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        queued.len() >= 10,
        "punches were queued while the server was away: {}",
        queued.len()
    );
    let last_punch = Instant::now();

    // The server is back; the kiosk tries again after its pause.
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.outbox_waiting().unwrap() > 0 {
        assert!(Instant::now() < deadline, "the outbox never emptied");
        store.deliver_outbox(chrono::Duration::zero()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "{} punches queued while the server was away, the outbox empty {:?} after the last punch",
        queued.len(),
        last_punch.elapsed()
    );
    // The same punches again (a kiosk that died before it emptied its outbox).
    for (person_id, at) in &queued {
        let sent = store
            .punch_delayed(*person_id, 0.9, None, at, chrono::Duration::zero(), "kiosk")
            .unwrap();
        assert!(
            !matches!(sent, Punch::Recorded { .. }),
            "a punch sent twice is recorded once"
        );
    }

    let rows = store.attendance(None, None).unwrap();
    assert_eq!(rows.len(), 30, "every punch arrived exactly once");
    for (person_id, at) in &queued {
        let whose = format!(
            "E{}",
            people.iter().position(|p| p == person_id).unwrap() + 1
        );
        assert!(
            rows.iter()
                .any(|r| &r.at == at && r.external_id.as_deref() == Some(whose.as_str())),
            "{at} kept its time"
        );
    }
    let mut admin = common::server::admin_client(&url);
    let mut late = |action: &str| -> usize {
        let count: i64 = admin
            .query_one(
                "SELECT count(*) FROM audit WHERE action = $1 AND detail LIKE '%\"delayed\"%'",
                &[&action],
            )
            .unwrap()
            .get(0);
        count as usize
    };
    assert_eq!(
        late("attendance"),
        queued.len(),
        "the audit says which punches were late"
    );
    assert_eq!(
        late("presentation_attack"),
        1,
        "the attack arrived late too"
    );
    assert!(store.audit_verify().unwrap().intact);
}
