//! The threshold workbench: genuine and impostor score histograms, the DET curve with its
//! EER, a slider with live FAR / FRR / accuracy / F1 / review rate, presets, the count of
//! past decisions a change would flip, and saving (audited).

use eframe::egui;
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints, Points, VLine};

use super::labelled_text;
use super::worker::Request;
use crate::eval::verification::{
    Operating, Replay, ScoreSet, det_percentages, equal_error_rate, operating_point,
};
use crate::types::{Bands, Modality};

const BINS: usize = 40;

pub struct WorkbenchTab {
    modality: Modality,
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

    pub fn on_saved(&mut self, bands: Bands) {
        self.saved = Some(bands);
        self.replay = None;
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
        let (eer, eer_threshold) = equal_error_rate(&scores.genuine, &self.impostor);
        ui.label(format!(
            "{}: {} genuine and {} impostor scores; EER {:.2}% at {:.3}",
            scores.source,
            scores.genuine.len(),
            self.impostor.len(),
            100.0 * eer,
            eer_threshold
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
            .add(egui::Slider::new(&mut self.threshold, 0.0..=1.0).step_by(0.001))
            .labelled_by(threshold_label.id);
        let review_label = ui.label("Review band width");
        ui.add(egui::Slider::new(&mut self.review_width, 0.0..=0.2).step_by(0.005))
            .labelled_by(review_label.id);
        ui.horizontal(|ui| {
            if ui.button("Preset: EER").clicked() {
                self.threshold = eer_threshold;
            }
            if ui.button("Preset: FAR ≤ 0.1%").clicked() {
                let mut sorted = self.impostor.clone();
                sorted.sort_by(f32::total_cmp);
                let allowed = (sorted.len() as f64 * 0.001).floor() as usize;
                self.threshold = sorted
                    .get(sorted.len().saturating_sub(allowed + 1))
                    .map_or(1.0, |s| (s + 1e-4).min(1.0));
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
            if ui.button("Save threshold").clicked() {
                requests.push(Request::SaveBands {
                    modality: self.modality,
                    bands,
                });
            }
            if let Some(saved) = self.saved {
                ui.label(format!(
                    "saved: accept ≥ {:.3}, reject < {:.3}",
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
        // DET: FRR against FAR as the threshold sweeps.
        let mut sweep = det_percentages(&scores.genuine, &self.impostor);
        sweep.dedup();
        let (far, frr) = (point.far * 100.0, point.frr * 100.0);
        Plot::new("det")
            .legend(Legend::default())
            .height(260.0)
            .x_axis_label("FAR %")
            .y_axis_label("FRR %")
            .show(ui, |plot| {
                plot.line(Line::new("DET", PlotPoints::from(sweep)));
                plot.points(
                    Points::new("EER", PlotPoints::from(vec![[100.0 * eer, 100.0 * eer]]))
                        .radius(5.0),
                );
                plot.points(
                    Points::new("threshold", PlotPoints::from(vec![[far, frr]])).radius(5.0),
                );
            });
    }
}
