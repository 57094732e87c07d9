//! The training engine: a Siamese encoder learns from labelled scans with contrastive,
//! triplet or BCE loss and Adam; each epoch ends with a validation EER on identities it
//! never trains on, a checkpoint (weights and optimiser state, so a run resumes exactly)
//! and, when validation improved, a new model version. The CLI drives it with a progress
//! bar and Ctrl-C; the window with a progress callback and a cancel flag.

pub mod adam;
pub mod augment;
pub mod crossval;
pub mod loss;
mod scorer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dataset::{Kind, LabelledScan};
use crate::error::{Error, Result};
use crate::eval::verification::equal_error_rate;
use crate::models::{load_weights, save_weights};
use crate::signature::encoder::SignatureEncoder;
use crate::signature::fusion::FitOptions;
use crate::signature::preprocess::{CHARACTER_CANVAS, Normalisation, SIGNATURE_CANVAS, normalise};
use crate::signature::variation::random_branch;
use crate::signature::{canvas_metadata, canvas_tensor, signature_score};
use adam::{Adam, AdamConfig};
pub use augment::Augmentation;
use image::DynamicImage;
pub use loss::Loss;
use loss::{PairHead, RowLabel, batch_loss};
pub use scorer::{enrollment_sizes, fit_scorer, writer_templates};

/// The loss and rate a run uses unless told otherwise, in the window, `vouch train` and the
/// cross-validation alike: the shipped signature model's (models/README). The triplet loss
/// collapsed on signatures at this rate (every distance equal, the loss at its margin).
pub const RECIPE_LOSS: Loss = Loss::Contrastive;
pub const RECIPE_LEARNING_RATE: f64 = 1e-3;

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const MODEL_FILE: &str = "model.safetensors";
pub const HISTORY_FILE: &str = "training.json";
/// Whether the run finished all its epochs (`RunOutcome`): written as unfinished when the
/// run starts, so a killed run reads as one.
pub const OUTCOME_FILE: &str = "outcome.json";
/// The model metadata listing the identities a model was trained on (a JSON array).
pub const TRAIN_IDENTITIES: &str = "train_identities";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    pub finished: bool,
    pub epochs_run: usize,
    pub epochs_planned: usize,
}

impl RunOutcome {
    fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(OUTCOME_FILE);
        std::fs::write(
            &path,
            serde_json::to_string_pretty(self).expect("outcome serialises"),
        )
        .map_err(|e| Error::io(e, &path))
    }

    /// Whether a caller asking for `epochs` epochs may reuse the run: it finished exactly
    /// that many. One that ran fewer is to be continued from its checkpoint; one that ran
    /// more is refused, since its model was picked among epochs the caller did not ask for.
    pub fn reusable_for(&self, epochs: usize, dir: &Path) -> Result<bool> {
        if self.epochs_run > epochs {
            return Err(Error::Invalid(format!(
                "the run in {} ran {} epochs, more than the {epochs} asked for: use another \
                 folder",
                dir.display(),
                self.epochs_run
            )));
        }
        Ok(self.finished && self.epochs_run == epochs)
    }

    /// The outcome recorded beside a run's model, if the model came from a run.
    pub fn of_model(model: &Path) -> Result<Option<Self>> {
        let dir = model.parent().unwrap_or(Path::new("."));
        if !dir.join(HISTORY_FILE).is_file() {
            return Ok(None);
        }
        let path = dir.join(OUTCOME_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Some(Self {
                    finished: false,
                    epochs_run: 0,
                    epochs_planned: 0,
                }));
            }
            Err(error) => return Err(Error::io(error, &path)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TrainModality {
    Signature,
    Handwriting,
    Face,
}

impl TrainModality {
    pub fn canvas(self) -> Result<(u32, u32)> {
        match self {
            TrainModality::Signature => Ok(SIGNATURE_CANVAS),
            TrainModality::Handwriting => Ok(CHARACTER_CANVAS),
            TrainModality::Face => Err(Error::Invalid(
                "fine-tuning the face network is not supported: it is the pretrained dlib ResNet, \
                 used as published (train `signature` or `handwriting`)"
                    .into(),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TrainModality::Signature => "signature",
            TrainModality::Handwriting => "handwriting",
            TrainModality::Face => "face",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub modality: TrainModality,
    pub loss: Loss,
    pub epochs: usize,
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub margin: f32,
    /// Identities per batch, genuine scans and forgeries drawn for each.
    pub identities_per_batch: usize,
    pub genuine_per_identity: usize,
    pub forgeries_per_identity: usize,
    /// Steps per epoch [default: one pass over the training scans].
    pub steps_per_epoch: Option<usize>,
    /// Share of identities held out for validation (never trained on).
    pub validation_fraction: f64,
    /// Copies of every training scan as other branches would scan it (pen, paper, grey
    /// depth, a turned page, JPEG: `signature::variation`), drawn from beside the original.
    #[serde(default)]
    pub scan_variations: usize,
    /// How each batch's canvases are varied on the fly.
    #[serde(default)]
    pub augmentation: Augmentation,
    /// The canvas (height, width) scans are normalised onto [default: the `init` model's,
    /// else the modality's]. A resumed run keeps its checkpoint's.
    #[serde(default)]
    pub canvas: Option<(u32, u32)>,
    /// Train on every identity turned by 1, 2 and 3 quarters as three more identities
    /// (characters; a square canvas only).
    #[serde(default)]
    pub turned_classes: bool,
    /// How scans reach the canvas [default: the `init` model's, else paper-relative]. A
    /// resumed run keeps its checkpoint's.
    #[serde(default)]
    pub normalisation: Option<Normalisation>,
    pub seed: u64,
    /// Start from these weights instead of random ones (fine-tuning).
    pub init: Option<PathBuf>,
    /// The run's folder: checkpoint, best model, history.
    pub out: PathBuf,
    /// Continue the run in `out` from its checkpoint.
    pub resume: bool,
    /// How the run was started, written into the model file.
    pub command: String,
}

impl TrainConfig {
    pub fn new(modality: TrainModality, loss: Loss, epochs: usize, out: PathBuf) -> Self {
        Self {
            modality,
            loss,
            epochs,
            learning_rate: RECIPE_LEARNING_RATE,
            beta1: 0.9,
            beta2: 0.99,
            margin: loss.default_margin(),
            identities_per_batch: 8,
            genuine_per_identity: 4,
            forgeries_per_identity: 2,
            steps_per_epoch: None,
            validation_fraction: 0.2,
            scan_variations: 0,
            augmentation: Augmentation::default(),
            canvas: None,
            turned_classes: false,
            normalisation: None,
            seed: 1,
            init: None,
            out,
            resume: false,
            command: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochSummary {
    pub epoch: usize,
    pub train_loss: f64,
    pub validation_eer: f64,
    pub images_per_second: f64,
    pub seconds: f64,
    pub best: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    Prepared {
        train_identities: usize,
        train_scans: usize,
        validation_identities: usize,
        validation_scans: usize,
    },
    Step {
        epoch: usize,
        step: usize,
        steps: usize,
        loss: f64,
    },
    Epoch(EpochSummary),
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub out: PathBuf,
    /// The best model of the run (absent if no epoch finished).
    pub model: Option<PathBuf>,
    pub best_validation_eer: Option<f64>,
    pub history: Vec<EpochSummary>,
    pub cancelled: bool,
    /// How the model scores signatures: its fitted scorer, or why it has none.
    pub scorer: Option<String>,
}

/// Normalised scans in memory, grouped by identity.
struct Prepared {
    /// The scans' canvases, then each variation's copies of them in the same order.
    images: Tensor,
    scans: usize,
    variations: usize,
    identities: Vec<IdentityRows>,
}

struct IdentityRows {
    genuine: Vec<usize>,
    forgeries: Vec<usize>,
}

/// How a run's training scans become canvases.
#[derive(Debug, Clone, Copy)]
struct Preparation {
    canvas: (u32, u32),
    normalisation: Normalisation,
    variations: usize,
    turned_classes: bool,
    seed: u64,
}

/// Canvases of the scans, and `variations` varied copies of each (a copy whose variation
/// left no readable ink keeps the original's canvas); with `turned_classes`, each identity
/// turned by a quarter, a half and three quarters as three more identities.
fn prepare(scans: &[&LabelledScan], preparation: Preparation, device: &Device) -> Result<Prepared> {
    let Preparation {
        canvas,
        normalisation,
        variations,
        turned_classes,
        seed,
    } = preparation;
    let mut sets: Vec<Vec<image::GrayImage>> = scans
        .par_iter()
        .enumerate()
        .map(|(index, scan)| {
            let source = scan.path.display().to_string();
            let image = crate::imageio::load(&scan.path)?;
            let original = normalise(&image, canvas, normalisation, &source)?.canvas;
            let grey = image.to_luma8();
            let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(7_919) + index as u64);
            let mut set = vec![original.clone()];
            for _ in 0..variations {
                let varied = random_branch(&grey, &mut rng)?;
                set.push(
                    normalise(
                        &DynamicImage::ImageLuma8(varied),
                        canvas,
                        normalisation,
                        &source,
                    )
                    .map_or_else(|_| original.clone(), |n| n.canvas),
                );
            }
            Ok(set)
        })
        .collect::<Result<_>>()?;
    let names = crate::dataset::identities_of(scans.iter().map(|s| s.identity.as_str()));
    let mut identities: Vec<IdentityRows> = names
        .iter()
        .map(|name| {
            let rows = |kind| {
                scans
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.identity == *name && s.kind == kind)
                    .map(|(i, _)| i)
                    .collect()
            };
            IdentityRows {
                genuine: rows(Kind::Genuine),
                forgeries: rows(Kind::Forgery),
            }
        })
        .collect();
    if turned_classes {
        turn_into_new_identities(&mut sets, &mut identities, canvas)?;
    }
    let canvases: Vec<image::GrayImage> = (0..=variations)
        .flat_map(|v| sets.iter().map(move |set| set[v].clone()))
        .collect();
    Ok(Prepared {
        images: canvas_tensor(&canvases, device)?,
        scans: sets.len(),
        variations,
        identities,
    })
}

/// A character turned on its side is another character (Omniglot's classic augmentation):
/// appends each scan's canvases turned by 1, 2 and 3 quarters, and their identities.
fn turn_into_new_identities(
    sets: &mut Vec<Vec<image::GrayImage>>,
    identities: &mut Vec<IdentityRows>,
    canvas: (u32, u32),
) -> Result<()> {
    turnable(canvas)?;
    let (scans, originals) = (sets.len(), identities.len());
    for quarters in 1..4 {
        let turn = |canvas: &image::GrayImage| match quarters {
            1 => image::imageops::rotate90(canvas),
            2 => image::imageops::rotate180(canvas),
            _ => image::imageops::rotate270(canvas),
        };
        for index in 0..scans {
            let turned = sets[index].iter().map(turn).collect();
            sets.push(turned);
        }
        for index in 0..originals {
            let moved = |rows: &[usize]| rows.iter().map(|r| r + quarters * scans).collect();
            let turned = IdentityRows {
                genuine: moved(&identities[index].genuine),
                forgeries: moved(&identities[index].forgeries),
            };
            identities.push(turned);
        }
    }
    Ok(())
}

fn turnable((height, width): (u32, u32)) -> Result<()> {
    if height == width {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "turned classes need a square canvas, not {height}x{width}: a signature on its side is \
         no signature"
    )))
}

/// Splits identities into (train, validation) by a seeded shuffle.
pub fn split_identities(
    scans: &[LabelledScan],
    validation_fraction: f64,
    seed: u64,
) -> (Vec<String>, Vec<String>) {
    let mut names = crate::dataset::identities(scans);
    names.shuffle(&mut StdRng::seed_from_u64(seed));
    let validation = ((names.len() as f64 * validation_fraction).round() as usize)
        .clamp(1, names.len().saturating_sub(1).max(1));
    let train = names.split_off(validation);
    (train, names)
}

fn sample_batch(
    data: &Prepared,
    config: &TrainConfig,
    rng: &mut StdRng,
) -> (Vec<u32>, Vec<RowLabel>) {
    let usable: Vec<usize> = (0..data.identities.len())
        .filter(|&i| data.identities[i].genuine.len() >= 2)
        .collect();
    let chosen: Vec<usize> = usable
        .choose_multiple(rng, config.identities_per_batch.min(usable.len()))
        .copied()
        .collect();
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for identity in chosen {
        let own = &data.identities[identity];
        for (pool, count, forgery) in [
            (&own.genuine, config.genuine_per_identity, false),
            (&own.forgeries, config.forgeries_per_identity, true),
        ] {
            for &row in pool.choose_multiple(rng, count.min(pool.len())) {
                rows.push(row as u32);
                labels.push(RowLabel { identity, forgery });
            }
        }
    }
    (rows, labels)
}

/// EER of the validation identities: genuine pairs against skilled forgeries and other
/// identities' genuine scans.
fn validation_eer(encoder: &SignatureEncoder, data: &Prepared) -> Result<f64> {
    let count = data.scans;
    let mut embeddings = Vec::with_capacity(count);
    for start in (0..count).step_by(64) {
        let batch = data.images.narrow(0, start, 64.min(count - start))?;
        embeddings.extend(encoder.forward(&batch)?.detach().to_vec2::<f32>()?);
    }
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for (index, identity) in data.identities.iter().enumerate() {
        for (a, &i) in identity.genuine.iter().enumerate() {
            for &j in &identity.genuine[a + 1..] {
                genuine.push(signature_score(&embeddings[i], &embeddings[j]));
            }
            for &j in &identity.forgeries {
                impostor.push(signature_score(&embeddings[i], &embeddings[j]));
            }
            for other in &data.identities[index + 1..] {
                for &j in &other.genuine {
                    impostor.push(signature_score(&embeddings[i], &embeddings[j]));
                }
            }
        }
    }
    Ok(equal_error_rate(&genuine, &impostor).0)
}

fn encoder_tensors(varmap: &VarMap) -> Vec<(String, Tensor)> {
    let mut tensors: Vec<(String, Tensor)> = varmap
        .data()
        .lock()
        .expect("the variable map is not poisoned")
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

fn set_var(varmap: &VarMap, name: &str, value: &Tensor) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .expect("the variable map is not poisoned");
    let var = data.get(name).expect("the name came from this map");
    Ok(var.set(&value.to_dtype(DType::F32)?)?)
}

/// Seeded Kaiming-uniform weights and zero biases: candle cannot seed its CPU generator,
/// and a run must be reproducible from its seed.
fn seeded_init(varmap: &VarMap, seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    for (name, tensor) in encoder_tensors(varmap) {
        let dims = tensor.dims().to_vec();
        let values: Vec<f32> = if name.ends_with("bias") {
            vec![0.0; tensor.elem_count()]
        } else {
            let fan_in: usize = dims[1..].iter().product();
            let bound = (6.0 / fan_in as f32).sqrt();
            (0..tensor.elem_count())
                .map(|_| rng.random_range(-bound..bound))
                .collect()
        };
        set_var(
            varmap,
            &name,
            &Tensor::from_vec(values, dims, tensor.device())?,
        )?;
    }
    Ok(())
}

fn load_into(varmap: &VarMap, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    for (name, _) in encoder_tensors(varmap) {
        let tensor = tensors.get(&name).ok_or_else(|| Error::BadModel {
            reason: format!("no tensor {name}"),
            path: path.to_path_buf(),
        })?;
        set_var(varmap, &name, tensor)?;
    }
    Ok(())
}

/// Runs (or resumes) training; `on_event` hears every step and epoch, `cancel` stops it
/// at the next step, keeping the checkpoint of the last finished epoch.
pub fn train(
    config: &TrainConfig,
    scans: &[LabelledScan],
    device: &Device,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<TrainReport> {
    // The face network is refused before a run folder exists, whatever --canvas says.
    config.modality.canvas()?;
    let _steps_reuse_memory = device.is_cpu().then(crate::cpu::FreedMemoryKept::new);
    let (train_names, validation_names) =
        split_identities(scans, config.validation_fraction, config.seed);
    let pick = |names: &[String]| -> Vec<&LabelledScan> {
        scans
            .iter()
            .filter(|s| names.contains(&s.identity))
            .collect()
    };
    let (train_scans, validation_scans) = (pick(&train_names), pick(&validation_names));
    std::fs::create_dir_all(&config.out).map_err(|e| Error::io(e, &config.out))?;
    if config.resume {
        check_resumed(config, &train_names)?;
    }
    let mut run = Run::start(config, device)?;
    let canvas = run.canvas;
    if config.turned_classes {
        // Before the scans are read: that can take minutes.
        turnable(canvas)?;
    }
    let preparation = Preparation {
        canvas,
        normalisation: run.normalisation,
        variations: config.scan_variations,
        turned_classes: config.turned_classes,
        seed: config.seed,
    };
    let train_data = prepare(&train_scans, preparation, device)?;
    let validation_data = prepare(
        &validation_scans,
        Preparation {
            variations: 0,
            turned_classes: false,
            seed: 0,
            ..preparation
        },
        device,
    )?;
    on_event(TrainEvent::Prepared {
        train_identities: train_names.len(),
        train_scans: train_scans.len(),
        validation_identities: validation_names.len(),
        validation_scans: validation_scans.len(),
    });

    let mut outcome = RunOutcome {
        finished: false,
        epochs_run: run.history.len(),
        epochs_planned: config.epochs,
    };
    outcome.write(&config.out)?;
    let steps = config.steps_per_epoch.unwrap_or_else(|| {
        let per_batch = config.identities_per_batch
            * (config.genuine_per_identity + config.forgeries_per_identity);
        train_scans.len().div_ceil(per_batch.max(1))
    });
    let mut best = run
        .history
        .iter()
        .map(|e| e.validation_eer)
        .fold(f64::INFINITY, f64::min);
    let mut cancelled = false;
    for epoch in run.history.len() + 1..=config.epochs {
        let started = Instant::now();
        let Some((train_loss, images)) =
            run.epoch(config, epoch, steps, &train_data, cancel, on_event)?
        else {
            cancelled = true;
            break;
        };
        let validation_eer = validation_eer(&run.encoder, &validation_data)?;
        let seconds = started.elapsed().as_secs_f64();
        let summary = EpochSummary {
            epoch,
            train_loss,
            validation_eer,
            images_per_second: images as f64 / seconds,
            seconds,
            best: validation_eer < best,
        };
        if summary.best {
            best = validation_eer;
        }
        run.history.push(summary.clone());
        run.save(config, &summary, canvas, (&train_names, &validation_names))?;
        on_event(TrainEvent::Epoch(summary));
    }
    outcome.epochs_run = run.history.len();
    outcome.finished = !cancelled && run.history.len() >= config.epochs;
    outcome.write(&config.out)?;
    let model_path = config.out.join(MODEL_FILE);
    let scorer =
        (config.modality == TrainModality::Signature && !cancelled && model_path.is_file())
            .then(|| fit_signature_scorer(&model_path, &train_scans));
    Ok(TrainReport {
        scorer,
        out: config.out.clone(),
        model: model_path.is_file().then_some(model_path),
        best_validation_eer: best.is_finite().then_some(best),
        history: run.history,
        cancelled,
    })
}

/// What a resumed run must be given as it was started, or its later epochs would train
/// another recipe under its name: a --seed, --lr or batch left out reads the default.
const RESUMED_RECIPE: [&str; 15] = [
    "modality",
    "loss",
    "learning_rate",
    "beta1",
    "beta2",
    "margin",
    "identities_per_batch",
    "genuine_per_identity",
    "forgeries_per_identity",
    "steps_per_epoch",
    "validation_fraction",
    "scan_variations",
    "augmentation",
    "turned_classes",
    "seed",
];

/// Refuses to resume a run with another recipe, fewer epochs than it was planned for, or
/// data that splits into other training writers than those it trained on.
fn check_resumed(config: &TrainConfig, train_names: &[String]) -> Result<()> {
    let path = config.out.join(HISTORY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(e, &path))?;
    let started: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    let given = serde_json::to_value(config).expect("config serialises");
    let mut differences: Vec<String> = RESUMED_RECIPE
        .iter()
        .filter(|key| started["config"][**key] != given[**key])
        .map(|key| format!("{key} {} (given {})", started["config"][*key], given[*key]))
        .collect();
    let planned = started["config"]["epochs"].as_u64().unwrap_or(0);
    if (config.epochs as u64) < planned {
        differences.push(format!("epochs {planned} (given {})", config.epochs));
    }
    if let Some(trained) = started[TRAIN_IDENTITIES].as_array() {
        let same = trained.len() == train_names.len()
            && trained.iter().zip(train_names).all(|(a, b)| a == b);
        if !same {
            differences.push(format!(
                "{} training writers (the data given makes {}, not the same ones: give the same --data)",
                trained.len(),
                train_names.len()
            ));
        }
    }
    if differences.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "{} was started with {}: resume it with the same options",
        config.out.display(),
        differences.join(", ")
    )))
}

/// What a run carries from epoch to epoch: the encoder's variables, the optimiser and
/// the history so far.
struct Run {
    varmap: VarMap,
    encoder: SignatureEncoder,
    head: PairHead,
    optimiser: Adam,
    /// The model this run was fine-tuned from, if any.
    parent: String,
    /// How its scans are prepared: a fine-tuned model keeps its parent's, a resumed run
    /// its own.
    normalisation: Normalisation,
    canvas: (u32, u32),
    history: Vec<EpochSummary>,
}

impl Run {
    /// Fresh seeded weights, or `config.init`'s; with `config.resume`, the checkpoint's
    /// weights, optimiser moments and history.
    fn start(config: &TrainConfig, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let encoder = SignatureEncoder::new(VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        seeded_init(&varmap, config.seed)?;
        let mut parent = String::new();
        let mut normalisation = config.normalisation.unwrap_or_default();
        let mut canvas = match config.canvas {
            Some(chosen) => crate::signature::checked_canvas(chosen)?,
            None => config.modality.canvas()?,
        };
        if let Some(init) = &config.init {
            let weights = load_weights(init, device)?;
            normalisation = match config.normalisation {
                Some(chosen) => chosen,
                None => recorded_normalisation(&weights.metadata)?,
            };
            if config.canvas.is_none() {
                canvas = recorded_canvas(&weights.metadata, init)?;
            }
            load_into(&varmap, &weights.tensors, init)?;
            parent = format!("signet-lite@{}", &weights.sha256[..12]);
        }
        let head = PairHead {
            scale: Var::new(10f32, device)?,
            offset: Var::new(-5f32, device)?,
        };
        let mut vars: Vec<(String, Var)> = {
            let data = varmap
                .data()
                .lock()
                .expect("the variable map is not poisoned");
            let mut vars: Vec<(String, Var)> =
                data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            vars
        };
        if config.loss == Loss::Bce {
            vars.push(("head.scale".into(), head.scale.clone()));
            vars.push(("head.offset".into(), head.offset.clone()));
        }
        let mut optimiser = Adam::new(
            vars,
            AdamConfig {
                learning_rate: config.learning_rate,
                beta1: config.beta1,
                beta2: config.beta2,
                epsilon: 1e-8,
            },
        )?;
        let mut history = Vec::new();
        if config.resume {
            let checkpoint_path = config.out.join(CHECKPOINT_FILE);
            let checkpoint = load_weights(&checkpoint_path, device)?;
            load_into(&varmap, &checkpoint.tensors, &checkpoint_path)?;
            let steps = checkpoint
                .metadata
                .get("adam_steps")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            optimiser.restore(&checkpoint.tensors, steps)?;
            history = checkpoint
                .metadata
                .get("history")
                .and_then(|h| serde_json::from_str(h).ok())
                .unwrap_or_default();
            if let Some(recorded) = checkpoint.metadata.get("parent") {
                parent.clone_from(recorded);
            }
            normalisation = recorded_normalisation(&checkpoint.metadata)?;
            canvas = recorded_canvas(&checkpoint.metadata, &checkpoint_path)?;
        }
        Ok(Self {
            varmap,
            encoder,
            head,
            optimiser,
            parent,
            normalisation,
            canvas,
            history,
        })
    }

    /// One epoch of `steps` steps: (mean loss, images seen), or `None` when cancelled.
    fn epoch(
        &mut self,
        config: &TrainConfig,
        epoch: usize,
        steps: usize,
        data: &Prepared,
        cancel: &AtomicBool,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<Option<(f64, usize)>> {
        let device = data.images.device();
        let mut rng = StdRng::seed_from_u64(config.seed.wrapping_mul(1_000_003) + epoch as u64);
        let (mut loss_sum, mut images) = (0.0, 0usize);
        for step in 1..=steps {
            if cancel.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let (mut rows, labels) = sample_batch(data, config, &mut rng);
            for row in &mut rows {
                *row += (data.scans * rng.random_range(0..=data.variations)) as u32;
            }
            let index = Tensor::from_vec(rows.clone(), rows.len(), device)?;
            let batch = config
                .augmentation
                .apply(&data.images.index_select(&index, 0)?, &mut rng)?;
            let embeddings = self.encoder.forward(&batch)?;
            let loss = batch_loss(
                &embeddings,
                &labels,
                config.loss,
                config.margin,
                Some(&self.head),
                &mut rng,
            )?;
            self.optimiser.step(&loss.backward()?)?;
            let value = f64::from(loss.to_scalar::<f32>()?);
            loss_sum += value;
            images += rows.len();
            on_event(TrainEvent::Step {
                epoch,
                step,
                steps,
                loss: value,
            });
        }
        Ok(Some((loss_sum / steps as f64, images)))
    }

    /// The epoch's checkpoint and history, and the model itself when it is the best yet.
    fn save(
        &self,
        config: &TrainConfig,
        summary: &EpochSummary,
        canvas: (u32, u32),
        (train_names, validation_names): (&[String], &[String]),
    ) -> Result<()> {
        let mut metadata = HashMap::from([
            ("format".to_string(), "vouch-siamese-encoder".to_string()),
            ("modality".to_string(), config.modality.as_str().to_string()),
            ("canvas".to_string(), canvas_metadata(canvas)),
            (
                Normalisation::METADATA_KEY.to_string(),
                self.normalisation.name().to_string(),
            ),
            (
                "loss".to_string(),
                format!("{:?}", config.loss).to_lowercase(),
            ),
            ("epoch".to_string(), summary.epoch.to_string()),
            (
                "validation_eer".to_string(),
                format!("{:.5}", summary.validation_eer),
            ),
            (
                "validation_identities".to_string(),
                validation_names.join(","),
            ),
            (
                TRAIN_IDENTITIES.to_string(),
                serde_json::to_string(train_names).expect("names serialise"),
            ),
            ("parent".to_string(), self.parent.clone()),
            ("command".to_string(), config.command.clone()),
            ("created".to_string(), crate::store::now()),
        ]);
        if summary.best {
            save_weights(
                &config.out.join(MODEL_FILE),
                &encoder_tensors(&self.varmap),
                metadata.clone(),
            )?;
        }
        metadata.insert("adam_steps".into(), self.optimiser.steps().to_string());
        metadata.insert(
            "history".into(),
            serde_json::to_string(&self.history).expect("history serialises"),
        );
        let mut checkpoint = encoder_tensors(&self.varmap);
        checkpoint.extend(self.optimiser.state());
        save_weights(&config.out.join(CHECKPOINT_FILE), &checkpoint, metadata)?;
        std::fs::write(
            config.out.join(HISTORY_FILE),
            serde_json::to_string_pretty(&serde_json::json!({
                "config": config, "history": self.history, TRAIN_IDENTITIES: train_names,
            }))
            .expect("history serialises"),
        )
        .map_err(|e| Error::io(e, config.out.join(HISTORY_FILE)))
    }
}

fn recorded_canvas(metadata: &HashMap<String, String>, path: &Path) -> Result<(u32, u32)> {
    crate::signature::parse_canvas(metadata.get("canvas").map(String::as_str))
        .ok_or_else(|| Error::BadModel {
            reason: "no `canvas` (HxW) in its metadata".into(),
            path: path.to_path_buf(),
        })
        .and_then(crate::signature::checked_canvas)
}

fn recorded_normalisation(metadata: &HashMap<String, String>) -> Result<Normalisation> {
    Normalisation::from_metadata(
        metadata
            .get(Normalisation::METADATA_KEY)
            .map(String::as_str),
    )
}

/// The best model's scorer, fitted on the training writers that have skilled forgeries.
/// Without such writers the model keeps the plain embedding score, which is not an error.
fn fit_signature_scorer(model_path: &Path, train_scans: &[&LabelledScan]) -> String {
    let scans: Vec<LabelledScan> = train_scans.iter().map(|&s| s.clone()).collect();
    match fit_scorer(model_path, &scans, &FitOptions::shipped(), model_path) {
        Ok(_) => "fitted on the training writers with forgeries, as the shipped scorer".into(),
        Err(error) => format!("none, the plain embedding score stays: {error}"),
    }
}

/// Genuine and impostor scores of `model` on the validation identities of `config`'s split
/// (the same identities a run validates on), for before / after comparisons.
pub fn validation_scores(
    model: &crate::signature::SignatureModel,
    config: &TrainConfig,
    scans: &[LabelledScan],
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (_, validation_names) = split_identities(scans, config.validation_fraction, config.seed);
    let validation: Vec<LabelledScan> = scans
        .iter()
        .filter(|s| validation_names.contains(&s.identity))
        .cloned()
        .collect();
    let (embedded, _) = crate::eval::verification::embed_scans(
        model,
        &validation,
        &AtomicBool::new(false),
        &mut |_, _| {},
    )?;
    let report = crate::eval::verification::evaluate(&embedded, 1, 0.5, |r, q| model.score(r, q))?;
    let mut impostor = report.skilled_scores;
    impostor.extend(report.random_scores);
    Ok((report.genuine_scores, impostor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma};

    #[test]
    fn turned_identities_are_new_identities_of_turned_canvases() {
        // One identity, two scans: a dot in the top-left corner of each.
        let dot = GrayImage::from_fn(4, 4, |x, y| Luma([u8::from(x == 0 && y == 0) * 255]));
        let mut sets = vec![vec![dot.clone()], vec![dot]];
        let mut identities = vec![IdentityRows {
            genuine: vec![0],
            forgeries: vec![1],
        }];
        turn_into_new_identities(&mut sets, &mut identities, (4, 4)).unwrap();
        assert_eq!(sets.len(), 8);
        let rows: Vec<(Vec<usize>, Vec<usize>)> = identities
            .iter()
            .map(|i| (i.genuine.clone(), i.forgeries.clone()))
            .collect();
        assert_eq!(
            rows,
            [
                (vec![0], vec![1]),
                (vec![2], vec![3]),
                (vec![4], vec![5]),
                (vec![6], vec![7])
            ]
        );
        // A quarter turn clockwise takes the top-left corner to the top-right.
        let corner = |set: &Vec<GrayImage>| {
            set[0]
                .enumerate_pixels()
                .find(|(_, _, p)| p.0[0] == 255)
                .map(|(x, y, _)| (x, y))
        };
        let corners: Vec<_> = sets.iter().step_by(2).map(corner).collect();
        assert_eq!(
            corners,
            [Some((0, 0)), Some((3, 0)), Some((3, 3)), Some((0, 3))]
        );
    }

    #[test]
    fn a_run_is_reused_only_for_the_epochs_it_finished() {
        let outcome = |finished, epochs_run| RunOutcome {
            finished,
            epochs_run,
            epochs_planned: 12,
        };
        let dir = Path::new("fold-1");
        assert!(outcome(true, 12).reusable_for(12, dir).unwrap());
        assert!(!outcome(true, 12).reusable_for(24, dir).unwrap());
        assert!(!outcome(false, 7).reusable_for(12, dir).unwrap());
        let error = outcome(true, 12)
            .reusable_for(6, dir)
            .unwrap_err()
            .to_string();
        assert!(error.contains("fold-1 ran 12 epochs"), "{error}");
    }

    #[test]
    fn a_signature_canvas_is_never_turned() {
        let error = turn_into_new_identities(&mut Vec::new(), &mut Vec::new(), (150, 220))
            .unwrap_err()
            .to_string();
        assert!(error.contains("square canvas"), "{error}");
    }
}
