//! The window's one worker thread: it owns the models and the database, takes requests
//! from a bounded channel and answers on another, waking the window after each answer.
//! The UI thread never decodes an image, runs a network or touches SQLite; the worker
//! never waits on the UI for progress (a progress report that finds the channel full is
//! dropped: the next one says more).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use image::RgbImage;

use crate::context::Context;
use crate::dataset::LabelledScan;
use crate::eval::standards::SiteLoad;
use crate::eval::verification::{self, Replay, ScoreSet, WORKBENCH_REFERENCES};
use crate::face::FaceModels;
use crate::face::liveness::Liveness;
use crate::gallery::Gallery;
use crate::signature::SignatureModel;
use crate::store::{GalleryChange, GalleryFeed};
use crate::store::{Person, Proposal, Session, Store};
use crate::types::{Bands, Modality, Permission, Role, counted};
use crate::workflow::governance::{self, GateReport, Reembedding};
use crate::workflow::kiosk::{self, KioskEvent, KioskLoop, KioskModels, KioskStep, SeenFace};
use crate::workflow::{
    self, CheckinReport, EnrollReport, EnrollRequest, Progress, SignatureVerifyReport,
};

/// What a failed camera frame is called in `Reply::Failed`: the next may be sent.
pub const CAMERA_FRAME_FAILURE: &str = "the camera frame";
/// What a worker that could not open the database or the models calls its failure: it
/// serves nothing after it.
pub const START_FAILURE: &str = "starting";

/// Requests the worker serves, one at a time, in order.
pub enum Request {
    /// One camera frame through the kiosk loop (`workflow::kiosk::KioskLoop`): faces,
    /// prompts, and the punch or refusal when the frames agree.
    KioskFrame {
        frame: RgbImage,
    },
    /// The PIN typed when the kiosk asked for one.
    KioskPin {
        pin: String,
    },
    /// Punch from an image file, as `vouch checkin` does (the file is decoded here).
    CheckinFile {
        path: PathBuf,
    },
    /// Save a camera frame as a reference photo for enrollment.
    Capture {
        frame: RgbImage,
    },
    /// Set an enrolled person's kiosk PIN.
    SetPin {
        external_id: String,
        pin: String,
    },
    /// A camera frame for a coached capture (`enroll::coach_frame`); `first` starts a new
    /// capture. When enough frames were seen, the best few are saved as reference photos.
    CoachFrame {
        frame: RgbImage,
        first: bool,
    },
    EnrollFace {
        request: EnrollRequest,
        force: bool,
    },
    EnrollSignature {
        request: EnrollRequest,
    },
    /// New references replace all of an enrolled person's.
    Reenroll {
        person_id: i64,
        images: Vec<PathBuf>,
    },
    /// Live quality feedback on one reference photo before enrolling.
    AssessFace {
        path: PathBuf,
    },
    People {
        modality: Modality,
    },
    Delete {
        person_id: i64,
    },
    /// The signature desk: references of an account against a questioned scan.
    CheckSignature {
        external_id: String,
        scan: PathBuf,
    },
    /// Genuine and impostor scores for the threshold workbench.
    Scores {
        modality: Modality,
        manifest: Option<PathBuf>,
    },
    /// What the bands would change among the recorded decisions.
    Replay {
        modality: Modality,
        bands: Bands,
    },
    /// Proposes bands, with the workbench's scores as evidence.
    ProposeBands {
        modality: Modality,
        bands: Bands,
        scores: Option<ScoreSet>,
    },
    /// Proposes one person's threshold offset, with the workbench's scores as evidence.
    ProposeOffset {
        modality: Modality,
        person_id: i64,
        offset: f32,
        scores: Option<ScoreSet>,
    },
    ProposeRepeatWindow {
        minutes: i64,
    },
    ProposeApprovers {
        required: u8,
    },
    /// This machine's database from its next start (`vouch.toml`), tried first.
    SwitchDatabase(crate::context::SiteConfig),
    Bands {
        modality: Modality,
    },
    /// The enrolled gallery's size and the kiosk's punches a day.
    SiteLoad,
    /// Each person's local days between two dates (inclusive).
    Hours {
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    },
    /// A supervisor adds a forgotten punch (`Store::correct_attendance`).
    CorrectPunch {
        external_id: String,
        kind: crate::types::PunchKind,
        at: chrono::DateTime<chrono::Utc>,
        reason: String,
    },
    /// Save a proposal's evidence as an HTML report beside the database.
    SaveReport {
        id: i64,
    },
    /// What a training run starts from: the active model, and the enrolled signatures
    /// written out as scans under `enrolled_dir` when asked for.
    PrepareTraining {
        enrolled_dir: Option<PathBuf>,
    },
    /// Run the activation gate on a trained signature model against held-out scans and,
    /// when it passes, propose it (its templates are made first).
    GateAndPropose {
        model: PathBuf,
        heldout: PathBuf,
    },
    /// Propose going back to an earlier (or the shipped) signature model.
    ProposeRollback {
        model: PathBuf,
    },
    Proposals,
    Approve {
        id: i64,
    },
    Reject {
        id: i64,
    },
    /// Logging in or out.
    Access(AccessRequest),
}

/// The requests that change who is logged in.
pub enum AccessRequest {
    Login {
        name: String,
        secret: String,
    },
    Logout,
    /// On a database without operators: the first supervisor, then logged in.
    CreateFirstSupervisor {
        name: String,
        secret: String,
    },
}

impl Request {
    /// What the session must be allowed; `None` for what the unattended kiosk does
    /// (a camera punch) and for logging in and out.
    fn permission(&self) -> Option<Permission> {
        use Permission::*;
        match self {
            Request::KioskFrame { .. } | Request::KioskPin { .. } | Request::Access(_) => None,
            Request::CheckinFile { .. } => Some(Administer),
            Request::Capture { .. }
            | Request::CoachFrame { .. }
            | Request::SetPin { .. }
            | Request::EnrollFace { .. }
            | Request::EnrollSignature { .. }
            | Request::Reenroll { .. }
            | Request::AssessFace { .. }
            | Request::People { .. } => Some(Enroll),
            Request::Delete { .. } => Some(Administer),
            Request::CheckSignature { .. } => Some(Verify),
            Request::Scores { .. }
            | Request::Replay { .. }
            | Request::Bands { .. }
            | Request::SiteLoad
            | Request::SaveReport { .. }
            | Request::Hours { .. }
            | Request::Proposals => Some(Report),
            Request::CorrectPunch { .. } | Request::SwitchDatabase(_) => Some(Administer),
            Request::ProposeBands { .. }
            | Request::ProposeOffset { .. }
            | Request::ProposeRepeatWindow { .. }
            | Request::ProposeApprovers { .. }
            | Request::GateAndPropose { .. }
            | Request::ProposeRollback { .. }
            | Request::Approve { .. }
            | Request::Reject { .. } => Some(Govern),
            Request::PrepareTraining { .. } => Some(Train),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PersonRow {
    pub person: Person,
    /// The first reference crop, for a thumbnail.
    pub thumbnail: Option<image::RgbaImage>,
}

#[derive(Debug, Clone)]
pub struct TrainingInputs {
    pub active_model: PathBuf,
    pub enrolled: Vec<LabelledScan>,
}

pub enum Reply {
    Ready {
        status: String,
    },
    Failed {
        what: &'static str,
        error: String,
    },
    /// A login or a first supervisor refused: said in its dialog, which stays open, since
    /// the person who typed it is still looking there and not at the status bar.
    AccessRefused(String),
    /// The kiosk loop's answer to a camera frame.
    KioskStep(Box<KioskStep>),
    /// What a PIN typed at the kiosk led to.
    KioskPin(Result<KioskEvent, String>),
    /// The faces of an image file about to be punched from, and the decoded image.
    Analyzed {
        faces: Vec<SeenFace>,
        frame: RgbImage,
        /// Why no face was found, when none was (`face::quality::no_face_cause`).
        no_face: Option<&'static str>,
    },
    Captured(Result<PathBuf, String>),
    /// A kiosk PIN was set (who), or why not.
    PinSet(Result<String, String>),
    /// The coach's word on the last frame, the capture's progress, and the photos saved
    /// when it ended.
    Coached {
        advice: Option<&'static str>,
        seen: usize,
        good: usize,
        saved: Option<Result<Vec<PathBuf>, String>>,
    },
    CheckedIn(Result<CheckinReport, String>),
    /// Today's punches, oldest first, for the kiosk's list.
    TodaysPunches(Result<Vec<crate::store::AttendanceRecord>, String>),
    Enrolled(Result<EnrollReport, String>),
    Assessed {
        path: PathBuf,
        verdict: Result<String, String>,
    },
    People(Vec<PersonRow>),
    Deleted {
        person_id: i64,
    },
    SignatureChecked(Result<SignatureVerifyReport, String>),
    Progress(Progress),
    Scores(Result<ScoreSet, String>),
    Replayed(Replay),
    /// A modality's bands, and each person's offset from them.
    Bands {
        bands: Bands,
        offsets: std::collections::BTreeMap<i64, f32>,
    },
    SiteLoad(SiteLoad),
    Hours(Result<crate::attendance::PeriodReport, String>),
    Corrected(Result<crate::store::AttendanceRecord, String>),
    TrainingPrepared(Result<TrainingInputs, String>),
    /// The activation gate's figures (whether or not it passed).
    Gated(Result<Box<GateReport>, String>),
    /// A proposal was made, approved or rejected; the list as it now stands follows.
    Governed(Result<Proposal, String>),
    Proposals(Governance),
    ReportSaved(Result<PathBuf, String>),
    /// The config file that now names this machine's database, or why it was not changed.
    DatabaseSwitched(Result<PathBuf, String>),
    /// On a shared server: whether this kiosk has it now, and what its outbox keeps for
    /// it (punches and audit rows made while it was away). Sent when either changes.
    Connection {
        online: bool,
        waiting: usize,
    },
    /// Who is logged in now (`None`: locked), and whether operator accounts exist.
    Session {
        operator: Option<(String, Option<Role>)>,
        accounts: bool,
    },
}

/// The governed changes, for the Changes tab.
#[derive(Debug, Clone)]
pub struct Governance {
    pub proposals: Vec<Proposal>,
    pub approvers_required: u8,
    pub repeat_minutes: i64,
    /// Model files once active, and the shipped one: where a rollback may go.
    pub earlier_models: Vec<(String, String)>,
    pub active_model: PathBuf,
}

pub struct WorkerHandle {
    pub requests: SyncSender<Request>,
    pub replies: Receiver<Reply>,
    pub cancel: Arc<AtomicBool>,
}

/// How often an idle worker on a shared server follows the site and sends its outbox.
const KEEP_IN_TOUCH: std::time::Duration = std::time::Duration::from_secs(2);

/// The worker's side of the reply channel.
struct Replies<W: Fn()> {
    replies: SyncSender<Reply>,
    wake: W,
}

impl<W: Fn()> Replies<W> {
    /// Sends a result; false when the window has gone.
    fn send(&self, reply: Reply) -> bool {
        let delivered = self.replies.send(reply).is_ok();
        (self.wake)();
        delivered
    }

    fn progress(&self, progress: Progress) {
        match self.replies.try_send(Reply::Progress(progress)) {
            Ok(()) => (self.wake)(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Starts the worker; `wake` is called after every reply.
pub fn spawn(context: Context, wake: impl Fn() + Send + 'static) -> std::io::Result<WorkerHandle> {
    let (requests, inbox) = sync_channel::<Request>(8);
    let (replies_tx, replies) = sync_channel::<Reply>(64);
    let cancel = Arc::new(AtomicBool::new(false));
    let cancelled = cancel.clone();
    std::thread::Builder::new()
        .name("vouch-worker".into())
        .spawn(move || {
            let reply_to = Replies {
                replies: replies_tx,
                wake,
            };
            let mut worker = match Worker::open(&context) {
                Ok(worker) => worker,
                Err(error) => {
                    reply_to.send(Reply::Failed {
                        what: START_FAILURE,
                        error,
                    });
                    return;
                }
            };
            if let Err(error) = worker.catch_up(&cancelled, &reply_to) {
                reply_to.send(Reply::Failed {
                    what: "re-embedding the enrolled references",
                    error,
                });
            }
            if let Err(error) = worker.check_audit() {
                reply_to.send(Reply::Failed {
                    what: "the database fails its audit",
                    error,
                });
            }
            // Who is here before "ready": a window that shows the models loaded also
            // shows the tabs its operator may use.
            reply_to.send(worker.session_reply());
            reply_to.send(Reply::Ready {
                status: worker.status(),
            });
            reply_to.send(Reply::TodaysPunches(
                workflow::todays_punches(&worker.store).map_err(text),
            ));
            loop {
                match inbox.recv_timeout(KEEP_IN_TOUCH) {
                    Ok(request) => {
                        cancelled.store(false, std::sync::atomic::Ordering::Relaxed);
                        if !worker.serve(request, &cancelled, &reply_to) {
                            break;
                        }
                    }
                    // An idle kiosk still follows the others and empties its outbox.
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if !worker.keep_in_touch(&reply_to) {
                            break;
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        })?;
    Ok(WorkerHandle {
        requests,
        replies,
        cancel,
    })
}

struct Worker {
    faces: FaceModels,
    /// Passive liveness for the kiosk's camera frames, or why there is none (then the
    /// kiosk cannot punch: nothing says the face is live).
    liveness: Result<Liveness, String>,
    /// The kiosk's memory between camera frames (the followed face, the attacks lately).
    kiosk: KioskLoop,
    /// A coached capture at the camera for enrollment, while one runs.
    capture_session: Option<crate::enroll::CaptureSession>,
    signatures: Result<SignatureModel, String>,
    store: Store,
    gallery: Gallery,
    /// On a shared server: what the site's other kiosks and desks change in the gallery.
    feed: Option<GalleryFeed>,
    /// A change could not be read: the whole gallery is read again at the next chance.
    gallery_behind: bool,
    /// The last `Reply::Connection` sent: (online, waiting).
    connection: (bool, usize),
    context: Context,
    /// `None` while locked: only the kiosk's camera punches run.
    session: Option<Session>,
}

fn text(error: crate::Error) -> String {
    error.to_string()
}

/// The loaded signature model, or why there is none.
fn signature_model(loaded: &Result<SignatureModel, String>) -> Result<&SignatureModel, String> {
    loaded
        .as_ref()
        .map_err(|error| format!("no signature model: {error}"))
}

impl Worker {
    fn open(context: &Context) -> Result<Self, String> {
        let faces = context.load_faces().map_err(text)?;
        let mut store = context.open_store().map_err(text)?;
        let signatures = context.load_signature_model(Some(&store)).map_err(text);
        // Listening first, then reading the gallery: nothing changed in between is missed.
        let feed = context
            .server_url()
            .map(GalleryFeed::listen)
            .transpose()
            .map_err(|e| e.to_string())?;
        let mut gallery =
            Gallery::of_faces(&store, &faces.model_id()).map_err(|e| e.to_string())?;
        // A kiosk on a shared server keeps working when it cannot reach it.
        if feed.is_some() {
            gallery.keep_roster(&store).map_err(text)?;
            store
                .keep_outbox(&context.outbox_path(&store))
                .map_err(|e| e.to_string())?;
        }
        // Without operator accounts the window is a single-user desk, as the CLI is.
        let session = (!store.has_operators().map_err(|e| e.to_string())?)
            .then(|| Session::single_user(&context.operator));
        let liveness = Liveness::load(&context.models_dir, &context.device).map_err(text);
        if let Err(error) = &liveness {
            tracing::error!(%error, "no passive liveness: the kiosk cannot punch");
        }
        Ok(Self {
            faces,
            liveness,
            kiosk: KioskLoop::default(),
            capture_session: None,
            signatures,
            store,
            gallery,
            feed,
            gallery_behind: false,
            connection: (true, 0),
            context: context.clone(),
            session,
        })
    }

    /// Templates that only an earlier model embedded (an update changed the weights, the
    /// recipe or the signature scorer) are re-embedded from their stored crops before the
    /// kiosk or the desk opens, so nobody enrolled drops out. A cancelled run keeps what
    /// it finished and the next start does the rest.
    fn catch_up(
        &mut self,
        cancel: &AtomicBool,
        reply_to: &Replies<impl Fn()>,
    ) -> Result<(), String> {
        let operator = self.context.operator.clone();
        let reembed = |store: &mut Store, embedder: &dyn crate::models::CropEmbedder| {
            let report = workflow::reembed(store, embedder, &operator, cancel, &mut |p| {
                reply_to.progress(p)
            })
            .map_err(text)?;
            if report.templates > 0 {
                tracing::info!(
                    templates = report.templates,
                    model = %report.model,
                    "re-embedded the templates of an earlier model"
                );
            }
            Ok::<_, String>(report)
        };
        // The kiosk's gallery follows the faces before the signatures are tried, so a
        // signature model that fails does not leave the kiosk on stale templates.
        let faces = reembed(&mut self.store, &self.faces)?;
        if faces.templates > 0 {
            self.reload_gallery()?;
        }
        let signatures = match &self.signatures {
            Ok(signatures) => Some(reembed(&mut self.store, signatures)?),
            Err(_) => None,
        };
        let refused: Vec<String> = std::iter::once(faces)
            .chain(signatures)
            .filter_map(|report| report.refused_summary())
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(refused.join("; "))
        }
    }

    /// The whole audit (chain, anchor, ledger, seals) before the first punch: a database
    /// changed outside Vouch is said so on screen, in red, at once.
    fn check_audit(&self) -> Result<(), String> {
        let report = self.store.audit_verify().map_err(|e| e.to_string())?;
        if report.intact {
            return Ok(());
        }
        Err(format!(
            "{} (`vouch audit verify` lists every problem)",
            report
                .problems
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ))
    }

    fn status(&self) -> String {
        let signature = match &self.signatures {
            Ok(model) => model.model_id(),
            Err(error) => format!("not loaded ({error})"),
        };
        let liveness = match &self.liveness {
            Ok(_) => String::new(),
            Err(error) => format!(" · no liveness check, so no camera punches ({error})"),
        };
        format!(
            "Database {} · face model {} · signature model {} · {}{liveness}",
            self.store.path().display(),
            self.faces.model_id(),
            signature,
            counted(self.gallery.people(), "enrolled face")
        )
    }

    /// The session a request runs under, if it may run: `None` for what the unattended
    /// kiosk does; the logged-in operator (or the single-user desk) when the role allows.
    /// A refusal says "not allowed"; a store that could not say is another failure.
    fn authorized(
        &self,
        permission: Option<Permission>,
    ) -> Result<Option<Session>, (&'static str, String)> {
        let Some(permission) = permission else {
            return Ok(self.session.clone());
        };
        let Some(session) = &self.session else {
            return Err((
                "not allowed",
                format!("log in to {}", permission.describe()),
            ));
        };
        match self.store.authorize(session, permission) {
            Ok(()) => Ok(Some(session.clone())),
            Err(error @ crate::store::StoreError::NotAllowed(_)) => {
                Err(("not allowed", error.to_string()))
            }
            Err(error) => Err(("checking who may do this", error.to_string())),
        }
    }

    fn session_reply(&self) -> Reply {
        Reply::Session {
            operator: self
                .session
                .as_ref()
                .map(|s| (s.name().to_string(), s.role())),
            accounts: self.store.has_operators().unwrap_or(true),
        }
    }

    /// The reads behind the workbench and the reports.
    fn read(&self, request: Request) -> Reply {
        let failed = |what: &'static str, error: String| Reply::Failed { what, error };
        match request {
            Request::Replay { modality, bands } => {
                match governance::replay_bands(&self.store, modality, bands) {
                    Ok(replayed) => Reply::Replayed(replayed),
                    Err(error) => failed("reading past decisions", error.to_string()),
                }
            }
            Request::Bands { modality } => match self
                .store
                .bands(modality)
                .and_then(|bands| Ok((bands, self.store.person_offsets()?)))
            {
                Ok((bands, offsets)) => Reply::Bands { bands, offsets },
                Err(error) => failed("reading the threshold", error.to_string()),
            },
            Request::SiteLoad => match workflow::site_load(&self.store, &self.gallery) {
                Ok(site) => Reply::SiteLoad(site),
                Err(error) => failed("reading the site's traffic", error.to_string()),
            },
            Request::Hours { from, to } => {
                Reply::Hours(crate::attendance::days_between(&self.store, from, to).map_err(text))
            }
            Request::SaveReport { id } => Reply::ReportSaved(
                workflow::governance::save_proposal_report(
                    &self.store,
                    id,
                    &self.context.reports_dir(),
                )
                .map_err(text),
            ),
            _ => failed("reading", "not a read request".into()),
        }
    }

    /// Serves one request; false when the window has gone.
    fn serve(
        &mut self,
        request: Request,
        cancel: &AtomicBool,
        reply_to: &Replies<impl Fn()>,
    ) -> bool {
        if !self.keep_in_touch(reply_to) {
            return false;
        }
        let session = match self.authorized(request.permission()) {
            Ok(session) => session,
            Err((what, error)) => return reply_to.send(Reply::Failed { what, error }),
        };
        // An unattended kiosk's punches are the kiosk's.
        let actor = session
            .as_ref()
            .map_or_else(|| "kiosk".to_string(), |s| s.name().to_string());
        let reply = match request {
            Request::KioskFrame { frame } => self.kiosk_frame(&frame, &actor),
            Request::KioskPin { pin } => Reply::KioskPin(
                workflow::kiosk_repeat_window(&self.store, &self.gallery)
                    .and_then(|window| self.kiosk.enter_pin(&mut self.store, &pin, window, &actor))
                    .map_err(text),
            ),
            Request::CheckinFile { path } => {
                let analyzed = self.analyze_file(&path);
                let failed = matches!(analyzed, Reply::Failed { .. });
                if !reply_to.send(analyzed) {
                    return false;
                }
                if failed {
                    return true;
                }
                Reply::CheckedIn(self.checkin_file(&path, &actor))
            }
            Request::Capture { frame } => {
                Reply::Captured(self.capture(&[frame]).map(|mut saved| saved.remove(0)))
            }
            Request::CoachFrame { frame, first } => self.coach(frame, first),
            other @ (Request::SetPin { .. }
            | Request::CorrectPunch { .. }
            | Request::SwitchDatabase(_)) => self.amend(other, &actor),
            other @ (Request::EnrollFace { .. }
            | Request::EnrollSignature { .. }
            | Request::Reenroll { .. }
            | Request::AssessFace { .. }
            | Request::People { .. }
            | Request::Delete { .. }) => self.enrollment(other, &actor),
            Request::CheckSignature { external_id, scan } => {
                let store = &mut self.store;
                Reply::SignatureChecked(signature_model(&self.signatures).and_then(|model| {
                    workflow::verify_signature(model, store, &external_id, &scan, &actor)
                        .map_err(text)
                }))
            }
            Request::Scores { modality, manifest } => {
                Reply::Scores(self.scores(modality, manifest, cancel, reply_to))
            }
            other @ (Request::Replay { .. }
            | Request::Bands { .. }
            | Request::SiteLoad
            | Request::Hours { .. }
            | Request::SaveReport { .. }) => self.read(other),
            Request::PrepareTraining { enrolled_dir } => {
                Reply::TrainingPrepared(self.prepare_training(enrolled_dir))
            }
            Request::Access(request) => {
                if let Err(refusal) = self.access(request)
                    && !reply_to.send(Reply::AccessRefused(refusal))
                {
                    return false;
                }
                self.session_reply()
            }
            Request::Proposals => self.proposals_reply(),
            other @ (Request::ProposeBands { .. }
            | Request::ProposeOffset { .. }
            | Request::ProposeRepeatWindow { .. }
            | Request::ProposeApprovers { .. }
            | Request::GateAndPropose { .. }
            | Request::ProposeRollback { .. }
            | Request::Approve { .. }
            | Request::Reject { .. }) => {
                let session = session.expect("governed requests need a session");
                let governed = self.govern(other, &session, cancel, reply_to);
                if !reply_to.send(governed) {
                    return false;
                }
                self.proposals_reply()
            }
        };
        reply_to.send(reply)
    }

    /// Single writes outside governance: a kiosk PIN, a corrected punch, the database
    /// this machine opens from its next start.
    fn amend(&mut self, request: Request, actor: &str) -> Reply {
        match request {
            Request::SetPin { external_id, pin } => Reply::PinSet(
                self.store
                    .person_by_external_id(&external_id, Modality::Face)
                    .and_then(|person| {
                        self.store.set_pin(person.id, &pin, actor)?;
                        Ok(format!(
                            "Kiosk PIN set for {} ({})",
                            person.name, person.external_id
                        ))
                    })
                    .map_err(|e| e.to_string()),
            ),
            Request::CorrectPunch {
                external_id,
                kind,
                at,
                reason,
            } => Reply::Corrected(
                self.store
                    .correct_attendance(&external_id, kind, at, &reason, actor)
                    .map_err(|e| e.to_string()),
            ),
            Request::SwitchDatabase(site) => Reply::DatabaseSwitched(
                self.context
                    .switch_database(&mut self.store, &site, actor)
                    .map_err(text),
            ),
            _ => Reply::Failed {
                what: "amending",
                error: "not an amendment".into(),
            },
        }
    }

    /// The enrollment tab's requests: enrol, re-enrol, check a photo, list, delete.
    fn enrollment(&mut self, request: Request, actor: &str) -> Reply {
        match request {
            Request::EnrollFace { request, force } => Reply::Enrolled(
                workflow::enroll_face(
                    &self.faces,
                    &mut self.store,
                    &mut self.gallery,
                    &request,
                    force,
                    actor,
                )
                .map_err(text),
            ),
            Request::EnrollSignature { request } => {
                let store = &mut self.store;
                Reply::Enrolled(signature_model(&self.signatures).and_then(|model| {
                    workflow::enroll_signature(model, store, &request, actor).map_err(text)
                }))
            }
            Request::Reenroll { person_id, images } => {
                Reply::Enrolled(self.reenroll(person_id, images, actor))
            }
            Request::AssessFace { path } => {
                let verdict = self.assess(&path);
                Reply::Assessed { path, verdict }
            }
            Request::People { modality } => match self.people(modality) {
                Ok(rows) => Reply::People(rows),
                Err(error) => Reply::Failed {
                    what: "listing people",
                    error,
                },
            },
            Request::Delete { person_id } => {
                match self
                    .store
                    .delete_person(person_id, actor)
                    .map_err(|e| e.to_string())
                    .and_then(|()| self.reload_gallery())
                {
                    Ok(()) => Reply::Deleted { person_id },
                    Err(error) => Reply::Failed {
                        what: "deleting",
                        error,
                    },
                }
            }
            _ => unreachable!("only enrollment requests come here"),
        }
    }

    /// Logging in and out, and the first supervisor; a refusal is the reply to send
    /// before the session as it stands.
    fn access(&mut self, request: AccessRequest) -> Result<(), String> {
        let failed = |what: &str, error: crate::store::StoreError| format!("{what}: {error}");
        match request {
            AccessRequest::Login { name, secret } => {
                self.session = Some(
                    self.store
                        .login(&name, &secret)
                        .map_err(|e| failed("Not logged in", e))?,
                );
            }
            AccessRequest::Logout => {
                if self.store.has_operators().unwrap_or(true) {
                    self.session = None;
                }
            }
            AccessRequest::CreateFirstSupervisor { name, secret } => {
                let desk = Session::single_user(&self.context.operator);
                let created = self
                    .store
                    .add_operator(&name, Role::Supervisor, &secret, &desk)
                    .and_then(|_| self.store.login(&name, &secret))
                    .map_err(|e| failed("The supervisor was not created", e))?;
                self.session = Some(created);
            }
        }
        Ok(())
    }

    /// Proposals, approvals and the model gate; the caller sends the list afterwards.
    fn govern(
        &mut self,
        request: Request,
        session: &Session,
        cancel: &AtomicBool,
        reply_to: &Replies<impl Fn()>,
    ) -> Reply {
        let device = self.context.device.clone();
        let shipped = self.context.shipped_signature_model();
        let mut progress = |p| reply_to.progress(p);
        let mut reembedding = Reembedding {
            device: &device,
            cancel,
            progress: &mut progress,
        };
        let store = &mut self.store;
        let governed = match request {
            Request::ProposeBands {
                modality,
                bands,
                scores,
            } => governance::propose_bands(store, session, modality, bands, scores.as_ref()),
            Request::ProposeOffset {
                modality,
                person_id,
                offset,
                scores,
            } => governance::propose_person_offset(
                store,
                session,
                modality,
                person_id,
                offset,
                scores.as_ref(),
            ),
            Request::ProposeRepeatWindow { minutes } => {
                governance::propose_repeat_window(store, session, minutes)
            }
            Request::ProposeApprovers { required } => store
                .propose(
                    crate::store::Change::Approvers { required },
                    serde_json::json!({ "old": store.approvers_required().ok() }),
                    session,
                )
                .map_err(Into::into),
            Request::ProposeRollback { model } => {
                governance::propose_rollback(store, session, &model, &shipped, &mut reembedding)
            }
            Request::Approve { id } => governance::approve(store, session, id, &mut reembedding),
            Request::Reject { id } => store.reject(id, session).map_err(Into::into),
            Request::GateAndPropose { model, heldout } => {
                let gated = self.gate(&model, &heldout, cancel, reply_to);
                let passed = gated.as_ref().is_ok_and(|g| g.passed);
                let report = gated.clone();
                if !reply_to.send(Reply::Gated(gated.map(Box::new))) || !passed {
                    return Reply::Governed(Err("the model did not pass its gate".into()));
                }
                let gate = report.expect("passed");
                let mut progress = |p| reply_to.progress(p);
                let mut reembedding = Reembedding {
                    device: &device,
                    cancel,
                    progress: &mut progress,
                };
                governance::propose_signature_model(
                    &mut self.store,
                    session,
                    &model,
                    &gate,
                    &mut reembedding,
                )
            }
            _ => unreachable!("only governed requests come here"),
        };
        let reply = Reply::Governed(governed.map_err(|error| match error {
            crate::Error::Cancelled => "cancelled; nothing changed".to_string(),
            other => other.to_string(),
        }));
        if let Err(error) = self.reload_signature_model() {
            tracing::warn!(%error, "the active signature model could not be loaded");
        }
        reply
    }

    fn gate(
        &self,
        model: &std::path::Path,
        heldout: &std::path::Path,
        cancel: &AtomicBool,
        reply_to: &Replies<impl Fn()>,
    ) -> Result<GateReport, String> {
        let active = signature_model(&self.signatures)?;
        let scans = crate::dataset::load(heldout).map_err(text)?;
        let bands = self
            .store
            .bands(Modality::Signature)
            .map_err(|e| e.to_string())?;
        governance::gate_signature_model(
            model,
            active,
            &scans,
            bands,
            &self.context.device,
            cancel,
            &mut |done, total| {
                reply_to.progress(Progress {
                    done,
                    total,
                    current: "scoring the held-out scans".into(),
                })
            },
        )
        .map_err(text)
    }

    fn reenroll(
        &mut self,
        person_id: i64,
        images: Vec<PathBuf>,
        actor: &str,
    ) -> Result<crate::workflow::EnrollReport, String> {
        let person = self.store.person(person_id).map_err(|e| e.to_string())?;
        let request = EnrollRequest {
            name: person.name,
            external_id: person.external_id,
            images,
        };
        match person.modality {
            Modality::Face => workflow::reenroll_face(
                &self.faces,
                &mut self.store,
                &mut self.gallery,
                &request,
                actor,
            ),
            Modality::Signature => {
                let model = signature_model(&self.signatures)?;
                workflow::reenroll_signature(model, &mut self.store, &request, actor)
            }
        }
        .map_err(text)
    }

    /// The signature model in force, after a change may have made another one active.
    fn reload_signature_model(&mut self) -> Result<(), String> {
        let path = self
            .context
            .signature_model_path(Some(&self.store))
            .map_err(text)?;
        let current = self.signatures.as_ref().ok().map(|m| m.model_id());
        let loaded = SignatureModel::load(&path, &self.context.device).map_err(text)?;
        if current.as_deref() != Some(loaded.model_id().as_str()) {
            self.signatures = Ok(loaded);
        }
        Ok(())
    }

    fn proposals_reply(&self) -> Reply {
        let listed = (|| -> crate::Result<Governance> {
            let mut earlier_models = self.store.signature_model_history()?;
            let shipped = self.context.shipped_signature_model();
            earlier_models.push((shipped.display().to_string(), "shipped".into()));
            Ok(Governance {
                proposals: self.store.proposals()?,
                approvers_required: self.store.approvers_required()?,
                repeat_minutes: self.store.repeat_window()?.num_minutes(),
                earlier_models,
                active_model: self.context.signature_model_path(Some(&self.store))?,
            })
        })();
        match listed {
            Ok(governance) => Reply::Proposals(governance),
            Err(error) => Reply::Failed {
                what: "listing proposals",
                error: error.to_string(),
            },
        }
    }

    /// A camera frame through the kiosk loop.
    fn kiosk_frame(&mut self, frame: &RgbImage, actor: &str) -> Reply {
        let models = KioskModels {
            faces: &self.faces,
            liveness: self.liveness.as_ref().ok(),
        };
        let stepped =
            workflow::kiosk_repeat_window(&self.store, &self.gallery).and_then(|window| {
                self.kiosk
                    .step(models, &mut self.store, &self.gallery, frame, window, actor)
            });
        match stepped {
            Ok(step) => Reply::KioskStep(Box::new(step)),
            Err(error) => Reply::Failed {
                what: CAMERA_FRAME_FAILURE,
                error: error.to_string(),
            },
        }
    }

    /// The faces of an image file, named, before it is punched from.
    fn analyze_file(&self, path: &std::path::Path) -> Reply {
        let analyzed = crate::imageio::load_rgb(path).and_then(|frame| {
            let faces = self.faces.analyze(&frame)?;
            let no_face = faces
                .is_empty()
                .then(|| crate::face::quality::no_face_cause(&frame));
            let seen = faces
                .into_iter()
                .map(|face| {
                    Ok(SeenFace {
                        nearest: kiosk::nearest(&self.store, &self.gallery, &face.embedding)?,
                        bbox: face.bbox,
                        landmarks: face.landmarks,
                        liveness: None,
                    })
                })
                .collect::<crate::Result<Vec<_>>>()?;
            Ok(Reply::Analyzed {
                faces: seen,
                frame,
                no_face,
            })
        });
        analyzed.unwrap_or_else(|error| Reply::Failed {
            what: "reading the image",
            error: error.to_string(),
        })
    }

    fn checkin_file(
        &mut self,
        path: &std::path::Path,
        actor: &str,
    ) -> Result<CheckinReport, String> {
        let picture = crate::imageio::load_rgb(path).map_err(text)?;
        let window = workflow::kiosk_repeat_window(&self.store, &self.gallery).map_err(text)?;
        workflow::checkin_photo(
            &self.faces,
            &mut self.store,
            &self.gallery,
            &picture,
            &path.display().to_string(),
            window,
            actor,
        )
        .map_err(text)
    }

    /// Saves camera frames as reference photos in the captures folder.
    fn capture(&self, frames: &[RgbImage]) -> Result<Vec<PathBuf>, String> {
        let dir = self.context.captures_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S%.3f");
        frames
            .iter()
            .enumerate()
            .map(|(index, frame)| {
                let path = dir.join(format!("{stamp}-{index}.png"));
                frame
                    .save(&path)
                    .map(|()| path.clone())
                    .map_err(|e| format!("cannot save the capture {}: {e}", path.display()))
            })
            .collect()
    }

    /// One frame of a coached capture; the best frames saved when it is done.
    fn coach(&mut self, frame: RgbImage, first: bool) -> Reply {
        let coaching = match crate::enroll::coach_frame(&self.faces, &frame) {
            Ok(coaching) => coaching,
            Err(error) => {
                return Reply::Failed {
                    what: CAMERA_FRAME_FAILURE,
                    error: error.to_string(),
                };
            }
        };
        if first {
            self.capture_session = None;
        }
        let session = self.capture_session.get_or_insert_default();
        let advice = session.offer(frame, &coaching);
        let (seen, good) = session.progress();
        let saved = session.done().then(|| {
            let best = self.capture_session.take().unwrap_or_default().best();
            self.capture(&best)
        });
        Reply::Coached {
            advice,
            seen,
            good,
            saved,
        }
    }
    fn assess(&self, path: &std::path::Path) -> Result<String, String> {
        let bytes = std::fs::read(path).map_err(|e| text(crate::Error::io(e, path)))?;
        let picture = crate::imageio::decode_rgb(&bytes, path).map_err(text)?;
        match crate::enroll::assess_face(&self.faces, &picture, &bytes).map_err(text)? {
            Ok(sample) => Ok(format!("good: one face, sharpness {:.0}", sample.sharpness)),
            Err(rejection) => Err(rejection.to_string()),
        }
    }

    /// Follows the site's other kiosks and desks, sends what the outbox kept once the
    /// server is back, and tells the window when either changes; false when the window has
    /// gone.
    fn keep_in_touch(&mut self, reply_to: &Replies<impl Fn()>) -> bool {
        let Some(online) = self.feed.as_ref().map(GalleryFeed::connected) else {
            return true;
        };
        self.follow_gallery();
        let mut waiting = self.store.outbox_waiting().unwrap_or(0);
        if online && waiting > 0 {
            let delivered = workflow::kiosk_repeat_window(&self.store, &self.gallery)
                .and_then(|window| Ok(self.store.deliver_outbox(window)?));
            match delivered {
                Ok(delivery) => {
                    tracing::info!(?delivery, "sent the outbox");
                    waiting = delivery.waiting;
                    // The list shows them as recorded now, each with its kind.
                    if delivery.recorded > 0
                        && !reply_to.send(Reply::TodaysPunches(
                            workflow::todays_punches(&self.store).map_err(text),
                        ))
                    {
                        return false;
                    }
                }
                Err(error) => tracing::debug!(%error, "the outbox could not be sent yet"),
            }
        }
        if (online, waiting) == self.connection {
            return true;
        }
        self.connection = (online, waiting);
        reply_to.send(Reply::Connection { online, waiting })
    }

    /// Brings the gallery up to what the other kiosks and desks changed. When the server
    /// cannot be read, the kiosk keeps matching against the gallery it has; the feed
    /// says "everything" once the server is back.
    fn follow_gallery(&mut self) {
        let Some(feed) = &self.feed else { return };
        let mut changes = feed.pending();
        if self.gallery_behind {
            changes.insert(0, GalleryChange::Everything);
        }
        for change in changes {
            let followed = self
                .gallery
                .follow(&self.store, &self.faces.model_id(), &change);
            self.gallery_behind = followed.is_err();
            if let Err(error) = followed {
                tracing::warn!(%error, "the gallery could not follow a change: keeping the last one until the server answers");
                break;
            }
        }
    }

    /// The whole gallery read again, with its roster when it keeps one.
    fn reload_gallery(&mut self) -> Result<(), String> {
        self.gallery
            .follow(
                &self.store,
                &self.faces.model_id(),
                &GalleryChange::Everything,
            )
            .map_err(text)
    }

    fn people(&self, modality: Modality) -> Result<Vec<PersonRow>, String> {
        let people = self
            .store
            .people(Some(modality))
            .map_err(|e| e.to_string())?;
        Ok(people
            .into_iter()
            .map(|person| {
                let thumbnail = self
                    .store
                    .first_crop(person.id)
                    .ok()
                    .flatten()
                    .and_then(|kept| crate::workflow::stored_crop_image(modality, &kept).ok())
                    .map(|image| image.thumbnail(288, 96).to_rgba8());
                PersonRow { person, thumbnail }
            })
            .collect())
    }

    /// Genuine and impostor scores: from a labelled manifest (signatures), or else from
    /// the enrolled gallery itself.
    fn scores(
        &self,
        modality: Modality,
        manifest: Option<PathBuf>,
        cancel: &AtomicBool,
        reply_to: &Replies<impl Fn()>,
    ) -> Result<ScoreSet, String> {
        let bands = self.store.bands(modality).map_err(|e| e.to_string())?;
        if let Some(manifest) = manifest {
            let samples = crate::dataset::load(&manifest).map_err(text)?;
            let mut progress = |done, total| {
                reply_to.progress(Progress {
                    done,
                    total,
                    current: match modality {
                        Modality::Face => "finding and embedding faces".into(),
                        Modality::Signature => "embedding scans".into(),
                    },
                })
            };
            let mut set = match modality {
                Modality::Face => verification::face_manifest_scores(
                    &self.faces,
                    &samples,
                    WORKBENCH_REFERENCES,
                    bands,
                    cancel,
                    &mut progress,
                ),
                Modality::Signature => verification::manifest_scores(
                    signature_model(&self.signatures)?,
                    &samples,
                    WORKBENCH_REFERENCES,
                    bands,
                    cancel,
                    &mut progress,
                ),
            }
            .map_err(text)?;
            set.source = format!("{} ({})", manifest.display(), set.source);
            return Ok(set);
        }
        let scorer = match modality {
            Modality::Face => governance::Scorer::Face(self.faces.model_id()),
            Modality::Signature => {
                governance::Scorer::Signature(signature_model(&self.signatures)?)
            }
        };
        governance::enrolled_scores(&self.store, &scorer, bands).map_err(text)
    }

    fn prepare_training(&self, enrolled_dir: Option<PathBuf>) -> Result<TrainingInputs, String> {
        let active_model = self
            .context
            .signature_model_path(Some(&self.store))
            .map_err(text)?;
        let enrolled = match enrolled_dir {
            Some(dir) => workflow::export_enrolled_signatures(&self.store, &dir).map_err(text)?,
            None => Vec::new(),
        };
        Ok(TrainingInputs {
            active_model,
            enrolled,
        })
    }
}
