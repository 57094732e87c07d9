//! Operators, roles and governed changes: logins and lock-outs in the audit log, roles
//! that refuse, four eyes on the bands, the repeat window and the active model, the
//! model gate, and rollback.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::Device;
use common::{data, enroll_writer, json_of, repo, shared, shipped_signature_model};
use vouch::store::{Change, ProposalStatus, Session, Store, StoreError};
use vouch::types::{Bands, Modality, Permission, Role};
use vouch::workflow::governance::{self, Reembedding};

const ANA: (&str, &str) = ("ana", "correct horse battery");
const CY: (&str, &str) = ("cy", "staple paper clip");

/// `by` proposes the signature model at `path`, without evidence.
fn propose_signature_model(store: &mut Store, path: &Path, by: &Session) -> vouch::store::Proposal {
    let model = vouch::signature::SignatureModel::load(path, &Device::Cpu).unwrap();
    store
        .propose(
            Change::SignatureModel {
                path: path.display().to_string(),
                model_id: model.model_id(),
            },
            serde_json::json!({}),
            by,
        )
        .unwrap()
}

/// A store with two supervisors, ana and cy, logged in.
fn two_supervisors(path: &Path) -> (Store, Session, Session) {
    let mut store = Store::open(path).unwrap();
    let desk = Session::single_user("setup");
    store
        .add_operator(ANA.0, Role::Supervisor, ANA.1, &desk)
        .unwrap();
    let ana = store.login(ANA.0, ANA.1).unwrap();
    store
        .add_operator(CY.0, Role::Supervisor, CY.1, &ana)
        .unwrap();
    let cy = store.login(CY.0, CY.1).unwrap();
    (store, ana, cy)
}

fn audit_actions(path: &Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut statement = conn
        .prepare("SELECT actor, action FROM audit ORDER BY id")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn logins_lock_out_after_five_failures_and_every_attempt_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vouch.db");
    let mut store = Store::open(&path).unwrap();
    let desk = Session::single_user("setup");
    // Without accounts the desk may do anything; the first account must be a supervisor.
    store.authorize(&desk, Permission::Administer).unwrap();
    assert!(
        store
            .add_operator("kiosk1", Role::Kiosk, "1234", &desk)
            .is_err()
    );
    assert!(
        store
            .add_operator(ANA.0, Role::Supervisor, "short", &desk)
            .is_err(),
        "a supervisor's password has at least 8 characters"
    );
    store
        .add_operator(ANA.0, Role::Supervisor, ANA.1, &desk)
        .unwrap();
    // Now the desk is nobody.
    assert!(matches!(
        store.authorize(&desk, Permission::Enroll),
        Err(StoreError::NotAllowed(_))
    ));
    for _ in 0..4 {
        assert!(matches!(
            store.login(ANA.0, "wrong"),
            Err(StoreError::BadLogin { .. })
        ));
    }
    assert!(matches!(
        store.login(ANA.0, "wrong"),
        Err(StoreError::LockedOut { .. })
    ));
    assert!(
        matches!(store.login(ANA.0, ANA.1), Err(StoreError::LockedOut { .. })),
        "the right secret does not open a locked account"
    );
    assert!(matches!(
        store.login("nobody", "x"),
        Err(StoreError::BadLogin { .. })
    ));
    let actions: Vec<String> = audit_actions(&path).into_iter().map(|(_, a)| a).collect();
    assert_eq!(
        actions,
        [
            "add_operator",
            "login_failed",
            "login_failed",
            "login_failed",
            "login_failed",
            "locked_out",
            "login_failed"
        ]
    );
    assert!(store.audit_verify().unwrap().intact);
}

#[test]
fn roles_refuse_what_they_do_not_cover_and_a_raised_role_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vouch.db");
    let (mut store, ana, _) = two_supervisors(&path);
    store
        .add_operator("bo", Role::Clerk, "clerk pass 1", &ana)
        .unwrap();
    store
        .add_operator("kiosk1", Role::Kiosk, "2468", &ana)
        .unwrap();
    let bo = store.login("bo", "clerk pass 1").unwrap();
    let kiosk = store.login("kiosk1", "2468").unwrap();
    store.authorize(&bo, Permission::Verify).unwrap();
    store.authorize(&kiosk, Permission::CheckIn).unwrap();
    for (session, permission) in [
        (&bo, Permission::Administer),
        (&bo, Permission::Govern),
        (&kiosk, Permission::Enroll),
        (&kiosk, Permission::Report),
    ] {
        assert!(
            matches!(
                store.authorize(session, permission),
                Err(StoreError::NotAllowed(_))
            ),
            "{session:?} {permission:?}"
        );
    }
    assert!(
        store
            .add_operator("eve", Role::Supervisor, "eve password", &bo)
            .is_err()
    );
    // Disabling an account stops its open session at once.
    store.set_operator_active("bo", false, &ana).unwrap();
    assert!(store.authorize(&bo, Permission::Verify).is_err());
    drop(store);
    // A role raised in a SQLite shell breaks the row's seal: no login, and the audit says so.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE operators SET role = 'supervisor' WHERE name = 'kiosk1'",
            [],
        )
        .unwrap();
    let mut store = Store::open(&path).unwrap();
    assert!(matches!(
        store.login("kiosk1", "2468"),
        Err(StoreError::BadRow { .. })
    ));
    assert!(!store.audit_verify().unwrap().intact);
}

#[test]
fn a_change_waits_for_a_second_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vouch.db");
    let (mut store, ana, cy) = two_supervisors(&path);
    let before = store.bands(Modality::Face).unwrap();
    let strict = Bands {
        low: 0.5,
        high: 0.7,
    };
    let proposal =
        governance::propose_bands(&mut store, &ana, Modality::Face, strict, None).unwrap();
    assert_eq!(proposal.status, ProposalStatus::Pending);
    assert_eq!(store.bands(Modality::Face).unwrap(), before, "not yet");
    assert!(matches!(
        store.approve(proposal.id, &ana),
        Err(StoreError::Governance(_))
    ));
    let approved = store.approve(proposal.id, &cy).unwrap();
    assert_eq!(
        (approved.status, approved.decided_by.as_deref()),
        (ProposalStatus::Approved, Some("cy"))
    );
    assert_eq!(store.bands(Modality::Face).unwrap(), strict);
    assert!(store.approve(proposal.id, &cy).is_err(), "decided once");

    // Withdrawn by its proposer, rejected by another: neither applies.
    let window = governance::propose_repeat_window(&mut store, &cy, 0).unwrap();
    assert_eq!(
        store.reject(window.id, &cy).unwrap().status,
        ProposalStatus::Withdrawn
    );
    let window = governance::propose_repeat_window(&mut store, &cy, 0).unwrap();
    assert_eq!(
        store.reject(window.id, &ana).unwrap().status,
        ProposalStatus::Rejected
    );
    assert_eq!(store.repeat_window().unwrap().num_minutes(), 10);

    // An approval typed into a SQLite shell applies nothing and is found.
    let sneaky = governance::propose_repeat_window(&mut store, &ana, 0).unwrap();
    drop(store);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE proposals SET status = 'approved', decided_by = 'cy' WHERE id = ?1",
            [sneaky.id],
        )
        .unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.repeat_window().unwrap().num_minutes(), 10);
    assert!(!store.audit_verify().unwrap().intact);
    let actors: Vec<(String, String)> = audit_actions(&path)
        .into_iter()
        .filter(|(_, action)| ["propose", "approve"].contains(&action.as_str()))
        .collect();
    assert_eq!(actors[0], ("ana".to_string(), "propose".to_string()));
    assert_eq!(actors[1], ("cy".to_string(), "approve".to_string()));
}

#[test]
fn a_site_with_one_supervisor_sets_one_approver_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("vouch.db")).unwrap();
    store
        .add_operator(
            ANA.0,
            Role::Supervisor,
            ANA.1,
            &Session::single_user("setup"),
        )
        .unwrap();
    let ana = store.login(ANA.0, ANA.1).unwrap();
    let bands = governance::propose_bands(
        &mut store,
        &ana,
        Modality::Face,
        Bands {
            low: 0.4,
            high: 0.6,
        },
        None,
    )
    .unwrap();
    assert!(
        store.approve(bands.id, &ana).is_err(),
        "four eyes by default"
    );
    let one = store
        .propose(
            Change::Approvers { required: 1 },
            serde_json::json!({}),
            &ana,
        )
        .unwrap();
    store.approve(one.id, &ana).unwrap();
    assert_eq!(store.approvers_required().unwrap(), 1);
    store.approve(bands.id, &ana).unwrap();
    assert_eq!(store.bands(Modality::Face).unwrap().high, 0.6);
}

#[test]
fn with_operator_accounts_the_cli_needs_a_login_and_records_who() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    drop(two_supervisors(&db));
    let bands = [
        "settings",
        "set-bands",
        "--modality",
        "face",
        "--low",
        "0.5",
        "--high",
        "0.7",
    ];
    let anonymous = vouch_cmd(&db, None, None).args(bands).output().unwrap();
    assert!(!anonymous.status.success());
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("--operator"));
    let wrong = vouch_cmd(&db, Some("ana"), Some("guess"))
        .args(bands)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong operator name or secret"));

    let proposed = json_of(
        vouch_cmd(&db, Some(ANA.0), Some(ANA.1))
            .args(bands)
            .arg("--json"),
    );
    assert_eq!(proposed["status"], "pending", "{proposed}");
    let id = proposed["id"].to_string();
    let own = vouch_cmd(&db, Some(ANA.0), Some(ANA.1))
        .args(["proposals", "approve", &id])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&own.stderr).contains("second supervisor"));
    let approved = json_of(vouch_cmd(&db, Some(CY.0), Some(CY.1)).args([
        "proposals",
        "approve",
        &id,
        "--json",
    ]));
    assert_eq!(approved["status"], "approved");
    let settings = json_of(vouch_cmd(&db, None, None).args(["settings", "show", "--json"]));
    let high = settings["bands"][0][1]["high"].as_f64().unwrap();
    assert!((high - 0.7).abs() < 1e-6, "{settings}");

    // An enrollment is recorded under the operator who logged in, never $USER.
    json_of(
        vouch_cmd(&db, Some(CY.0), Some(CY.1))
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
    let enrolled_by: String =
        common::read_one(&db, "SELECT actor FROM audit WHERE action = 'enroll'");
    assert_eq!(enrolled_by, "cy");
}

/// The binary with `--operator` and `$VOUCH_PASSWORD` when given.
fn vouch_cmd(db: &Path, operator: Option<&str>, secret: Option<&str>) -> assert_cmd::Command {
    let mut command = assert_cmd::Command::cargo_bin("vouch").unwrap();
    command.args(["--device", "cpu", "--db"]).arg(db);
    if let Some(operator) = operator {
        command.args(["--operator", operator]);
    }
    match secret {
        Some(secret) => command.env("VOUCH_PASSWORD", secret),
        None => command.env_remove("VOUCH_PASSWORD"),
    };
    command
}

/// A copy of the shipped signature model as a training run's output: `finished` or not,
/// trained on `train_writers`, its weights scaled by `scale` (1 keeps its verdicts).
fn fake_run(dir: &Path, name: &str, finished: bool, train_writers: &[&str], scale: f64) -> PathBuf {
    let shipped = repo()
        .join("models")
        .join(vouch::signature::SIGNATURE_MODEL_FILE);
    let weights = vouch::models::load_weights(&shipped, &Device::Cpu).unwrap();
    let mut metadata = weights.metadata.clone();
    metadata.insert(
        vouch::train::TRAIN_IDENTITIES.into(),
        serde_json::to_string(train_writers).unwrap(),
    );
    let mut tensors: Vec<_> = weights
        .tensors
        .into_iter()
        .map(|(name, tensor)| {
            let tensor = if name.starts_with("fusion") {
                tensor
            } else {
                (tensor * scale).unwrap()
            };
            (name, tensor)
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let run = dir.join(name);
    std::fs::create_dir_all(&run).unwrap();
    let model = run.join(vouch::train::MODEL_FILE);
    vouch::models::save_weights(&model, &tensors, metadata).unwrap();
    std::fs::write(run.join(vouch::train::HISTORY_FILE), "{}").unwrap();
    let outcome = serde_json::json!({
        "finished": finished, "epochs_run": if finished { 30 } else { 5 }, "epochs_planned": 30
    });
    std::fs::write(run.join(vouch::train::OUTCOME_FILE), outcome.to_string()).unwrap();
    model
}

/// CEDAR writers as a manifest (genuine and forged scans).
fn cedar_manifest(
    dir: &Path,
    writers: std::ops::RangeInclusive<u32>,
    test: &str,
) -> Option<PathBuf> {
    let cedar = shared("data/signatures/cedar", test)?;
    let mut text = String::from("path,identity,kind\n");
    for writer in writers {
        for n in 1..=24 {
            for (folder, file, kind) in [
                ("genuine", "original", "genuine"),
                ("forged", "forgeries", "forgery"),
            ] {
                let path = cedar.join(folder).join(format!("{file}_{writer}_{n}.png"));
                text.push_str(&format!("{},{writer},{kind}\n", path.display()));
            }
        }
    }
    let path = dir.join(format!("cedar-{test}.csv"));
    std::fs::write(&path, text).unwrap();
    Some(path)
}

#[test]
fn the_gate_refuses_a_cancelled_run_writers_it_trained_on_and_a_worse_model() {
    let dir = tempfile::tempdir().unwrap();
    let Some(heldout) = cedar_manifest(dir.path(), 31..=33, "gate") else {
        return;
    };
    let scans = vouch::dataset::load(&heldout).unwrap();
    let shipped = repo()
        .join("models")
        .join(vouch::signature::SIGNATURE_MODEL_FILE);
    let active = vouch::signature::SignatureModel::load(&shipped, &Device::Cpu).unwrap();
    let bands = vouch::matching::default_bands(Modality::Signature);
    let gate = |model: &Path| {
        governance::gate_signature_model(
            model,
            &active,
            &scans,
            bands,
            &Device::Cpu,
            &AtomicBool::new(false),
            &mut |_, _| {},
        )
        .unwrap()
    };
    let first_thirty: Vec<String> = (1..=30).map(|w| w.to_string()).collect();
    let first_thirty: Vec<&str> = first_thirty.iter().map(String::as_str).collect();

    let cancelled = gate(&fake_run(
        dir.path(),
        "cancelled",
        false,
        &first_thirty,
        1.0,
    ));
    assert!(!cancelled.passed);
    assert!(
        cancelled.reasons[0].contains("did not finish (5 of 30 epochs)"),
        "{:?}",
        cancelled.reasons
    );

    let seen = gate(&fake_run(dir.path(), "seen", true, &["31", "32"], 1.0));
    assert!(
        seen.reasons
            .iter()
            .any(|r| r.contains("2 held-out writers were in its training data"))
    );

    // Halved weights: a finished run on other writers, but it lets more forgeries through.
    let worse = gate(&fake_run(dir.path(), "worse", true, &first_thirty, 0.5));
    assert!(!worse.passed);
    assert!(
        worse
            .reasons
            .iter()
            .any(|r| r.contains("worse than the active model's")),
        "{:?}",
        worse.reasons
    );

    let same = gate(&fake_run(dir.path(), "same", true, &first_thirty, 1.0));
    assert!(same.passed, "{:?}", same.reasons);
    assert!(same.candidate.random.genuine >= governance::MIN_GATE_COMPARISONS);

    let mut store = Store::open(&dir.path().join("vouch.db")).unwrap();
    let desk = Session::single_user("tester");
    let cancel = AtomicBool::new(false);
    let mut reembedding = Reembedding {
        device: &Device::Cpu,
        cancel: &cancel,
        progress: &mut |_| {},
    };
    assert!(
        governance::propose_signature_model(
            &mut store,
            &desk,
            &fake_run(dir.path(), "cancelled", false, &first_thirty, 1.0),
            &cancelled,
            &mut reembedding
        )
        .is_err(),
        "a refused gate proposes nothing"
    );
    assert!(store.proposals().unwrap().is_empty());
}

#[test]
fn rollback_restores_the_verdicts_of_the_earlier_model() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let (mut store, ana, cy) = two_supervisors(&db);
    let (shipped, model) = shipped_signature_model();
    enroll_writer(&mut store, &model, 1);
    let questioned = data("signatures/w2_4.png");
    let verdict = |store: &mut Store| {
        let path = vouch::workflow::active_signature_model(store, &shipped).unwrap();
        let model = vouch::signature::SignatureModel::load(&path, &Device::Cpu).unwrap();
        let report =
            vouch::workflow::verify_signature(&model, store, "ACC-1", &questioned, "ana").unwrap();
        (report.model.clone(), report.verdict.score)
    };
    let before = verdict(&mut store);

    // Another model, made active (the store does not gate; the front ends do).
    let other = fake_run(dir.path(), "other", true, &[], 0.5);
    let cancel = AtomicBool::new(false);
    let mut progress = |_| {};
    let mut reembedding = Reembedding {
        device: &Device::Cpu,
        cancel: &cancel,
        progress: &mut progress,
    };
    let proposal = propose_signature_model(&mut store, &other, &ana);
    governance::approve(&mut store, &cy, proposal.id, &mut reembedding).unwrap();
    let changed = verdict(&mut store);
    assert_ne!(changed.0, before.0);

    let back = governance::propose_rollback(&mut store, &ana, &shipped, &shipped, &mut reembedding)
        .unwrap();
    assert_eq!(back.status, ProposalStatus::Pending);
    governance::approve(&mut store, &cy, back.id, &mut reembedding).unwrap();
    assert_eq!(verdict(&mut store), before);
    assert!(store.audit_verify().unwrap().intact);
}

/// References enrolled before their ink was kept are only canvases, and a canvas enlarged
/// for a finer model moves a writer's own cheques to reject: a model that reads another
/// canvas is not made active over references it cannot carry over, and says whose.
#[test]
fn a_model_on_another_canvas_is_not_made_active_over_references_it_cannot_carry() {
    let (height, width) = shipped_signature_model().1.canvas;
    let refused =
        refused_over_kept_canvases("canvas", format!("{}x{}", height * 6 / 5, width * 6 / 5));
    assert!(
        refused.contains("3 stored references cannot be carried over")
            && refused.contains(&format!("a canvas of {height}x{width}"))
            && refused.contains("enrol again: Writer 1 (ACC-1)")
            && !refused.contains("Writer 2"),
        "{refused}"
    );
}

/// A canvas does not say how its scan was prepared, and every model that kept canvases
/// read scans paper-relative: a model that reads them ink-stretched would embed another
/// picture than the one enrolled and score the account silently wrong. (It refuses the ink
/// kept paper-relative too, so both writers are named.)
#[test]
fn a_model_that_prepares_scans_otherwise_is_not_made_active_over_kept_canvases() {
    let refused = refused_over_kept_canvases("normalisation", "ink-stretched".to_string());
    assert!(
        refused.contains("6 stored references cannot be carried over")
            && refused
                .contains("prepared paper-relative where this model reads scans ink-stretched")
            && refused.contains("enrol again: Writer 1 (ACC-1), Writer 2 (ACC-2)"),
        "{refused}"
    );
}

/// Proposes the shipped signature model with its metadata `key` set to `value` over a
/// writer enrolled before ink was kept (1) and one enrolled now (2); checks that approving
/// it changes nothing and returns why it was refused.
fn refused_over_kept_canvases(key: &str, value: String) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, ana, cy) = two_supervisors(&dir.path().join("vouch.db"));
    let (shipped, model) = shipped_signature_model();
    common::enroll_writer_as_before(&mut store, &model, 1);
    enroll_writer(&mut store, &model, 2);
    let other = common::shipped_signature_with(&dir.path().join("other.safetensors"), key, value);
    let proposal = propose_signature_model(&mut store, &other, &ana);
    let cancel = AtomicBool::new(false);
    let mut reembedding = Reembedding {
        device: &Device::Cpu,
        cancel: &cancel,
        progress: &mut |_| {},
    };
    let refused = governance::approve(&mut store, &cy, proposal.id, &mut reembedding)
        .unwrap_err()
        .to_string();
    assert_eq!(
        store.proposal(proposal.id).unwrap().status,
        ProposalStatus::Pending
    );
    assert_eq!(
        vouch::workflow::active_signature_model(&store, &shipped).unwrap(),
        shipped
    );
    let verdict = vouch::workflow::verify_signature(
        &model,
        &mut store,
        "ACC-1",
        &data("signatures/w1_4.png"),
        "ana",
    );
    assert!(verdict.is_ok(), "the desk goes on with the model it had");
    assert!(store.audit_verify().unwrap().intact);
    refused
}

#[test]
fn the_replay_counts_kiosk_punches_and_the_report_lists_what_would_flip() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let (mut store, ana, _) = two_supervisors(&db);
    store
        .enroll(
            "Ada <b>Lovelace</b>",
            "E1",
            Modality::Face,
            "m",
            &[common::face_template(0.1)],
            "setup",
        )
        .unwrap();
    store
        .punch(1, 0.62, None, chrono::Duration::minutes(10), "kiosk")
        .unwrap();
    let bands = store.bands(Modality::Face).unwrap();
    store
        .record_decision(
            &vouch::store::Verification {
                person_id: 1,
                modality: Modality::Face,
                score: 0.9,
                bands,
                decision: bands.decide(0.9),
                evidence_sha256: None,
            },
            ANA.0,
        )
        .unwrap();
    let stricter = Bands {
        low: 0.6,
        high: 0.7,
    };
    let proposal =
        governance::propose_bands(&mut store, &ana, Modality::Face, stricter, None).unwrap();
    let evidence: governance::BandsEvidence =
        serde_json::from_value(proposal.evidence.clone()).unwrap();
    assert_eq!(evidence.replay.total, 2, "the punch and the verification");
    assert_eq!(evidence.replay.changed, 1);
    assert_eq!(evidence.replay.flips[0].0.what, "kiosk punch");
    drop(store);

    let out = dir.path().join("report.html");
    vouch_cmd(&db, Some(ANA.0), Some(ANA.1))
        .args(["proposals", "report", "1", "--out"])
        .arg(&out)
        .assert()
        .success();
    let report = std::fs::read_to_string(&out).unwrap();
    assert!(report.contains("1 of 2 would change"), "{report}");
    assert!(report.contains("kiosk punch"));
    assert!(report.contains("Ada &lt;b&gt;Lovelace&lt;/b&gt; (E1)"));
    assert!(report.contains("No evaluation scores were attached"));
    // Reports are reads that personal data guards: not without a login.
    vouch_cmd(&db, None, None)
        .args(["proposals", "report", "1", "--out"])
        .arg(&out)
        .assert()
        .failure();
}

#[test]
fn a_persons_offset_is_governed_and_moves_only_their_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let (mut store, ana, cy) = two_supervisors(&db);
    let (_, model) = shipped_signature_model();
    for writer in 1..=2 {
        enroll_writer(&mut store, &model, writer);
    }
    let person = store
        .person_by_external_id("ACC-1", Modality::Signature)
        .unwrap();
    let other = store
        .person_by_external_id("ACC-2", Modality::Signature)
        .unwrap();
    let genuine = data("signatures/w1_4.png");
    let references = common::signature_templates(&store, person.id, &model.model_id());
    let references: Vec<&[f32]> = references.iter().map(|r| r.embedding.as_slice()).collect();
    let (_, questioned) = model.embed_scan(&genuine).unwrap();
    let everyone = store.bands(Modality::Signature).unwrap();
    let score = vouch::workflow::judge_signature(&model, &references, &questioned, everyone)
        .unwrap()
        .score;
    // Bands that accept this scan; then an offset for ACC-1 that lifts them over it.
    let bands = Bands {
        low: (score - 0.2).max(0.0),
        high: (score - 0.05).max(0.0),
    };
    let p = governance::propose_bands(&mut store, &ana, Modality::Signature, bands, None).unwrap();
    store.approve(p.id, &cy).unwrap();
    let first =
        vouch::workflow::verify_signature(&model, &mut store, "ACC-1", &genuine, "ana").unwrap();

    let too_far = governance::propose_person_offset(
        &mut store,
        &ana,
        Modality::Signature,
        person.id,
        0.5,
        None,
    );
    assert!(too_far.is_err(), "an offset beyond ±0.15 is refused");
    let scores =
        governance::enrolled_scores(&store, &governance::Scorer::Signature(&model), bands).unwrap();
    let proposal = governance::propose_person_offset(
        &mut store,
        &ana,
        Modality::Signature,
        person.id,
        0.1,
        Some(&scores),
    )
    .unwrap();
    assert_eq!(proposal.status, ProposalStatus::Pending);
    let evidence: governance::BandsEvidence =
        serde_json::from_value(proposal.evidence.clone()).unwrap();
    // The evidence is this person's alone: their one verification, now a review.
    assert_eq!((evidence.replay.total, evidence.replay.changed), (1, 1));
    let own = evidence.evaluation.expect("their enrolled scores");
    assert_eq!(
        own.genuine, 2,
        "their first reference against their other two"
    );
    assert_eq!(
        store.bands_for(Modality::Signature, person.id).unwrap(),
        bands,
        "nothing changes before the second supervisor"
    );
    store.approve(proposal.id, &cy).unwrap();
    let theirs = store.bands_for(Modality::Signature, person.id).unwrap();
    assert!((theirs.high - (bands.high + 0.1)).abs() < 1e-6);
    assert_eq!(
        store.bands_for(Modality::Signature, other.id).unwrap(),
        bands
    );
    let again =
        vouch::workflow::verify_signature(&model, &mut store, "ACC-1", &genuine, "ana").unwrap();
    assert_eq!(first.verdict.decision, vouch::types::Decision::Accept);
    assert_ne!(again.verdict.decision, vouch::types::Decision::Accept);
    assert_eq!(
        again.verdict.bands, theirs,
        "the decision row keeps the bands used"
    );
    // Everyone's new bands are replayed with each person's own offset.
    let replayed = governance::replay_bands(&store, Modality::Signature, bands).unwrap();
    assert_eq!(replayed.total, 2);
    assert_eq!(
        replayed.changed, 1,
        "only the first decision, made before the offset"
    );

    // An offset edited in the file is refused, never used.
    drop(store);
    write_offset_behind_vouchs_back(&db, "-0.15");
    let mut store = Store::open(&db).unwrap();
    let refused = store.bands_for(Modality::Signature, person.id);
    assert!(
        matches!(
            refused,
            Err(StoreError::BadRow {
                table: "settings",
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(
        vouch::workflow::verify_signature(&model, &mut store, "ACC-1", &genuine, "ana").is_err()
    );
    // Deleting the person takes their offset with them; the ledger follows (once the value
    // its seal vouches for, +0.1, is back).
    write_offset_behind_vouchs_back(&db, "0.1");
    let mut store = Store::open(&db).unwrap();
    store.delete_person(person.id, "ana").unwrap();
    assert!(store.person_offsets().unwrap().is_empty());
    assert!(store.audit_verify().unwrap().intact);
}

/// Edits the stored offset in the file, as someone with the database but not Vouch could.
fn write_offset_behind_vouchs_back(db: &Path, value: &str) {
    rusqlite::Connection::open(db)
        .unwrap()
        .execute(
            "UPDATE settings SET value = ?1 WHERE key LIKE 'offset.person.%'",
            [value],
        )
        .unwrap();
}

#[test]
fn the_same_scan_given_twice_is_one_reference() {
    let mut store = Store::open_in_memory().unwrap();
    let (_, model) = shipped_signature_model();
    let scan = data("signatures/w1_1.png");
    let report = vouch::workflow::enroll_signature(
        &model,
        &mut store,
        &vouch::workflow::EnrollRequest {
            name: "Writer 1".into(),
            external_id: "ACC-1".into(),
            images: vec![scan.clone(), scan.clone()],
        },
        "ana",
    )
    .unwrap();
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert!(
        report.rejected[0].reason.contains("the same picture as"),
        "{report:?}"
    );
    assert!(report.advice.is_some(), "one reference, and said so");
    let person = store
        .person_by_external_id("ACC-1", Modality::Signature)
        .unwrap();
    assert_eq!(person.templates, 1);

    // A database from before the refusal holds the picture twice: the desk still scores
    // one reference, says so, and asks for the second look one reference needs.
    let (normalised, embedding) = model.embed_scan(&scan).unwrap();
    let template = vouch::store::NewTemplate {
        embedding,
        quality: normalised.ink_fraction,
        source_sha256: "the same picture".into(),
        crop: Some(
            vouch::signature::reference::ink_bytes(&normalised.ink, model.normalisation).unwrap(),
        ),
    };
    store
        .enroll(
            "Writer 2",
            "ACC-2",
            Modality::Signature,
            &model.model_id(),
            &[template.clone(), template],
            "ana",
        )
        .unwrap();
    let report = vouch::workflow::verify_signature(
        &model,
        &mut store,
        "ACC-2",
        &data("signatures/w1_2.png"),
        "clerk",
    )
    .unwrap();
    assert_eq!(report.verdict.reference_scores.len(), 1, "{report:?}");
    assert_eq!(report.reference_canvases.len(), 1);
    assert_eq!(
        report.verdict.caution,
        Some(vouch::workflow::FEW_REFERENCES_CAUTION),
        "{report:?}"
    );
}

/// A reference whose picture was removed from the file is still scored by its template,
/// but the clerk cannot see it nor the copy check look at it: the check is refused by the
/// row, nothing recorded, instead of a verdict whose pictures are out of step with its scores.
#[test]
fn a_reference_without_its_picture_refuses_the_check_by_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let (_, model) = shipped_signature_model();
    let mut store = Store::open(&db).unwrap();
    enroll_writer(&mut store, &model, 1);
    let person = store
        .person_by_external_id("ACC-1", Modality::Signature)
        .unwrap();
    let second = common::signature_templates(&store, person.id, &model.model_id())[1].template_id;
    drop(store);
    let file = rusqlite::Connection::open(&db).unwrap();
    file.execute("UPDATE templates SET crop = NULL WHERE id = ?1", [second])
        .unwrap();
    let mut store = Store::open(&db).unwrap();
    let genuine = data("signatures/w1_2.png");
    let error = vouch::workflow::verify_signature(&model, &mut store, "ACC-1", &genuine, "clerk")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("templates row {second}"))
            && error.contains("reference 2 of ACC-1: its picture is missing"),
        "{error}"
    );
    let decisions: i64 = file
        .query_row("SELECT count(*) FROM decisions", [], |row| row.get(0))
        .unwrap();
    assert_eq!(decisions, 0);
}

/// A decision's audit row names the scan it judged, so an auditor can tie an acceptance to
/// its cheque; the store takes nothing but a sha256 there.
#[test]
fn a_decision_names_the_scan_it_judged() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let (_, model) = shipped_signature_model();
    let mut store = Store::open(&db).unwrap();
    enroll_writer(&mut store, &model, 1);
    let scan = data("signatures/w1_2.png");
    let report =
        vouch::workflow::verify_signature(&model, &mut store, "ACC-1", &scan, "clerk").unwrap();
    let digest = hex::encode(sha2::Sha256::digest(std::fs::read(&scan).unwrap()));
    assert_eq!(report.scan_sha256, digest);
    let detail: String = common::read_one(
        &db,
        "SELECT detail FROM audit WHERE action = 'verify' ORDER BY id DESC LIMIT 1",
    );
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(detail["evidence_sha256"], digest.as_str(), "{detail}");

    let person = store
        .person_by_external_id("ACC-1", Modality::Signature)
        .unwrap();
    let bands = store.bands(Modality::Signature).unwrap();
    let named_by_its_file = vouch::store::Verification {
        person_id: person.id,
        modality: Modality::Signature,
        score: 0.5,
        bands,
        decision: bands.decide(0.5),
        evidence_sha256: Some("w1_2.png"),
    };
    let refused = store.record_decision(&named_by_its_file, "clerk");
    assert!(
        matches!(refused, Err(StoreError::InvalidSetting(_))),
        "{refused:?}"
    );
    assert!(store.audit_verify().unwrap().intact);
}

#[test]
fn re_enrolment_replaces_every_reference_in_one_step() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vouch.db");
    let mut store = Store::open(&db).unwrap();
    let (_, model) = shipped_signature_model();
    enroll_writer(&mut store, &model, 1);
    let person = store
        .person_by_external_id("ACC-1", Modality::Signature)
        .unwrap();
    let before = common::signature_templates(&store, person.id, &model.model_id());
    let request = |images: Vec<PathBuf>| vouch::workflow::EnrollRequest {
        name: person.name.clone(),
        external_id: person.external_id.clone(),
        images,
    };
    // Nothing usable: the old references stay.
    let missing = request(vec![dir.path().join("no-such-scan.png")]);
    assert!(vouch::workflow::reenroll_signature(&model, &mut store, &missing, "clerk").is_err());
    assert_eq!(store.person(person.id).unwrap().templates, before.len());
    // Someone never enrolled cannot be re-enrolled.
    let stranger = vouch::workflow::EnrollRequest {
        external_id: "ACC-9".into(),
        ..request(vec![data("signatures/w1_4.png")])
    };
    assert!(vouch::workflow::reenroll_signature(&model, &mut store, &stranger, "clerk").is_err());

    let report = vouch::workflow::reenroll_signature(
        &model,
        &mut store,
        &request(vec![
            data("signatures/w1_4.png"),
            data("signatures/w1_1.png"),
        ]),
        "clerk",
    )
    .unwrap();
    assert_eq!((report.person_id, report.enrolled), (person.id, 2));
    let after = common::signature_templates(&store, person.id, &model.model_id());
    assert_eq!(after.len(), 2);
    // Scans 2 and 3 were references only before; scan 1 is one in both.
    let embeddings = |templates: &[vouch::store::StoredTemplate]| -> Vec<Vec<f32>> {
        templates.iter().map(|t| t.embedding.clone()).collect()
    };
    let (before, after) = (embeddings(&before), embeddings(&after));
    assert!(after.contains(&before[0]));
    assert!(!after.contains(&before[1]) && !after.contains(&before[2]));
    assert!(audit_actions(&db).contains(&("clerk".into(), "reenroll".into())));
    assert!(store.audit_verify().unwrap().intact);
}
