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
use crate::eval::verification::{self, Replay, ScoreSet, WORKBENCH_REFERENCES};
use crate::face::FaceModels;
use crate::gallery::Gallery;
use crate::matching::{euclidean_distance, face_score};
use crate::signature::SignatureModel;
use crate::store::{Person, Store};
use crate::types::{Bands, Decision, Modality};
use crate::workflow::{
    self, Activation, CheckinReport, EnrollReport, EnrollRequest, Progress, SignatureVerifyReport,
};

/// Requests the worker serves, one at a time, in order.
pub enum Request {
    /// Find, embed and name the faces of a camera frame (kiosk).
    Analyze {
        frame: RgbImage,
    },
    /// Punch from an image file, as `vouch checkin` does (the file is decoded here).
    CheckinFile {
        path: PathBuf,
        window_minutes: i64,
    },
    /// Save a camera frame as a reference photo for enrollment.
    Capture {
        frame: RgbImage,
    },
    Checkin {
        embedding: Vec<f32>,
        window_minutes: i64,
    },
    EnrollFace {
        request: EnrollRequest,
        force: bool,
    },
    EnrollSignature {
        request: EnrollRequest,
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
    SaveBands {
        modality: Modality,
        bands: Bands,
    },
    Bands {
        modality: Modality,
    },
    /// What a training run starts from: the active model, and the enrolled signatures
    /// written out as scans under `enrolled_dir` when asked for.
    PrepareTraining {
        enrolled_dir: Option<PathBuf>,
    },
    /// Make a newly trained signature model the active one and re-embed the gallery.
    Activate {
        model: PathBuf,
    },
}

/// The nearest enrolled person to a face.
#[derive(Debug, Clone)]
pub struct Match {
    pub person_id: i64,
    pub name: String,
    pub score: f32,
    pub decision: Decision,
}

#[derive(Debug, Clone)]
pub struct FaceView {
    pub bbox: crate::face::BoundingBox,
    pub landmarks: Vec<crate::face::Point>,
    pub embedding: Vec<f32>,
    /// `None` when nobody is enrolled.
    pub nearest: Option<Match>,
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
    /// `subject` is the frame's subject (`face::subject_index`); `frame` is the decoded
    /// image when the request named a file.
    Analyzed {
        faces: Vec<FaceView>,
        subject: Option<usize>,
        frame: Option<RgbImage>,
    },
    Captured(Result<PathBuf, String>),
    CheckedIn(Result<CheckinReport, String>),
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
    BandsSaved(Bands),
    Bands(Bands),
    TrainingPrepared(Result<TrainingInputs, String>),
    Activated(Result<Activation, String>),
}

pub struct WorkerHandle {
    pub requests: SyncSender<Request>,
    pub replies: Receiver<Reply>,
    pub cancel: Arc<AtomicBool>,
}

/// The worker's side of the reply channel.
struct Outbox<W: Fn()> {
    replies: SyncSender<Reply>,
    wake: W,
}

impl<W: Fn()> Outbox<W> {
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
            let outbox = Outbox {
                replies: replies_tx,
                wake,
            };
            let mut worker = match Worker::open(&context) {
                Ok(worker) => worker,
                Err(error) => {
                    outbox.send(Reply::Failed {
                        what: "starting",
                        error,
                    });
                    return;
                }
            };
            if let Err(error) = worker.catch_up_faces(&cancelled, &outbox) {
                outbox.send(Reply::Failed {
                    what: "re-embedding the enrolled faces",
                    error,
                });
            }
            if let Err(error) = worker.check_audit() {
                outbox.send(Reply::Failed {
                    what: "the database fails its audit",
                    error,
                });
            }
            outbox.send(Reply::Ready {
                status: worker.status(),
            });
            for request in inbox {
                cancelled.store(false, std::sync::atomic::Ordering::Relaxed);
                if !worker.serve(request, &cancelled, &outbox) {
                    break;
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
    signatures: Result<SignatureModel, String>,
    store: Store,
    gallery: Gallery,
    context: Context,
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
        let store = context.open_store().map_err(text)?;
        let signatures = context.load_signature_model(Some(&store)).map_err(text);
        let gallery = Gallery::of_faces(&store, &faces.model_id()).map_err(|e| e.to_string())?;
        Ok(Self {
            faces,
            signatures,
            store,
            gallery,
            context: context.clone(),
        })
    }

    /// Templates that only an earlier face model embedded (an update changed the weights
    /// or the recipe) are re-embedded from their stored crops before the kiosk opens, so
    /// nobody enrolled drops out of the gallery. A cancelled run keeps what it finished
    /// and the next start does the rest.
    fn catch_up_faces(
        &mut self,
        cancel: &AtomicBool,
        outbox: &Outbox<impl Fn()>,
    ) -> Result<(), String> {
        let report = workflow::reembed(
            &mut self.store,
            &self.faces,
            &self.context.operator,
            cancel,
            &mut |p| outbox.progress(p),
        )
        .map_err(text)?;
        if report.templates > 0 {
            tracing::info!(
                templates = report.templates,
                model = %report.model,
                "re-embedded face templates of an earlier model"
            );
            self.reload_gallery()?;
        }
        Ok(())
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
        format!(
            "Database {} · face model {} · signature model {} · {} enrolled face(s)",
            self.store.path().display(),
            self.faces.model_id(),
            signature,
            self.gallery.people()
        )
    }

    /// Serves one request; false when the window has gone.
    fn serve(&mut self, request: Request, cancel: &AtomicBool, outbox: &Outbox<impl Fn()>) -> bool {
        let actor = self.context.operator.clone();
        let reply = match request {
            Request::Analyze { frame } => self.analyze(frame, false),
            Request::CheckinFile {
                path,
                window_minutes,
            } => {
                let analyzed = self.analyze_file(&path);
                let failed = matches!(analyzed, Reply::Failed { .. });
                if !outbox.send(analyzed) {
                    return false;
                }
                if failed {
                    return true;
                }
                Reply::CheckedIn(self.checkin_file(&path, window_minutes, &actor))
            }
            Request::Capture { frame } => Reply::Captured(self.capture(&frame)),
            Request::Checkin {
                embedding,
                window_minutes,
            } => Reply::CheckedIn(
                workflow::checkin(
                    &mut self.store,
                    &self.gallery,
                    &embedding,
                    chrono::Duration::minutes(window_minutes),
                    &actor,
                )
                .map_err(text),
            ),
            Request::EnrollFace { request, force } => Reply::Enrolled(
                workflow::enroll_face(
                    &self.faces,
                    &mut self.store,
                    &mut self.gallery,
                    &request,
                    force,
                    &actor,
                )
                .map_err(text),
            ),
            Request::EnrollSignature { request } => {
                let store = &mut self.store;
                Reply::Enrolled(signature_model(&self.signatures).and_then(|model| {
                    workflow::enroll_signature(model, store, &request, &actor).map_err(text)
                }))
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
                    .delete_person(person_id, &actor)
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
            Request::CheckSignature { external_id, scan } => {
                let store = &mut self.store;
                Reply::SignatureChecked(signature_model(&self.signatures).and_then(|model| {
                    workflow::verify_signature(model, store, &external_id, &scan, &actor)
                        .map_err(text)
                }))
            }
            Request::Scores { modality, manifest } => {
                Reply::Scores(self.scores(modality, manifest, cancel, outbox))
            }
            Request::Replay { modality, bands } => match self.store.decisions(modality) {
                Ok(past) => Reply::Replayed(verification::replay(&past, bands)),
                Err(error) => Reply::Failed {
                    what: "reading past decisions",
                    error: error.to_string(),
                },
            },
            Request::SaveBands { modality, bands } => {
                match self.store.set_bands(modality, bands, &actor) {
                    Ok(()) => Reply::BandsSaved(bands),
                    Err(error) => Reply::Failed {
                        what: "saving the threshold",
                        error: error.to_string(),
                    },
                }
            }
            Request::Bands { modality } => match self.store.bands(modality) {
                Ok(bands) => Reply::Bands(bands),
                Err(error) => Reply::Failed {
                    what: "reading the threshold",
                    error: error.to_string(),
                },
            },
            Request::PrepareTraining { enrolled_dir } => {
                Reply::TrainingPrepared(self.prepare_training(enrolled_dir))
            }
            Request::Activate { model } => Reply::Activated(self.activate(&model, cancel, outbox)),
        };
        outbox.send(reply)
    }

    fn analyze(&self, frame: RgbImage, from_file: bool) -> Reply {
        let faces = match self.faces.analyze(&frame) {
            Ok(faces) => faces,
            Err(error) => {
                return Reply::Failed {
                    what: "analysing the frame",
                    error: error.to_string(),
                };
            }
        };
        let subject = crate::face::subject_index(&faces, frame.dimensions());
        let named: crate::Result<Vec<FaceView>> = self
            .store
            .bands(Modality::Face)
            .map_err(Into::into)
            .and_then(|bands| {
                faces
                    .into_iter()
                    .map(|face| {
                        Ok(FaceView {
                            nearest: self.nearest(&face.embedding, bands)?,
                            bbox: face.bbox,
                            landmarks: face.landmarks,
                            embedding: face.embedding,
                        })
                    })
                    .collect()
            });
        let views = match named {
            Ok(views) => views,
            Err(error) => {
                return Reply::Failed {
                    what: "naming the faces",
                    error: error.to_string(),
                };
            }
        };
        Reply::Analyzed {
            faces: views,
            subject,
            frame: from_file.then_some(frame),
        }
    }

    /// The enrolled person nearest to `embedding`, if anyone is enrolled.
    fn nearest(&self, embedding: &[f32], bands: Bands) -> crate::Result<Option<Match>> {
        let Some(candidate) = self.gallery.search(embedding, 1)?.pop() else {
            return Ok(None);
        };
        let person = self.store.person(candidate.person_id)?;
        Ok(Some(Match {
            person_id: candidate.person_id,
            name: person.name,
            score: candidate.score,
            decision: bands.decide(candidate.score),
        }))
    }

    fn analyze_file(&self, path: &std::path::Path) -> Reply {
        match crate::imageio::load_rgb(path) {
            Ok(frame) => self.analyze(frame, true),
            Err(error) => Reply::Failed {
                what: "reading the image",
                error: error.to_string(),
            },
        }
    }

    fn checkin_file(
        &mut self,
        path: &std::path::Path,
        window_minutes: i64,
        actor: &str,
    ) -> Result<CheckinReport, String> {
        let picture = crate::imageio::load_rgb(path).map_err(text)?;
        workflow::checkin_photo(
            &self.faces,
            &mut self.store,
            &self.gallery,
            &picture,
            &path.display().to_string(),
            chrono::Duration::minutes(window_minutes),
            actor,
        )
        .map_err(text)
    }

    fn capture(&self, frame: &RgbImage) -> Result<PathBuf, String> {
        let dir = self.context.captures_dir();
        let path = dir.join(format!(
            "{}.png",
            chrono::Utc::now().format("%Y%m%d-%H%M%S%.3f")
        ));
        std::fs::create_dir_all(&dir)
            .and_then(|()| frame.save(&path).map_err(std::io::Error::other))
            .map(|()| path)
            .map_err(|e| format!("cannot save the capture in {}: {e}", dir.display()))
    }

    fn assess(&self, path: &std::path::Path) -> Result<String, String> {
        let bytes = std::fs::read(path).map_err(|e| text(crate::Error::io(e, path)))?;
        let picture = crate::imageio::decode_rgb(&bytes, path).map_err(text)?;
        match crate::enroll::assess_face(&self.faces, &picture, &bytes).map_err(text)? {
            Ok(sample) => Ok(format!("good: one face, sharpness {:.0}", sample.sharpness)),
            Err(rejection) => Err(rejection.to_string()),
        }
    }

    fn reload_gallery(&mut self) -> Result<(), String> {
        self.gallery =
            Gallery::of_faces(&self.store, &self.faces.model_id()).map_err(|e| e.to_string())?;
        Ok(())
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
                    .and_then(|png| image::load_from_memory(&png).ok())
                    .map(|image| image.thumbnail(96, 96).to_rgba8());
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
        outbox: &Outbox<impl Fn()>,
    ) -> Result<ScoreSet, String> {
        let bands = self.store.bands(modality).map_err(|e| e.to_string())?;
        if let Some(manifest) = manifest {
            let model = signature_model(&self.signatures)?;
            let scans = crate::dataset::load(&manifest).map_err(text)?;
            let mut set = verification::manifest_scores(
                model,
                &scans,
                WORKBENCH_REFERENCES,
                bands,
                cancel,
                &mut |done, total| {
                    outbox.progress(Progress {
                        done,
                        total,
                        current: "embedding scans".into(),
                    })
                },
            )
            .map_err(text)?;
            set.source = format!("{} ({})", manifest.display(), set.source);
            return Ok(set);
        }
        let templates = |model_id: String, shape| {
            self.store
                .templates(modality, &model_id, shape)
                .map_err(|e| e.to_string())
        };
        match modality {
            Modality::Face => verification::gallery_scores(
                &templates(self.faces.model_id(), &crate::face::TEMPLATE_SHAPE)?,
                bands,
                |references, questioned| {
                    Ok(face_score(euclidean_distance(references[0], questioned)?))
                },
            ),
            Modality::Signature => {
                let model = signature_model(&self.signatures)?;
                verification::gallery_scores(
                    &templates(model.model_id(), &crate::signature::TEMPLATE_SHAPE)?,
                    bands,
                    |r, q| model.score(r, q),
                )
            }
        }
        .map_err(text)
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

    fn activate(
        &mut self,
        model: &std::path::Path,
        cancel: &AtomicBool,
        outbox: &Outbox<impl Fn()>,
    ) -> Result<Activation, String> {
        let (loaded, activation) = workflow::activate_signature_model(
            &mut self.store,
            model,
            &self.context.device,
            &self.context.operator,
            cancel,
            &mut |p| outbox.progress(p),
        )
        .map_err(|error| match error {
            crate::Error::Cancelled => "cancelled; the previous model stays active".to_string(),
            other => other.to_string(),
        })?;
        self.signatures = Ok(loaded);
        Ok(activation)
    }
}
