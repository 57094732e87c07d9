//! Governed changes with their evidence: what new bands would do (error rates on
//! evaluation scores, and the replay of the decisions already recorded), and the gate a
//! signature model must pass before it can be proposed for activation (a finished run,
//! held-out writers it never trained on, enough comparisons, and no more skilled
//! forgeries let through than the active model). Approving a model change re-embeds the
//! references first, so the model is never active without its templates.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::Progress;
use super::models::reembed;
use crate::dataset::LabelledScan;
use crate::error::{Error, Result};
use crate::eval::verification::{
    ErrorRates, Operating, Replay, ScoreSet, WORKBENCH_REFERENCES, gallery_scores, manifest_scores,
    operating_point, replay,
};
use crate::matching::{euclidean_distance, face_score};
use crate::signature::SignatureModel;
use crate::store::{Change, Proposal, Session, Store};
use crate::train::{RunOutcome, TRAIN_IDENTITIES};
use crate::types::{Bands, Modality};

/// Comparisons of each kind a model gate needs: with fewer, an error rate of zero says
/// nothing (the lowest rate n comparisons can support is about 3/n).
pub const MIN_GATE_COMPARISONS: usize = 50;

/// What new bands were predicted to do when proposed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BandsEvidence {
    pub old: Bands,
    pub new: Bands,
    /// Error rates at the new bands on the evaluation scores, when there were any.
    pub evaluation: Option<EvaluationFigures>,
    /// The decisions already recorded, decided again by the new bands (the flip list
    /// cut to its newest `FLIPS_KEPT`; the counts are whole).
    pub replay: Replay,
    /// The evaluation scores themselves, so the report of what was approved can be
    /// drawn again at any time.
    pub scores: Option<ScoreSet>,
}

/// Flips a proposal's evidence keeps: enough to read, not a copy of the history.
pub const FLIPS_KEPT: usize = 200;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluationFigures {
    pub source: String,
    pub genuine: usize,
    pub impostor: usize,
    pub at_new: Operating,
    pub at_old: Operating,
    /// FAR before and after for each kind of impostor (skilled forgeries and other
    /// writers are different attacks, never one merged rate).
    #[serde(default)]
    pub far_by_kind: Vec<KindFar>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KindFar {
    pub kind: String,
    pub impostors: usize,
    pub old: f64,
    pub new: f64,
}

pub fn bands_evidence(
    store: &Store,
    modality: Modality,
    bands: Bands,
    scores: Option<&ScoreSet>,
) -> Result<BandsEvidence> {
    let old = store.bands(modality)?;
    Ok(evidence(
        old,
        bands,
        scores,
        replay_bands(store, modality, bands)?,
    ))
}

/// What a person's own offset would do: their bands before and after, their scores in
/// the evaluation (genuine attempts, and impostor attempts against their references) and
/// their recorded decisions decided again.
pub fn person_offset_evidence(
    store: &Store,
    modality: Modality,
    person_id: i64,
    offset: f32,
    scores: Option<&ScoreSet>,
) -> Result<BandsEvidence> {
    let everyone = store.bands(modality)?;
    let old = everyone.shifted(store.person_offset(person_id)?);
    let new = everyone.shifted(offset);
    let own = scores
        .and_then(|set| {
            set.per_identity
                .iter()
                .find(|s| s.person_id == Some(person_id))
                .map(|s| (set, s))
        })
        .map(|(set, s)| ScoreSet {
            genuine: s.genuine.clone(),
            random: s.impostor.clone(),
            source: format!("{}: {} only", set.source, s.identity),
            per_identity: vec![s.clone()],
            ..ScoreSet::default()
        });
    let past: Vec<_> = store
        .decisions(modality)?
        .into_iter()
        .filter(|p| p.person_id == Some(person_id))
        .collect();
    Ok(evidence(old, new, own.as_ref(), replay(&past, |_| new)))
}

/// The recorded decisions of a modality decided again by new bands, each person's moved
/// by their own offset.
pub fn replay_bands(store: &Store, modality: Modality, bands: Bands) -> Result<Replay> {
    let offsets = store.person_offsets()?;
    let past = store.decisions(modality)?;
    Ok(replay(&past, |p| {
        bands.shifted(
            p.person_id
                .and_then(|id| offsets.get(&id).copied())
                .unwrap_or(0.0),
        )
    }))
}

fn evidence(
    old: Bands,
    new: Bands,
    scores: Option<&ScoreSet>,
    mut replayed: Replay,
) -> BandsEvidence {
    let evaluation = scores.map(|set| {
        let impostor = set.impostor();
        EvaluationFigures {
            source: set.source.clone(),
            genuine: set.genuine.len(),
            impostor: impostor.len(),
            at_new: operating_point(&set.genuine, &impostor, new),
            at_old: operating_point(&set.genuine, &impostor, old),
            far_by_kind: [
                ("skilled forgeries", &set.skilled),
                ("other identities", &set.random),
            ]
            .into_iter()
            .filter(|(_, scores)| !scores.is_empty())
            .map(|(kind, scores)| KindFar {
                kind: kind.into(),
                impostors: scores.len(),
                old: operating_point(&set.genuine, scores, old).far,
                new: operating_point(&set.genuine, scores, new).far,
            })
            .collect(),
        }
    });
    let cut = replayed.flips.len().saturating_sub(FLIPS_KEPT);
    replayed.flips.drain(..cut);
    BandsEvidence {
        old,
        new,
        evaluation,
        replay: replayed,
        scores: scores.cloned(),
    }
}

/// Proposes one person's threshold offset (positive is stricter) with its evidence.
pub fn propose_person_offset(
    store: &mut Store,
    session: &Session,
    modality: Modality,
    person_id: i64,
    offset: f32,
    scores: Option<&ScoreSet>,
) -> Result<Proposal> {
    let person = store.person(person_id)?;
    if person.modality != modality {
        return Err(Error::Invalid(format!(
            "{} ({}) is enrolled for {}s, not {modality}s",
            person.name, person.external_id, person.modality
        )));
    }
    let evidence = person_offset_evidence(store, modality, person.id, offset, scores)?;
    Ok(store.propose(
        Change::PersonOffset {
            modality,
            person_id: person.id,
            person: format!("{} ({})", person.name, person.external_id),
            offset,
        },
        serde_json::to_value(evidence).expect("evidence serialises"),
        session,
    )?)
}

/// Whose scores evidence is read on: the face model's (by its id; a face score is a
/// distance) or a signature model with its scorer.
pub enum Scorer<'a> {
    Face(String),
    Signature(&'a SignatureModel),
}

/// Genuine and impostor scores of the enrolled references themselves (each person's
/// first reference against their others and against everyone else's), each person's
/// scores named and linked to them for the problem-enrollee view.
pub fn enrolled_scores(store: &Store, scorer: &Scorer, bands: Bands) -> Result<ScoreSet> {
    let mut set = match scorer {
        Scorer::Face(model_id) => gallery_scores(
            &store.templates(Modality::Face, model_id, &crate::face::TEMPLATE_SHAPE)?,
            bands,
            |references, questioned| Ok(face_score(euclidean_distance(references[0], questioned)?)),
        ),
        Scorer::Signature(model) => gallery_scores(
            &store.templates(
                Modality::Signature,
                &model.model_id(),
                &crate::signature::TEMPLATE_SHAPE,
            )?,
            bands,
            |r, q| model.score(r, q),
        ),
    }?;
    for scores in &mut set.per_identity {
        if let Ok(id) = scores.identity.parse::<i64>() {
            let person = store.person(id)?;
            scores.identity = format!("{} ({})", person.name, person.external_id);
            scores.person_id = Some(id);
        }
    }
    Ok(set)
}

/// Proposes new bands with their evidence.
pub fn propose_bands(
    store: &mut Store,
    session: &Session,
    modality: Modality,
    bands: Bands,
    scores: Option<&ScoreSet>,
) -> Result<Proposal> {
    let evidence = bands_evidence(store, modality, bands, scores)?;
    Ok(store.propose(
        Change::Bands { modality, bands },
        serde_json::to_value(evidence).expect("evidence serialises"),
        session,
    )?)
}

/// Proposes a new kiosk repeat window.
pub fn propose_repeat_window(
    store: &mut Store,
    session: &Session,
    minutes: i64,
) -> Result<Proposal> {
    let old = store.repeat_window()?.num_minutes();
    Ok(store.propose(
        Change::RepeatWindow { minutes },
        serde_json::json!({ "old_minutes": old, "new_minutes": minutes }),
        session,
    )?)
}

/// One model's figures on the gate's held-out scans.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateFigures {
    pub model: String,
    pub skilled: Option<ErrorRates>,
    pub random: ErrorRates,
}

/// Whether a candidate signature model may be proposed, and on what figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateReport {
    pub candidate: GateFigures,
    pub active: GateFigures,
    pub heldout_identities: usize,
    pub references: usize,
    /// The accept threshold the skilled-forgery rates were read at.
    pub threshold: f32,
    pub passed: bool,
    /// Why it failed, one reason each.
    pub reasons: Vec<String>,
    /// The candidate's scores on the held-out scans, for the report.
    pub candidate_scores: ScoreSet,
}

/// Why a model cannot even be evaluated for activation: a run that did not finish, or
/// held-out scans that it trained on.
fn gate_refusals(
    candidate: &Path,
    heldout: &[LabelledScan],
    device: &Device,
) -> Result<Vec<String>> {
    let mut reasons = Vec::new();
    match RunOutcome::of_model(candidate)? {
        Some(outcome) if !outcome.finished => reasons.push(format!(
            "its training run did not finish ({} of {} epochs): a cancelled run cannot be activated",
            outcome.epochs_run, outcome.epochs_planned
        )),
        _ => {}
    }
    let weights = crate::models::load_weights(candidate, device)?;
    match weights.metadata.get(TRAIN_IDENTITIES) {
        None => reasons.push(
            "the model does not record which writers it was trained on, so no held-out set can be shown to be held out"
                .into(),
        ),
        Some(list) => {
            let trained: BTreeSet<String> = serde_json::from_str(list).map_err(|e| {
                Error::Invalid(format!("{}: {TRAIN_IDENTITIES}: {e}", candidate.display()))
            })?;
            let overlap: BTreeSet<&str> = heldout
                .iter()
                .map(|s| s.identity.as_str())
                .filter(|identity| trained.contains(*identity))
                .collect();
            if !overlap.is_empty() {
                let named: Vec<&str> = overlap.iter().take(5).copied().collect();
                reasons.push(format!(
                    "{} held-out writers were in its training data ({}…): evaluate on writers it never saw",
                    overlap.len(),
                    named.join(", ")
                ));
            }
        }
    }
    Ok(reasons)
}

/// Evaluates the candidate and the active model on the same held-out scans (each
/// identity's first `WORKBENCH_REFERENCES` genuine scans enrolled) and applies the gate.
pub fn gate_signature_model(
    candidate_path: &Path,
    active: &SignatureModel,
    heldout: &[LabelledScan],
    bands: Bands,
    device: &Device,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<GateReport> {
    let mut reasons = gate_refusals(candidate_path, heldout, device)?;
    let candidate = SignatureModel::load(candidate_path, device)?;
    let figures = |model: &SignatureModel, progress: &mut dyn FnMut(usize, usize)| {
        manifest_scores(
            model,
            heldout,
            WORKBENCH_REFERENCES,
            bands,
            cancel,
            progress,
        )
        .map(|set: ScoreSet| {
            let figures = GateFigures {
                model: model.model_id(),
                skilled: (!set.skilled.is_empty())
                    .then(|| ErrorRates::new(&set.genuine, &set.skilled, bands.high)),
                random: ErrorRates::new(&set.genuine, &set.random, bands.high),
            };
            (figures, set)
        })
    };
    let (candidate_figures, candidate_scores) = figures(&candidate, progress)?;
    let (active_figures, _) = figures(active, progress)?;
    let counts = [
        ("genuine", candidate_figures.random.genuine),
        (
            "skilled forgery",
            candidate_figures.skilled.as_ref().map_or(0, |s| s.impostor),
        ),
        ("other-writer", candidate_figures.random.impostor),
    ];
    for (kind, count) in counts {
        if count < MIN_GATE_COMPARISONS {
            reasons.push(format!(
                "only {count} {kind} comparisons on the held-out scans; the gate needs {MIN_GATE_COMPARISONS}"
            ));
        }
    }
    if let (Some(new), Some(old)) = (&candidate_figures.skilled, &active_figures.skilled) {
        if new.eer > old.eer {
            reasons.push(format!(
                "skilled-forgery EER {:.2}% is worse than the active model's {:.2}%",
                new.eer * 100.0,
                old.eer * 100.0
            ));
        }
        if new.far_at_default > old.far_at_default {
            reasons.push(format!(
                "it accepts {:.2}% of skilled forgeries at the accept threshold {:.2}, the active model {:.2}%",
                new.far_at_default * 100.0,
                bands.high,
                old.far_at_default * 100.0
            ));
        }
    }
    let identities = crate::dataset::identities_of(heldout.iter().map(|s| s.identity.as_str()));
    Ok(GateReport {
        candidate: candidate_figures,
        active: active_figures,
        heldout_identities: identities.len(),
        references: WORKBENCH_REFERENCES,
        threshold: bands.high,
        passed: reasons.is_empty(),
        reasons,
        candidate_scores,
    })
}

/// The model's templates of every enrolled reference, made before the model can become
/// active (proposing, then again on approval for references enrolled meanwhile): a
/// model is never in force without them. Cancelling leaves everything as it was.
pub struct Reembedding<'a> {
    pub device: &'a Device,
    pub cancel: &'a AtomicBool,
    pub progress: &'a mut dyn FnMut(Progress),
}

impl Reembedding<'_> {
    fn run(&mut self, store: &mut Store, session: &Session, path: &Path) -> Result<SignatureModel> {
        let model = SignatureModel::load(path, self.device)?;
        let report = reembed(store, &model, session.name(), self.cancel, self.progress)?;
        if report.cancelled {
            return Err(Error::Cancelled);
        }
        // Activating it would leave those accounts with nothing to be checked against.
        if let Some(refused) = report.refused_summary() {
            return Err(Error::Invalid(format!(
                "{} cannot be made active here: {refused}",
                path.display()
            )));
        }
        Ok(model)
    }
}

/// Proposes a candidate that passed its gate as the active signature model.
pub fn propose_signature_model(
    store: &mut Store,
    session: &Session,
    candidate: &Path,
    gate: &GateReport,
    reembedding: &mut Reembedding,
) -> Result<Proposal> {
    if !gate.passed {
        return Err(Error::Invalid(format!(
            "the model cannot be activated: {}",
            gate.reasons.join("; ")
        )));
    }
    store.authorize(session, crate::types::Permission::Govern)?;
    let path = std::path::absolute(candidate).map_err(|e| Error::io(e, candidate))?;
    let model = reembedding.run(store, session, &path)?;
    if model.model_id() != gate.candidate.model {
        return Err(Error::Invalid(format!(
            "{} changed since its gate ran: run the gate again",
            path.display()
        )));
    }
    Ok(store.propose(
        Change::SignatureModel {
            path: path.display().to_string(),
            model_id: model.model_id(),
        },
        serde_json::to_value(gate).expect("gate serialises"),
        session,
    )?)
}

/// Proposes going back to a model that was active before (or the shipped one): no gate,
/// since it already stood; the proposal says what it replaces.
pub fn propose_rollback(
    store: &mut Store,
    session: &Session,
    to: &Path,
    shipped: &Path,
    reembedding: &mut Reembedding,
) -> Result<Proposal> {
    store.authorize(session, crate::types::Permission::Govern)?;
    let to = std::path::absolute(to).map_err(|e| Error::io(e, to))?;
    let earlier = store.signature_model_history()?;
    let known = to == std::path::absolute(shipped).map_err(|e| Error::io(e, shipped))?
        || earlier.iter().any(|(path, _)| Path::new(path) == to);
    if !known {
        return Err(Error::Invalid(format!(
            "{} was never the active signature model: a new model goes through the gate (`vouch models activate`)",
            to.display()
        )));
    }
    let model = reembedding.run(store, session, &to)?;
    let current = super::active_signature_model(store, shipped)?;
    Ok(store.propose(
        Change::SignatureModel {
            path: to.display().to_string(),
            model_id: model.model_id(),
        },
        serde_json::json!({ "rollback_from": current, "to": to }),
        session,
    )?)
}

/// Approves a proposal. A model change first re-embeds the references with the model
/// (cancelling leaves the proposal pending), then the store applies it.
pub fn approve(
    store: &mut Store,
    session: &Session,
    id: i64,
    reembedding: &mut Reembedding,
) -> Result<Proposal> {
    store.authorize(session, crate::types::Permission::Govern)?;
    let proposal = store.proposal(id)?;
    if let Change::SignatureModel { path, model_id } = &proposal.change {
        let model = reembedding.run(store, session, Path::new(path))?;
        if &model.model_id() != model_id {
            return Err(Error::Invalid(format!(
                "{path} is no longer model {model_id} (it is {}): propose it again",
                model.model_id()
            )));
        }
    }
    Ok(store.approve(id, session)?)
}

/// A proposal as a self-contained HTML page: who proposed and decided it and when, and
/// the evidence it was decided on, with the plots drawn again from the stored scores.
pub fn proposal_report(proposal: &Proposal) -> Result<String> {
    use crate::eval::report::{escape, evaluation_section, page};
    let mut body = format!(
        "<table><tr><th>change</th><td>{}</td></tr><tr><th>proposed</th><td>by {} at {}</td></tr><tr><th>status</th><td>{:?}{}</td></tr></table>\n",
        escape(&proposal.change.describe()),
        escape(&proposal.proposed_by),
        escape(&proposal.proposed_at),
        proposal.status,
        match (&proposal.decided_by, &proposal.decided_at) {
            (Some(by), Some(at)) => format!(" by {} at {}", escape(by), escape(at)),
            _ => String::new(),
        }
    );
    if let Ok(evidence) = serde_json::from_value::<BandsEvidence>(proposal.evidence.clone()) {
        body.push_str(&format!(
            "<h2>Bands</h2><p>Before: accept at or above {:.4}, reject below {:.4}. Proposed: accept at or above {:.4}, reject below {:.4}.</p>\n<h2>Replay of the decisions already recorded</h2><p>{} of {} would change; {} of those would become accepts.</p>\n",
            evidence.old.high,
            evidence.old.low,
            evidence.new.high,
            evidence.new.low,
            evidence.replay.changed,
            evidence.replay.total,
            evidence.replay.now_accepted
        ));
        if !evidence.replay.flips.is_empty() {
            body.push_str("<table><tr><th>when</th><th>what</th><th>who</th><th>score</th><th>was</th><th>would be</th></tr>\n");
            for (past, after) in &evidence.replay.flips {
                body.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{:?}</td><td>{after:?}</td></tr>\n",
                    escape(&past.at),
                    escape(&past.what),
                    escape(past.person.as_deref().unwrap_or("(deleted)")),
                    past.score,
                    past.decision
                ));
            }
            body.push_str("</table>\n");
        }
        match &evidence.scores {
            Some(scores) => body.push_str(&evaluation_section(scores, evidence.new)?),
            None => body.push_str("<p>No evaluation scores were attached: the change was proposed on the replay alone.</p>\n"),
        }
    } else if let Ok(gate) = serde_json::from_value::<GateReport>(proposal.evidence.clone()) {
        body.push_str(&format!(
            "<h2>Gate</h2><p>{} held-out identities, {} references each; {}.</p>\n<table><tr><th>model</th><th>skilled EER</th><th>skilled FAR at {:.4}</th><th>other-writer EER</th></tr>\n",
            gate.heldout_identities,
            gate.references,
            if gate.passed { "passed".to_string() } else { format!("refused: {}", escape(&gate.reasons.join("; "))) },
            gate.threshold
        ));
        for (role, figures) in [("candidate", &gate.candidate), ("active", &gate.active)] {
            let skilled = figures.skilled.as_ref();
            body.push_str(&format!(
                "<tr><td>{role}: {}</td><td>{}</td><td>{}</td><td>{:.2}%</td></tr>\n",
                escape(&figures.model),
                skilled.map_or("-".into(), |s| format!("{:.2}%", 100.0 * s.eer)),
                skilled.map_or("-".into(), |s| format!("{:.2}%", 100.0 * s.far_at_default)),
                100.0 * figures.random.eer
            ));
        }
        body.push_str("</table>\n");
        let bands = Bands {
            low: gate.threshold,
            high: gate.threshold,
        };
        body.push_str(&evaluation_section(&gate.candidate_scores, bands)?);
    } else {
        body.push_str(&format!(
            "<h2>Evidence</h2><pre>{}</pre>\n",
            escape(&serde_json::to_string_pretty(&proposal.evidence).unwrap_or_default())
        ));
    }
    Ok(page(&format!("Vouch: proposal #{}", proposal.id), &body))
}

/// Writes proposal `id`'s report into `dir` as `proposal-ID.html` (whole or not at all).
pub fn save_proposal_report(store: &Store, id: i64, dir: &Path) -> Result<std::path::PathBuf> {
    let html = proposal_report(&store.proposal(id)?)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(e, dir))?;
    let path = dir.join(format!("proposal-{id}.html"));
    let partial = dir.join(format!(".proposal-{id}.html.{}", std::process::id()));
    std::fs::write(&partial, html).map_err(|e| Error::io(e, &partial))?;
    std::fs::rename(&partial, &path).map_err(|e| Error::io(e, &path))?;
    Ok(path)
}
