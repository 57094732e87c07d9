//! The training tab: data (a folder or manifest, or the enrolled signatures), loss,
//! epochs; a progress bar with live loss and validation EER, cancel; the new version's
//! DET against the active model's on the same validation writers; the activation gate on
//! held-out writers, and a proposal to activate (a governed change).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};

use eframe::egui;
use egui_plot::{Legend, Line, Plot, PlotPoints};

use candle_core::Device;

use super::labelled_path;
use super::palette::palette;
use super::worker::{Request, TrainingInputs};
use crate::context::Context;
use crate::eval::verification::{det_percentages, equal_error_rate};
use crate::train::{
    Loss, RECIPE_LEARNING_RATE, RECIPE_LOSS, TrainConfig, TrainEvent, TrainModality, TrainReport,
};
use crate::types::counted;
use crate::workflow::governance::{GateReport, MIN_GATE_COMPARISONS};

enum Message {
    Event(TrainEvent),
    Finished(Result<Finished, String>),
}

struct Finished {
    report: TrainReport,
    /// (name, genuine, impostor) for the active model and the new one.
    comparisons: Vec<(String, Vec<f32>, Vec<f32>)>,
}

pub struct TrainingTab {
    data: String,
    use_enrolled: bool,
    loss: Loss,
    epochs: usize,
    learning_rate: f64,
    out_root: PathBuf,
    device: Device,
    /// The run's folder while the worker prepares its inputs.
    preparing: Option<PathBuf>,
    cancel: Arc<AtomicBool>,
    messages: Option<Receiver<Message>>,
    pub step: Option<(usize, usize, usize)>,
    /// What the run trains and validates on, once its scans are read.
    split: Option<String>,
    /// (epoch, loss): each step placed at its fraction of its epoch, so the loss and the
    /// validation EER share one axis.
    losses: Vec<[f64; 2]>,
    pub epochs_done: Vec<crate::train::EpochSummary>,
    finished: Option<Result<Finished, String>>,
    /// A manifest of writers the new model never trained on, for its gate.
    heldout: String,
    pub gate: Option<Result<Box<GateReport>, String>>,
}

impl TrainingTab {
    pub fn new(context: &Context) -> Self {
        Self {
            data: String::new(),
            use_enrolled: false,
            loss: RECIPE_LOSS,
            epochs: 10,
            learning_rate: RECIPE_LEARNING_RATE,
            out_root: context.runs_dir(),
            device: context.device.clone(),
            preparing: None,
            cancel: Arc::new(AtomicBool::new(false)),
            messages: None,
            step: None,
            split: None,
            losses: Vec::new(),
            epochs_done: Vec::new(),
            finished: None,
            heldout: String::new(),
            gate: None,
        }
    }

    pub fn running(&self) -> bool {
        self.messages.is_some() || self.preparing.is_some()
    }

    pub fn status(&self) -> String {
        match &self.finished {
            Some(Ok(finished)) if finished.report.cancelled => "Training cancelled".into(),
            Some(Ok(_)) => "Training finished".into(),
            Some(Err(error)) => format!("Training failed: {error}"),
            None if self.running() => "Training…".into(),
            None => String::new(),
        }
    }

    pub fn poll(&mut self) {
        let Some(messages) = &self.messages else {
            return;
        };
        let mut done = false;
        while let Ok(message) = messages.try_recv() {
            match message {
                Message::Event(TrainEvent::Step {
                    epoch,
                    step,
                    steps,
                    loss,
                }) => {
                    self.step = Some((epoch, step, steps));
                    let position = (epoch - 1) as f64 + step as f64 / steps.max(1) as f64;
                    self.losses.push([position, loss]);
                }
                Message::Event(TrainEvent::Epoch(summary)) => self.epochs_done.push(summary),
                Message::Event(TrainEvent::Prepared {
                    train_identities,
                    train_scans,
                    validation_identities,
                    validation_scans,
                }) => {
                    self.split = Some(format!(
                        "Training on {train_scans} scans of {train_identities} writers; \
                         validating on {validation_scans} scans of {validation_identities} \
                         other writers"
                    ))
                }
                Message::Finished(result) => {
                    self.finished = Some(result);
                    done = true;
                }
            }
        }
        if done {
            self.messages = None;
        }
    }

    /// The first half of a start: the worker names the active model (and writes out the
    /// enrolled signatures when asked), then `on_prepared` starts the run.
    fn request_start(&mut self, requests: &mut Vec<Request>) {
        let out = self.out_root.join(format!(
            "signature-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        ));
        requests.push(Request::PrepareTraining {
            enrolled_dir: self.use_enrolled.then(|| out.join("enrolled")),
        });
        self.preparing = Some(out);
        self.finished = None;
        self.gate = None;
    }

    pub fn on_prepared(&mut self, ctx: &egui::Context, inputs: Result<TrainingInputs, String>) {
        let Some(out) = self.preparing.take() else {
            return;
        };
        match inputs {
            Ok(inputs) => self.start(out, inputs, ctx),
            Err(error) => self.finished = Some(Err(error)),
        }
    }

    fn start(&mut self, out: PathBuf, inputs: TrainingInputs, ctx: &egui::Context) {
        let mut train_config =
            TrainConfig::new(TrainModality::Signature, self.loss, self.epochs, out);
        train_config.learning_rate = self.learning_rate;
        train_config.init = Some(inputs.active_model.clone()).filter(|p| p.is_file());
        train_config.command = "vouch window: training tab".into();
        let sources: Vec<PathBuf> = self
            .data
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect();
        let device = self.device.clone();
        let (sender, receiver) = sync_channel(1024);
        self.cancel.store(false, Ordering::Relaxed);
        let cancel = self.cancel.clone();
        let wake = ctx.clone();
        self.messages = Some(receiver);
        self.losses.clear();
        self.epochs_done.clear();
        self.step = None;
        self.split = None;
        let spawned = std::thread::Builder::new()
            .name("vouch-training".into())
            .spawn(move || {
                let result = run_training(
                    &train_config,
                    &sources,
                    inputs,
                    &device,
                    &cancel,
                    &mut |event| {
                        let _ = sender.try_send(Message::Event(event));
                        wake.request_repaint();
                    },
                );
                let _ = sender.send(Message::Finished(result));
                wake.request_repaint();
            });
        if let Err(error) = spawned {
            self.messages = None;
            self.finished = Some(Err(format!("cannot start the training thread: {error}")));
        }
    }

    pub fn on_gated(&mut self, result: Result<Box<GateReport>, String>) {
        self.gate = Some(result);
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, requests: &mut Vec<Request>) {
        ui.heading("Train a new signature model version");
        egui::ScrollArea::vertical().show(ui, |ui| {
            self.settings_ui(ui);
            self.run_ui(ui, requests);
            ui.columns(2, |columns| {
                self.curves_ui(&mut columns[0]);
                self.before_after_ui(&mut columns[1]);
            });
            self.activation_ui(ui, requests);
        });
    }

    fn settings_ui(&mut self, ui: &mut egui::Ui) {
        let label = ui.label("Training data (folders or manifests, one per line)");
        ui.add(
            egui::TextEdit::multiline(&mut self.data)
                .desired_rows(2)
                // Room for a dataset's full path, and for the hint on one line.
                .desired_width(ui.available_width().min(640.0))
                .hint_text("a folder with a sub-folder per writer, or a manifest (CSV)"),
        )
        .labelled_by(label.id);
        ui.checkbox(
            &mut self.use_enrolled,
            "Also train on the enrolled signatures",
        );
        ui.horizontal(|ui| {
            let label = ui.label("Loss");
            egui::ComboBox::from_id_salt("loss")
                .selected_text(format!("{:?}", self.loss))
                .show_ui(ui, |ui| {
                    for loss in [
                        Loss::Contrastive,
                        Loss::Triplet,
                        Loss::Bce,
                        Loss::Prototypical,
                    ] {
                        ui.selectable_value(&mut self.loss, loss, format!("{loss:?}"));
                    }
                })
                .response
                .labelled_by(label.id);
            let label = ui.label("Epochs");
            ui.add(egui::DragValue::new(&mut self.epochs).range(1..=500))
                .labelled_by(label.id);
            let label = ui.label("Learning rate");
            ui.add(
                egui::DragValue::new(&mut self.learning_rate)
                    .range(1e-6..=1e-1)
                    .speed(1e-5),
            )
            .labelled_by(label.id);
        });
        let mut out_text = self.out_root.display().to_string();
        if labelled_path(ui, "Runs folder", &mut out_text).changed() {
            self.out_root = PathBuf::from(out_text);
        }
    }

    /// Start and cancel, the progress of the running epoch, and each finished epoch.
    fn run_ui(&mut self, ui: &mut egui::Ui, requests: &mut Vec<Request>) {
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!self.running(), egui::Button::new("Start training"))
                .clicked()
            {
                self.request_start(requests);
            }
            if ui
                .add_enabled(self.running(), egui::Button::new("Cancel training"))
                .clicked()
            {
                self.cancel.store(true, Ordering::Relaxed);
            }
            ui.label(self.status());
        });
        if let Some(split) = &self.split {
            ui.label(split);
        }
        if let Some((epoch, step, steps)) = self.step {
            ui.add(
                egui::ProgressBar::new(step as f32 / steps.max(1) as f32).text(format!(
                    "epoch {epoch}/{}: step {step}/{steps}",
                    self.epochs
                )),
            );
        }
        // The latest epoch and the one kept; every epoch folded away, so a 100-epoch run
        // does not push the curves and the activation out of the window.
        let describe = |summary: &crate::train::EpochSummary| {
            format!(
                "epoch {}: loss {:.4}, validation EER {:.2}%",
                summary.epoch,
                summary.train_loss,
                100.0 * summary.validation_eer,
            )
        };
        if let Some(latest) = self.epochs_done.last() {
            ui.label(format!("Latest: {}", describe(latest)));
        }
        if let Some(kept) = self.epochs_done.iter().rev().find(|e| e.best) {
            ui.label(format!("Kept (best so far): {}", describe(kept)));
        }
        if !self.epochs_done.is_empty() {
            egui::CollapsingHeader::new(format!("Every epoch ({})", self.epochs_done.len()))
                .id_salt("every-epoch")
                .show(ui, |ui| {
                    for summary in &self.epochs_done {
                        ui.label(describe(summary));
                    }
                });
        }
    }

    fn curves_ui(&self, ui: &mut egui::Ui) {
        if self.losses.is_empty() {
            ui.label("The training loss and the validation EER are drawn here as it trains.");
            return;
        }
        curve_ui(ui, "training loss", "loss", self.losses.clone());
        let eer = self
            .epochs_done
            .iter()
            .map(|e| [e.epoch as f64, 100.0 * e.validation_eer])
            .collect();
        curve_ui(ui, "validation EER", "validation EER %", eer);
    }

    /// The DET of the active model and of the new one on the run's validation writers.
    fn before_after_ui(&self, ui: &mut egui::Ui) {
        let Some(Ok(finished)) = &self.finished else {
            return;
        };
        Plot::new("before-after")
            .height(200.0)
            .legend(Legend::default())
            .x_axis_label("FAR %")
            .y_axis_label("FRR %")
            .show(ui, |plot| {
                for (name, genuine, impostor) in &finished.comparisons {
                    let (eer, _) = equal_error_rate(genuine, impostor);
                    let few = genuine.len().min(impostor.len()) < MIN_GATE_COMPARISONS;
                    plot.line(Line::new(
                        format!(
                            "{name} (EER {:.2}% on {} genuine, {} impostor{})",
                            100.0 * eer,
                            genuine.len(),
                            impostor.len(),
                            if few { ": too few to trust" } else { "" }
                        ),
                        PlotPoints::from(det_percentages(genuine, impostor)),
                    ));
                }
            });
    }

    fn activation_ui(&mut self, ui: &mut egui::Ui, requests: &mut Vec<Request>) {
        if let Some(Ok(finished)) = &self.finished
            && let Some(model) = &finished.report.model
        {
            ui.label(format!("New version: {}", model.display()));
            if finished.report.cancelled {
                ui.colored_label(
                    palette(ui).refused,
                    format!(
                        "This run was cancelled after {}: it cannot be activated.",
                        counted(finished.report.history.len(), "epoch")
                    ),
                );
            } else {
                ui.horizontal(|ui| {
                    labelled_path(ui, "Held-out writers (manifest)", &mut self.heldout);
                    if ui.button("Check and propose").clicked() && !self.heldout.trim().is_empty() {
                        self.gate = None;
                        requests.push(Request::GateAndPropose {
                            model: model.clone(),
                            heldout: self.heldout.trim().into(),
                        });
                    }
                });
            }
        }
        match &self.gate {
            Some(Ok(gate)) => gate_ui(ui, gate),
            Some(Err(text)) => {
                ui.colored_label(palette(ui).refused, text);
            }
            None => {}
        }
    }
}

/// One value against the epochs.
fn curve_ui(ui: &mut egui::Ui, name: &str, y_label: &str, points: Vec<[f64; 2]>) {
    Plot::new(name)
        .height(110.0)
        .x_axis_label("epoch")
        .y_axis_label(y_label)
        .include_x(0.0)
        .include_y(0.0)
        .show(ui, |plot| {
            plot.line(Line::new(name, PlotPoints::from(points)))
        });
}

/// The gate's figures side by side, and its verdict.
fn gate_ui(ui: &mut egui::Ui, gate: &GateReport) {
    let rates = |figures: &crate::workflow::governance::GateFigures| {
        let skilled = figures
            .skilled
            .as_ref()
            .map_or("no forgeries".to_string(), |s| {
                format!(
                    "skilled EER {:.2}%, FAR {:.2}% at {:.2} ({} comparisons)",
                    100.0 * s.eer,
                    100.0 * s.far_at_default,
                    gate.threshold,
                    s.impostor
                )
            });
        format!(
            "{skilled}; other writers EER {:.2}% ({} comparisons); {} genuine",
            100.0 * figures.random.eer,
            figures.random.impostor,
            figures.random.genuine
        )
    };
    ui.label(format!(
        "Gate on {} held-out writers, {} references each:",
        gate.heldout_identities, gate.references
    ));
    ui.label(format!(
        "  new model {}: {}",
        gate.candidate.model,
        rates(&gate.candidate)
    ));
    ui.label(format!(
        "  active model {}: {}",
        gate.active.model,
        rates(&gate.active)
    ));
    if gate.passed {
        ui.colored_label(
            palette(ui).accepted,
            "Passed: proposed for activation (see the Changes tab).",
        );
    } else {
        for reason in &gate.reasons {
            ui.colored_label(palette(ui).refused, format!("Refused: {reason}"));
        }
    }
}

/// The training thread's work: load the scans, train, then score the active model and
/// the new one on the run's validation identities for the before / after plot.
fn run_training(
    config: &TrainConfig,
    sources: &[PathBuf],
    inputs: TrainingInputs,
    device: &Device,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<Finished, String> {
    // As `vouch train` reads them: a writer `1` in one folder and a writer `1` in another
    // are two people, not one.
    let mut scans = crate::dataset::load_all(sources).map_err(|e| e.to_string())?;
    scans.extend(inputs.enrolled);
    if scans.is_empty() {
        return Err(
            "no training data: name a folder or manifest, or use the enrolled signatures".into(),
        );
    }
    let report =
        crate::train::train(config, &scans, device, cancel, on_event).map_err(|e| e.to_string())?;
    let mut comparisons = Vec::new();
    for (name, path) in [
        ("active model", Some(inputs.active_model)),
        ("new model", report.model.clone()),
    ] {
        let Some(path) = path.filter(|p| p.is_file()) else {
            continue;
        };
        let model =
            crate::signature::SignatureModel::load(&path, device).map_err(|e| e.to_string())?;
        let (genuine, impostor) =
            crate::train::validation_scores(&model, config, &scans).map_err(|e| e.to_string())?;
        comparisons.push((name.to_string(), genuine, impostor));
    }
    Ok(Finished {
        report,
        comparisons,
    })
}
