//! The threshold workbench: genuine and impostor score histograms, the DET curve with its
//! EER, a slider with live FAR / FRR / accuracy / F1 / review rate (skilled forgeries and
//! other writers apart), presets that land where their label says, the count of past
//! decisions a change would flip, and proposing the bands (a governed change).

use eframe::egui;
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints, Points, VLine};

use super::labelled_text;
use super::worker::Request;
use crate::eval::verification::{
    Operating, Replay, ScoreSet, THRESHOLD_STEP, det_percentages, equal_error_point, error_rates,
    operating_point, threshold_for_far,
};
use crate::types::{Bands, Modality};

const BINS: usize = 40;

pub struct WorkbenchTab {
    pub modality: Modality,
    manifest: String,
    scores: Option<ScoreSet>,
    /// Every impostor score of `scores`, skilled and random together.
    impostor: Vec<f32>,
    pub error: Option<String>,
    pub threshold: f32,
    review_width: f32,
    saved: Option<Bands>,
    pub replay: Option<Replay>,
    asked_bands: bool,
}

impl Default for WorkbenchTab {
    fn default() -> Self {
        Self {
            modality: Modality::Face,
            manifest: String::new(),
            scores: None,
            impostor: Vec::new(),
            error: None,
            threshold: 0.5,
            review_width: 0.05,
            saved: None,
            replay: None,
            asked_bands: false,
        }
    }
}

impl WorkbenchTab {
    pub fn on_scores(&mut self, result: Result<ScoreSet, String>) {
        match result {
            Ok(scores) => {
                self.impostor = scores.impostor();
                self.scores = Some(scores);
                self.error = None;
            }
            Err(error) => self.error = Some(error),
        }
    }

    pub fn on_bands(&mut self, bands: Bands) {
        self.threshold = bands.high;
        self.review_width = bands.high - bands.low;
        self.saved = Some(bands);
    }

    fn bands(&self) -> Bands {
        Bands {
            low: (self.threshold - self.review_width).max(0.0),
            high: self.threshold,
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, requests: &mut Vec<Request>) {
        if !self.asked_bands {
            self.asked_bands = true;
            requests.push(Request::Bands {
                modality: self.modality,
            });
        }
        if let Some(modality) = super::modality_picker(ui, &mut self.modality) {
            self.scores = None;
            self.replay = None;
            requests.push(Request::Bands { modality });
        }
        ui.horizontal(|ui| {
            if ui.button("Scores from enrolled references").clicked() {
                requests.push(Request::Scores {
                    modality: self.modality,
                    manifest: None,
                });
            }
            if self.modality == Modality::Signature {
                labelled_text(ui, "Labelled manifest", &mut self.manifest);
                if ui.button("Scores from manifest").clicked() && !self.manifest.trim().is_empty() {
                    requests.push(Request::Scores {
                        modality: self.modality,
                        manifest: Some(self.manifest.trim().into()),
                    });
                }
            }
        });
        if let Some(error) = &self.error {
            ui.colored_label(egui::Color32::from_rgb(200, 60, 60), error);
        }
        // Taken out while drawing, so the controls can change the rest of `self`.
        let Some(scores) = self.scores.take() else {
            ui.label("Load scores to see what a threshold costs.");
            return;
        };
        // Skilled forgeries and other writers are different attacks: each has its own EER
        // and curve, never one merged figure.
        let kinds = impostor_kinds(&scores, &self.impostor);
        let eers: Vec<(f64, f32)> = kinds
            .iter()
            .map(|(_, impostor)| equal_error_point(&scores.genuine, impostor))
            .collect();
        let (eer, eer_threshold) = eers[0];
        ui.label(format!(
            "{}: {} genuine scores; {}",
            scores.source,
            scores.genuine.len(),
            kinds
                .iter()
                .zip(&eers)
                .map(|((kind, impostor), (eer, at))| format!(
                    "{} {kind}: EER {:.2}% at {at:.3}",
                    impostor.len(),
                    100.0 * eer
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ));
        let point = self.threshold_ui(ui, requests, &scores, eer_threshold);
        ui.columns(2, |columns| {
            self.histogram_ui(&mut columns[0], &scores);
            self.det_ui(&mut columns[1], &scores, point, eer);
        });
        self.scores = Some(scores);
    }

    /// The threshold and review band, presets, the rates they give, the replay of past
    /// decisions and saving.
    fn threshold_ui(
        &mut self,
        ui: &mut egui::Ui,
        requests: &mut Vec<Request>,
        scores: &ScoreSet,
        eer_threshold: f32,
    ) -> Operating {
        let threshold_label = ui.label("Threshold");
        let slider = ui
            .add(egui::Slider::new(&mut self.threshold, 0.0..=1.0).step_by(THRESHOLD_STEP))
            .labelled_by(threshold_label.id);
        let review_label = ui.label("Review band width");
        ui.add(egui::Slider::new(&mut self.review_width, 0.0..=0.2).step_by(0.005))
            .labelled_by(review_label.id);
        ui.horizontal(|ui| {
            let eer_kind = impostor_kinds(scores, &self.impostor)[0].0;
            if ui.button(format!("Preset: EER ({eer_kind})")).clicked() {
                self.threshold = eer_threshold;
            }
            for (label, target) in [("Preset: FAR ≤ 1%", 0.01), ("Preset: FAR ≤ 0.1%", 0.001)] {
                if ui.button(label).clicked() {
                    // The label holds for every kind of impostor.
                    self.threshold = impostor_kinds(scores, &self.impostor)
                        .iter()
                        .map(|(_, impostor)| threshold_for_far(impostor, target))
                        .fold(0.0, f32::max);
                }
            }
        });
        let bands = self.bands();
        let point = operating_point(&scores.genuine, &self.impostor, bands);
        ui.label(format!(
            "FAR {:.2}%   FRR {:.2}%   accuracy {:.2}%   F1 {:.3}   manual review {:.2}%",
            100.0 * point.far,
            100.0 * point.frr,
            100.0 * point.accuracy,
            point.f1,
            100.0 * point.review_rate
        ));
        if !scores.skilled.is_empty() {
            let far =
                |impostor: &[f32]| 100.0 * error_rates(&scores.genuine, impostor, bands.high).0;
            ui.label(format!(
                "FAR on skilled forgeries {:.2}% ({} comparisons) · on other writers {:.2}% ({})",
                far(&scores.skilled),
                scores.skilled.len(),
                far(&scores.random),
                scores.random.len()
            ));
        }
        if slider.changed() {
            self.replay = None;
        }
        ui.horizontal(|ui| {
            if ui.button("Count decisions that would change").clicked() {
                requests.push(Request::Replay {
                    modality: self.modality,
                    bands,
                });
            }
            if let Some(replay) = self.replay {
                ui.label(format!(
                    "{} of {} past decisions would change",
                    replay.changed, replay.total
                ));
            }
            if ui.button("Propose threshold").clicked() {
                requests.push(Request::ProposeBands {
                    modality: self.modality,
                    bands,
                    scores: Some(scores.clone()),
                });
            }
            if let Some(saved) = self.saved {
                ui.label(format!(
                    "in force: accept ≥ {:.3}, reject < {:.3}",
                    saved.high, saved.low
                ));
            }
        });
        point
    }

    fn histogram_ui(&self, ui: &mut egui::Ui, scores: &ScoreSet) {
        let histogram = |values: &[f32], name: &str, color: egui::Color32| {
            let mut counts = vec![0usize; BINS];
            for &v in values {
                counts[((v.clamp(0.0, 0.9999)) * BINS as f32) as usize] += 1;
            }
            let total = values.len().max(1) as f64;
            BarChart::new(
                name,
                counts
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| {
                        Bar::new((i as f64 + 0.5) / BINS as f64, c as f64 / total)
                            .width(1.0 / BINS as f64)
                    })
                    .collect(),
            )
            .color(color)
        };
        Plot::new("histogram")
            .legend(Legend::default())
            .height(260.0)
            .show(ui, |plot| {
                plot.bar_chart(histogram(
                    &scores.genuine,
                    "genuine",
                    egui::Color32::from_rgb(60, 160, 60),
                ));
                plot.bar_chart(histogram(
                    &self.impostor,
                    "impostor",
                    egui::Color32::from_rgb(200, 60, 60),
                ));
                plot.vline(VLine::new("threshold", f64::from(self.threshold)));
            });
    }

    fn det_ui(&self, ui: &mut egui::Ui, scores: &ScoreSet, point: Operating, eer: f64) {
        // DET: FRR against FAR as the threshold sweeps, one curve per kind of impostor.
        let curves: Vec<(String, Vec<[f64; 2]>)> = impostor_kinds(scores, &self.impostor)
            .into_iter()
            .map(|(kind, impostor)| {
                let mut sweep = det_percentages(&scores.genuine, impostor);
                sweep.dedup();
                (format!("DET, {kind}"), sweep)
            })
            .collect();
        let (far, frr) = (point.far * 100.0, point.frr * 100.0);
        Plot::new("det")
            .legend(Legend::default())
            .height(260.0)
            .x_axis_label("FAR %")
            .y_axis_label("FRR %")
            .show(ui, |plot| {
                for (name, sweep) in curves {
                    plot.line(Line::new(name, PlotPoints::from(sweep)));
                }
                plot.points(
                    Points::new(
                        "EER (first curve)",
                        PlotPoints::from(vec![[100.0 * eer, 100.0 * eer]]),
                    )
                    .radius(5.0),
                );
                plot.points(
                    Points::new("threshold", PlotPoints::from(vec![[far, frr]])).radius(5.0),
                );
            });
    }
}

/// The impostor scores by kind: skilled forgeries and other writers apart when the scores
/// have forgeries, else every impostor together.
fn impostor_kinds<'a>(scores: &'a ScoreSet, all: &'a [f32]) -> Vec<(&'static str, &'a [f32])> {
    if scores.skilled.is_empty() {
        vec![("impostors", all)]
    } else {
        vec![
            ("skilled forgeries", scores.skilled.as_slice()),
            ("other writers", scores.random.as_slice()),
        ]
    }
}
