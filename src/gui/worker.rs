//! The window's one worker thread: it owns the models and the database, takes requests
//! from a bounded channel and answers on another, waking the window after each answer.
//! The UI thread never decodes an image, runs a network or touches SQLite.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use candle_core::Device;
use image::RgbImage;

use crate::eval::verification::{EmbeddedScan, embed_scans, evaluate};
use crate::face::FaceModels;
use crate::gallery::Gallery;
use crate::matching::{Bands, Decision};
use crate::signature::SignatureModel;
use crate::store::{Modality, Person, Store};
use crate::workflow::{self, CheckinReport, EnrollReport, EnrollRequest, Progress};

/// Requests the worker serves, one at a time, in order.
pub enum Request {
    /// Find, embed and name the faces of a frame (kiosk).
    Analyze {
        frame: RgbImage,
    },
    /// The same for an image file (decoded here, not on the UI thread).
    AnalyzeFile {
        path: PathBuf,
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
    /// How many recorded decisions the bands would change.
    Flips {
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
    /// Make a newly trained signature model the active one and re-embed the gallery.
    Activate {
        model: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct FaceView {
    pub bbox: crate::face::BoundingBox,
    pub landmarks: Vec<crate::face::Point>,
    pub embedding: Vec<f32>,
    /// The nearest enrolled person, if anyone is enrolled.
    pub match_: Option<(i64, String, f32, Decision)>,
}

#[derive(Debug, Clone)]
pub struct PersonRow {
    pub person: Person,
    /// The first reference crop, for a thumbnail.
    pub thumbnail: Option<image::RgbaImage>,
}

#[derive(Debug, Clone)]
pub struct SignatureCheck {
    pub name: String,
    pub external_id: String,
    pub references: Vec<image::GrayImage>,
    pub questioned: image::GrayImage,
    pub verdict: workflow::SignatureVerdict,
}

#[derive(Debug, Clone, Default)]
pub struct ScoreSet {
    pub genuine: Vec<f32>,
    pub impostor: Vec<f32>,
    pub source: String,
}

pub enum Reply {
    Ready {
        status: String,
    },
    Failed {
        what: &'static str,
        error: String,
    },
    /// `frame` is the decoded image when the request named a file.
    Analyzed {
        faces: Vec<FaceView>,
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
    SignatureChecked(Result<SignatureCheck, String>),
    Progress(Progress),
    Scores(Result<ScoreSet, String>),
    Flips {
        changed: usize,
        total: usize,
    },
    BandsSaved(Bands),
    Bands(Bands),
    Activated(Result<String, String>),
}

pub struct WorkerHandle {
    pub requests: SyncSender<Request>,
    pub replies: Receiver<Reply>,
    pub cancel: Arc<AtomicBool>,
}

/// Where the worker finds its models and database.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub models_dir: PathBuf,
    pub signature_model: PathBuf,
    pub db: PathBuf,
    pub device: Device,
    pub operator: String,
}

/// Starts the worker; `wake` is called after every reply.
pub fn spawn(
    config: WorkerConfig,
    wake: impl Fn() + Send + 'static,
) -> std::io::Result<WorkerHandle> {
    let (requests, inbox) = sync_channel::<Request>(8);
    let (outbox, replies) = sync_channel::<Reply>(64);
    let cancel = Arc::new(AtomicBool::new(false));
    let cancelled = cancel.clone();
    std::thread::Builder::new()
        .name("vouch-worker".into())
        .spawn(move || {
            let send = |reply: Reply| {
                let delivered = outbox.send(reply).is_ok();
                wake();
                delivered
            };
            let mut worker = match Worker::open(&config) {
                Ok(worker) => worker,
                Err(error) => {
                    send(Reply::Failed {
                        what: "starting",
                        error,
                    });
                    return;
                }
            };
            if let Err(error) = worker.catch_up_faces(&cancelled, &send) {
                send(Reply::Failed {
                    what: "re-embedding the enrolled faces",
                    error,
                });
            }
            send(Reply::Ready {
                status: worker.status(),
            });
            for request in inbox {
                cancelled.store(false, std::sync::atomic::Ordering::Relaxed);
                if !worker.serve(request, &cancelled, &send) {
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
    signatures: Option<SignatureModel>,
    signature_error: Option<String>,
    store: Store,
    gallery: Gallery,
    config: WorkerConfig,
}

impl Worker {
    fn open(config: &WorkerConfig) -> Result<Self, String> {
        let faces =
            FaceModels::load(&config.models_dir, &config.device).map_err(|e| e.to_string())?;
        if let Some(dir) = config.db.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let store = Store::open(&config.db).map_err(|e| e.to_string())?;
        let active = store
            .setting("model.signature")
            .ok()
            .flatten()
            .map(PathBuf::from)
            .unwrap_or_else(|| config.signature_model.clone());
        let (signatures, signature_error) = match SignatureModel::load(&active, &config.device) {
            Ok(model) => (Some(model), None),
            Err(error) => (None, Some(error.to_string())),
        };
        let gallery = Gallery::of_faces(&store, &faces.model_id()).map_err(|e| e.to_string())?;
        Ok(Self {
            faces,
            signatures,
            signature_error,
            store,
            gallery,
            config: config.clone(),
        })
    }

    /// Templates that only an earlier face model embedded (an update changed the weights
    /// or the recipe) are re-embedded from their stored crops before the kiosk opens, so
    /// nobody enrolled drops out of the gallery. A cancelled run keeps what it finished
    /// and the next start does the rest.
    fn catch_up_faces(
        &mut self,
        cancel: &AtomicBool,
        send: &dyn Fn(Reply) -> bool,
    ) -> Result<(), String> {
        let actor = self.config.operator.clone();
        let report = workflow::reembed(&mut self.store, &self.faces, &actor, cancel, &mut |p| {
            send(Reply::Progress(p));
        })
        .map_err(|e| e.to_string())?;
        if report.templates > 0 {
            tracing::info!(
                templates = report.templates,
                model = %report.model,
                "re-embedded face templates of an earlier model"
            );
            self.gallery = Gallery::of_faces(&self.store, &self.faces.model_id())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn status(&self) -> String {
        let signature = match (&self.signatures, &self.signature_error) {
            (Some(model), _) => model.model_id(),
            (None, Some(error)) => format!("not loaded ({error})"),
            (None, None) => "not loaded".into(),
        };
        format!(
            "Database {} · face model {} · signature model {} · {} enrolled face(s)",
            self.store.path().display(),
            self.faces.model_id(),
            signature,
            self.gallery.people()
        )
    }

    fn signatures(&self) -> Result<&SignatureModel, String> {
        self.signatures.as_ref().ok_or_else(|| {
            format!(
                "no signature model: {}",
                self.signature_error.as_deref().unwrap_or("not loaded")
            )
        })
    }

    /// Serves one request; false when the window has gone.
    fn serve(
        &mut self,
        request: Request,
        cancel: &AtomicBool,
        send: &dyn Fn(Reply) -> bool,
    ) -> bool {
        let actor = self.config.operator.clone();
        let text = |e: crate::Error| e.to_string();
        match request {
            Request::AnalyzeFile { path } => match crate::imageio::load_rgb(&path) {
                Ok(frame) => self.analyze(frame, true, send),
                Err(error) => send(Reply::Failed {
                    what: "reading the image",
                    error: error.to_string(),
                }),
            },
            Request::Analyze { frame } => self.analyze(frame, false, send),
            Request::Capture { frame } => {
                let dir = self.config.db.with_file_name("captures");
                let path = dir.join(format!(
                    "{}.png",
                    chrono::Utc::now().format("%Y%m%d-%H%M%S%.3f")
                ));
                let saved = std::fs::create_dir_all(&dir)
                    .and_then(|()| frame.save(&path).map_err(std::io::Error::other))
                    .map(|()| path)
                    .map_err(|e| format!("cannot save the capture in {}: {e}", dir.display()));
                send(Reply::Captured(saved))
            }
            Request::Checkin {
                embedding,
                window_minutes,
            } => send(Reply::CheckedIn(
                workflow::checkin(
                    &mut self.store,
                    &self.gallery,
                    &embedding,
                    chrono::Duration::minutes(window_minutes),
                    &actor,
                )
                .map_err(text),
            )),
            Request::EnrollFace { request, force } => {
                let result = workflow::enroll_face(
                    &self.faces,
                    &mut self.store,
                    &mut self.gallery,
                    &request,
                    force,
                    &actor,
                )
                .map_err(text);
                send(Reply::Enrolled(result))
            }
            Request::EnrollSignature { request } => {
                let result = match &self.signatures {
                    Some(model) => {
                        workflow::enroll_signature(model, &mut self.store, &request, &actor)
                            .map_err(text)
                    }
                    None => Err(self.signatures().err().unwrap_or_default()),
                };
                send(Reply::Enrolled(result))
            }
            Request::AssessFace { path } => {
                let verdict = std::fs::read(&path)
                    .map_err(|e| crate::Error::io(e, &path))
                    .and_then(|bytes| {
                        let picture = crate::imageio::decode_rgb(&bytes, &path)?;
                        crate::enroll::assess_face(&self.faces, &picture, &bytes)
                    })
                    .map_err(text)
                    .and_then(|assessed| match assessed {
                        Ok(sample) => {
                            Ok(format!("good: one face, sharpness {:.0}", sample.sharpness))
                        }
                        Err(rejection) => Err(rejection.to_string()),
                    });
                send(Reply::Assessed { path, verdict })
            }
            Request::People { modality } => match self.people(modality) {
                Ok(rows) => send(Reply::People(rows)),
                Err(error) => send(Reply::Failed {
                    what: "listing people",
                    error,
                }),
            },
            Request::Delete { person_id } => match self.store.delete_person(person_id, &actor) {
                Ok(()) => {
                    self.reload_gallery();
                    send(Reply::Deleted { person_id })
                }
                Err(error) => send(Reply::Failed {
                    what: "deleting",
                    error: error.to_string(),
                }),
            },
            Request::CheckSignature { external_id, scan } => send(Reply::SignatureChecked(
                self.check_signature(&external_id, &scan, &actor),
            )),
            Request::Scores { modality, manifest } => {
                let scores = self.scores(modality, manifest, cancel, send);
                send(Reply::Scores(scores))
            }
            Request::Flips { modality, bands } => match self.flips(modality, bands) {
                Ok((changed, total)) => send(Reply::Flips { changed, total }),
                Err(error) => send(Reply::Failed {
                    what: "counting decisions",
                    error,
                }),
            },
            Request::SaveBands { modality, bands } => {
                match self.store.set_bands(modality, bands, &actor) {
                    Ok(()) => send(Reply::BandsSaved(bands)),
                    Err(error) => send(Reply::Failed {
                        what: "saving the threshold",
                        error: error.to_string(),
                    }),
                }
            }
            Request::Bands { modality } => match self.store.bands(modality) {
                Ok(bands) => send(Reply::Bands(bands)),
                Err(error) => send(Reply::Failed {
                    what: "reading the threshold",
                    error: error.to_string(),
                }),
            },
            Request::Activate { model } => {
                let result = self.activate(&model, &actor, cancel, send);
                send(Reply::Activated(result))
            }
        }
    }

    fn analyze(&self, frame: RgbImage, from_file: bool, send: &dyn Fn(Reply) -> bool) -> bool {
        let faces = match self.faces.analyze(&frame) {
            Ok(faces) => faces,
            Err(error) => {
                return send(Reply::Failed {
                    what: "analysing the frame",
                    error: error.to_string(),
                });
            }
        };
        let bands = self
            .store
            .bands(Modality::Face)
            .unwrap_or(crate::matching::FACE_BANDS);
        let views = faces
            .into_iter()
            .map(|face| {
                let match_ = self
                    .gallery
                    .search(&face.embedding, 1)
                    .first()
                    .and_then(|c| {
                        let person = self.store.person(c.person_id).ok()?;
                        Some((c.person_id, person.name, c.score, bands.decide(c.score)))
                    });
                FaceView {
                    bbox: face.bbox,
                    landmarks: face.landmarks,
                    embedding: face.embedding,
                    match_,
                }
            })
            .collect();
        send(Reply::Analyzed {
            faces: views,
            frame: from_file.then_some(frame),
        })
    }

    fn reload_gallery(&mut self) {
        if let Ok(gallery) = Gallery::of_faces(&self.store, &self.faces.model_id()) {
            self.gallery = gallery;
        }
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

    fn check_signature(
        &mut self,
        external_id: &str,
        scan: &std::path::Path,
        actor: &str,
    ) -> Result<SignatureCheck, String> {
        let model = self
            .signatures
            .as_ref()
            .ok_or("no signature model loaded")?;
        let report = workflow::verify_signature(model, &mut self.store, external_id, scan, actor)
            .map_err(|e| e.to_string())?;
        let person = self
            .store
            .person_by_external_id(external_id, Modality::Signature)
            .map_err(|e| e.to_string())?;
        let references = self
            .store
            .crops(person.id, &model.model_id())
            .map_err(|e| e.to_string())?
            .iter()
            .filter_map(|png| image::load_from_memory(png).ok().map(|i| i.to_luma8()))
            .collect();
        let questioned = model.embed_scan(scan).map_err(|e| e.to_string())?.0.canvas;
        Ok(SignatureCheck {
            name: report.name,
            external_id: report.external_id,
            references,
            questioned,
            verdict: report.verdict,
        })
    }

    /// Genuine and impostor scores: from a labelled manifest (signatures), or else from
    /// the enrolled gallery itself (pairs of one person's references against pairs of
    /// different people's).
    fn scores(
        &self,
        modality: Modality,
        manifest: Option<PathBuf>,
        cancel: &AtomicBool,
        send: &dyn Fn(Reply) -> bool,
    ) -> Result<ScoreSet, String> {
        if let Some(manifest) = manifest {
            let model = self.signatures()?;
            let scans = crate::dataset::load(&manifest).map_err(|e| e.to_string())?;
            let (embedded, _) = embed_scans(model, &scans, cancel, &mut |done, total| {
                send(Reply::Progress(Progress {
                    done,
                    total,
                    current: "embedding scans".into(),
                }));
            })
            .map_err(|e| e.to_string())?;
            let report = evaluate(&embedded, 5, 0.5, |r, q| model.score(r, q));
            let mut impostor = report.skilled_scores.clone();
            impostor.extend(&report.random_scores);
            return Ok(ScoreSet {
                genuine: report.genuine_scores,
                impostor,
                source: format!("{} (K=5 references)", manifest.display()),
            });
        }
        let face_score = |r: &[&[f32]], q: &[f32]| {
            crate::matching::face_score(crate::matching::euclidean_distance(r[0], q))
        };
        type Score<'a> = &'a dyn Fn(&[&[f32]], &[f32]) -> f32;
        let (model_id, score): (String, Score) = match modality {
            Modality::Face => (self.faces.model_id(), &face_score),
            Modality::Signature => {
                let model = self.signatures()?;
                (model.model_id(), &move |r, q| model.score(r, q))
            }
        };
        let templates = self
            .store
            .templates(modality, &model_id)
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = templates.iter().map(|t| t.person_id.to_string()).collect();
        let scans: Vec<EmbeddedScan> = templates
            .iter()
            .zip(&names)
            .map(|(t, name)| EmbeddedScan {
                identity: name,
                kind: crate::dataset::Kind::Genuine,
                embedding: t.embedding.clone(),
            })
            .collect();
        let report = evaluate(&scans, 1, 0.5, score);
        if report.genuine_scores.is_empty() {
            return Err("too few references: enroll people with two or more references, or load a labelled manifest".into());
        }
        Ok(ScoreSet {
            genuine: report.genuine_scores,
            impostor: report.random_scores,
            source: format!("enrolled {} references", modality.as_str()),
        })
    }

    fn flips(&self, modality: Modality, bands: Bands) -> Result<(usize, usize), String> {
        let past = self.store.decisions(modality).map_err(|e| e.to_string())?;
        let changed = past
            .iter()
            .filter(|(score, decision)| bands.decide(*score).as_str() != decision)
            .count();
        Ok((changed, past.len()))
    }

    fn activate(
        &mut self,
        model: &std::path::Path,
        actor: &str,
        cancel: &AtomicBool,
        send: &dyn Fn(Reply) -> bool,
    ) -> Result<String, String> {
        let loaded = SignatureModel::load(model, &self.config.device).map_err(|e| e.to_string())?;
        let report = workflow::reembed(&mut self.store, &loaded, actor, cancel, &mut |p| {
            send(Reply::Progress(p));
        })
        .map_err(|e| e.to_string())?;
        if report.cancelled {
            return Err(format!(
                "cancelled after {} templates; the previous model stays active",
                report.templates
            ));
        }
        self.store
            .set_setting("model.signature", &model.display().to_string(), actor)
            .map_err(|e| e.to_string())?;
        let id = loaded.model_id();
        self.signatures = Some(loaded);
        self.signature_error = None;
        Ok(format!(
            "{id} is active; {} template(s) re-embedded",
            report.templates
        ))
    }
}
