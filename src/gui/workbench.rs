//! The threshold workbench: genuine and impostor score histograms, DET curves on
//! normal-deviate axes (skilled forgeries and other writers apart), a slider with live
//! FAR / FRR / accuracy / F1 / review rate, presets that land where their label says, the
//! figures ISO/IEC 19795-1 asks for (FNMR at fixed FMRs with intervals, FTA and FTE, the
//! projected false alarms of the site's gallery, problem enrollees), the past decisions a
//! change would flip, and proposing the bands (a governed change).

use std::collections::BTreeMap;

use eframe::egui;
use egui_plot::{
    Bar, BarChart, GridInput, GridMark, HoverPosition, Legend, Line, Plot, PlotPoints, Points,
    VLine,
};

use super::labelled_path;
use super::palette::palette;
use super::worker::Request;
use crate::eval::standards::{
    self, DET_FLOOR, FnmrAtFmr, REPORTED_FMRS, SiteLoad, det_probit, fnmr_at_fmr,
    lowest_supported_fmr, probit, projected_false_alarms,
};
use crate::eval::verification::{
    Replay, ScoreSet, THRESHOLD_STEP, equal_error_point, error_rates, operating_point,
    threshold_for_far,
};
use crate::store::MAX_PERSON_OFFSET;
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
    /// What only changes with the scores: per kind of impostor, its DET curve on
    /// normal-deviate axes and its FNMR at the reported FMRs.
    curves: Vec<KindFigures>,
    pub site: Option<SiteLoad>,
    /// Each person's governed offset from the bands in force.
    offsets: BTreeMap<i64, f32>,
    /// A problem enrollee being acted on: who ("Name (id)") and the offset to propose.
    adjusting: Option<(i64, String, f32)>,
    /// A re-enrolment asked for here, for the window to open on the enrollment tab.
    pub reenrol: Option<(Modality, i64, String)>,
}

struct KindFigures {
    kind: &'static str,
    det: Vec<[f64; 2]>,
    at_fmr: Vec<FnmrAtFmr>,
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
            curves: Vec::new(),
            site: None,
            offsets: BTreeMap::new(),
            adjusting: None,
            reenrol: None,
        }
    }
}

impl WorkbenchTab {
    pub fn on_scores(&mut self, result: Result<ScoreSet, String>) {
        match result {
            Ok(scores) => {
                self.impostor = scores.impostor();
                self.curves = impostor_kinds(&scores, &self.impostor)
                    .into_iter()
                    .map(|(kind, impostor)| KindFigures {
                        kind,
                        det: det_probit(&scores.genuine, impostor),
                        at_fmr: REPORTED_FMRS
                            .iter()
                            .map(|&target| fnmr_at_fmr(&scores.genuine, impostor, target))
                            .collect(),
                    })
                    .collect();
                self.scores = Some(scores);
                self.error = None;
            }
            Err(error) => self.error = Some(error),
        }
    }

    pub fn on_bands(&mut self, bands: Bands, offsets: BTreeMap<i64, f32>) {
        self.threshold = bands.high;
        self.review_width = bands.high - bands.low;
        self.saved = Some(bands);
        self.offsets = offsets;
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
            requests.push(Request::SiteLoad);
        }
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| self.contents_ui(ui, requests));
    }

    fn contents_ui(&mut self, ui: &mut egui::Ui, requests: &mut Vec<Request>) {
        if let Some(modality) = super::modality_picker(ui, &mut self.modality) {
            self.scores = None;
            self.replay = None;
            self.curves.clear();
            requests.push(Request::Bands { modality });
        }
        ui.horizontal(|ui| {
            if ui.button("Scores from enrolled references").clicked() {
                requests.push(Request::Scores {
                    modality: self.modality,
                    manifest: None,
                });
            }
            // Faces: a manifest or a folder per person; its photos in which no face is
            // found are counted as failures to acquire, by cause.
            labelled_path(ui, "Labelled manifest", &mut self.manifest).on_hover_text(
                "CSV path,identity,kind, or a folder with one subfolder per person or writer",
            );
            if ui.button("Scores from manifest").clicked() && !self.manifest.trim().is_empty() {
                requests.push(Request::Scores {
                    modality: self.modality,
                    manifest: Some(self.manifest.trim().into()),
                });
            }
        });
        if let Some(error) = &self.error {
            ui.colored_label(palette(ui).refused, error);
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
        self.threshold_ui(ui, requests, &scores, eer_threshold);
        ui.columns(2, |columns| {
            self.histogram_ui(&mut columns[0], &scores);
            self.det_ui(&mut columns[1], &scores, eer);
        });
        self.standards_ui(ui, &scores);
        self.scores = Some(scores);
        self.zoo_ui(ui, requests);
    }

    /// The threshold and review band, presets, the rates they give, the replay of past
    /// decisions and saving.
    fn threshold_ui(
        &mut self,
        ui: &mut egui::Ui,
        requests: &mut Vec<Request>,
        scores: &ScoreSet,
        eer_threshold: f32,
    ) {
        let slider = ui
            .horizontal(|ui| {
                let threshold_label = ui.label("Threshold");
                let slider = ui
                    .add(
                        egui::Slider::new(&mut self.threshold, 0.0..=1.0)
                            .step_by(THRESHOLD_STEP)
                            .fixed_decimals(4),
                    )
                    .labelled_by(threshold_label.id);
                let review_label = ui.label("Review band width");
                ui.add(egui::Slider::new(&mut self.review_width, 0.0..=0.2).step_by(0.005))
                    .labelled_by(review_label.id);
                slider
            })
            .inner;
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
            if let Some(replay) = &self.replay {
                ui.label(format!(
                    "{} of {} past decisions would change ({} to accept)",
                    replay.changed, replay.total, replay.now_accepted
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
        if let Some(replay) = &self.replay {
            flip_list_ui(ui, replay);
        }
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
        let colours = palette(ui);
        Plot::new("histogram")
            .legend(Legend::default())
            .height(238.0)
            .show(ui, |plot| {
                plot.bar_chart(histogram(&scores.genuine, "genuine", colours.genuine_bars));
                plot.bar_chart(histogram(&self.impostor, "impostor", colours.impostor_bars));
                plot.vline(
                    VLine::new("threshold", f64::from(self.threshold)).color(colours.threshold),
                );
            });
    }

    /// DET curves on normal-deviate axes, labelled in percent, with the operating point,
    /// the EER and the lowest FMR the impostor count can support.
    fn det_ui(&self, ui: &mut egui::Ui, scores: &ScoreSet, eer: f64) {
        let bands = self.bands();
        let colours = palette(ui);
        let floor = self
            .curves
            .iter()
            .map(|c| c.at_fmr.first().map_or(0, |at| at.impostors))
            .min()
            .map(lowest_supported_fmr);
        // A key above the plot rather than a legend inside it, which would hide a curve.
        ui.horizontal_wrapped(|ui| {
            for (curve, colour) in self.curves.iter().zip(colours.curves) {
                ui.colored_label(colour, curve.kind);
            }
            ui.colored_label(colours.threshold, "dots: threshold");
            ui.colored_label(colours.eer, "EER");
            ui.colored_label(colours.supported_floor, "line: lowest FMR supported");
        });
        Plot::new("det")
            .height(220.0)
            .x_axis_label("FMR (false accepts)")
            .y_axis_label("FNMR (false rejects)")
            .x_grid_spacer(det_grid)
            .y_grid_spacer(det_grid)
            .x_axis_formatter(|mark, _| percent_label(mark.value))
            .y_axis_formatter(|mark, _| percent_label(mark.value))
            .label_formatter(|hover| {
                let (HoverPosition::NearDataPoint { position, .. }
                | HoverPosition::Elsewhere { position }) = hover;
                Some(format!(
                    "FMR {}\nFNMR {}",
                    percent_label(position.x),
                    percent_label(position.y)
                ))
            })
            .default_x_bounds(probit(DET_FLOOR), probit(0.5))
            .default_y_bounds(probit(DET_FLOOR), probit(0.5))
            .show(ui, |plot| {
                for (curve, colour) in self.curves.iter().zip(colours.curves) {
                    plot.line(
                        Line::new(
                            format!("DET, {}", curve.kind),
                            PlotPoints::from(curve.det.clone()),
                        )
                        .color(colour),
                    );
                }
                if let Some(floor) = floor {
                    plot.vline(
                        VLine::new("lowest FMR these impostors support", probit(floor))
                            .color(colours.supported_floor),
                    );
                }
                plot.points(
                    Points::new(
                        "EER (first curve)",
                        PlotPoints::from(vec![[probit(eer), probit(eer)]]),
                    )
                    .color(colours.eer)
                    .radius(5.0),
                );
                // The threshold sits at a different point of each kind's curve.
                let points: Vec<[f64; 2]> = impostor_kinds(scores, &self.impostor)
                    .into_iter()
                    .map(|(_, impostor)| {
                        let point = operating_point(&scores.genuine, impostor, bands);
                        [probit(point.far), probit(point.frr)]
                    })
                    .collect();
                plot.points(
                    Points::new("threshold", PlotPoints::from(points))
                        .color(colours.threshold)
                        .radius(5.0),
                );
            });
    }

    /// FNMR at the reported FMRs per kind of impostor, failure to enrol and acquire, the
    /// site's projected false alarms and the problem enrollees at the threshold.
    fn standards_ui(&self, ui: &mut egui::Ui, scores: &ScoreSet) {
        ui.heading("Figures for the report (ISO/IEC 19795-1)");
        egui::Grid::new("fnmr at fmr").striped(true).show(ui, |ui| {
            for title in [
                "impostors",
                "at FMR ≤",
                "threshold",
                "false matches",
                "FNMR",
                "95% interval",
                "",
            ] {
                ui.strong(title);
            }
            ui.end_row();
            for curve in &self.curves {
                for at in &curve.at_fmr {
                    ui.label(curve.kind);
                    ui.label(format!("{}%", 100.0 * at.target_fmr));
                    ui.label(format!("{:.4}", at.threshold));
                    ui.label(format!("{} of {}", at.false_matches, at.impostors));
                    ui.label(format!(
                        "{:.2}% ({} of {})",
                        100.0 * at.fnmr,
                        at.false_non_matches,
                        at.genuine
                    ));
                    ui.label(format!(
                        "{:.2}-{:.2}%",
                        100.0 * at.fnmr_interval.0,
                        100.0 * at.fnmr_interval.1
                    ));
                    if at.supported {
                        ui.label("");
                    } else {
                        ui.colored_label(
                            palette(ui).attention,
                            format!(
                                "not supported: {} impostors show FMR down to {:.2}% only",
                                at.impostors,
                                100.0 * lowest_supported_fmr(at.impostors)
                            ),
                        );
                    }
                    ui.end_row();
                }
            }
        });
        ui.label(match &scores.acquisition {
            Some(a) => a.to_string(),
            None => "FTE and FTA: not measured on references already enrolled (each was accepted at enrollment); load a labelled manifest to measure them.".into(),
        });
        if let Some(site) = self.site.filter(|_| self.modality == Modality::Face) {
            let (far, _) = error_rates(&[], &self.impostor, self.threshold);
            let (fpir, per_day) = projected_false_alarms(site, far);
            ui.label(format!(
                "This site: {} people enrolled, about {:.0} punches a day. At FMR {:.3}% a kiosk search matches the wrong person {:.3}% of the time (FPIR, about N x FMR): about {:.2} wrong-person punches a day.",
                site.enrolled,
                site.searches_per_day,
                100.0 * far,
                100.0 * fpir,
                per_day
            ));
        }
    }

    /// Problem enrollees, each at their own threshold (this one, moved by their offset),
    /// with what can be done about them: a governed offset, or re-enrolment.
    fn zoo_ui(&mut self, ui: &mut egui::Ui, requests: &mut Vec<Request>) {
        let Some(scores) = &self.scores else {
            return;
        };
        let offset_of = |id: Option<i64>| {
            id.and_then(|id| self.offsets.get(&id).copied())
                .unwrap_or(0.0)
        };
        let zoo = standards::zoo(
            &scores.per_identity,
            |s| (self.threshold + offset_of(s.person_id)).clamp(0.0, 1.0),
            5,
        );
        ui.label(egui::RichText::new("Problem enrollees at this threshold").strong());
        if zoo.goats.is_empty() && zoo.lambs.is_empty() {
            ui.label("None: nobody is often rejected or often impersonated at this threshold.");
        }
        let mut chosen = None;
        for (kind, entries) in [
            ("often rejected (goat)", &zoo.goats),
            ("often impersonated (lamb)", &zoo.lambs),
        ] {
            for entry in entries {
                ui.horizontal(|ui| {
                    let offset = offset_of(entry.person_id);
                    ui.label(format!(
                        "{}: {kind}, {} of {} at {:.3}{}",
                        entry.identity,
                        entry.errors,
                        entry.attempts,
                        entry.threshold,
                        if offset != 0.0 {
                            format!(" (own offset {offset:+.3})")
                        } else {
                            String::new()
                        }
                    ));
                    if let Some(person_id) = entry.person_id
                        && ui.button(format!("Act on {}", entry.identity)).clicked()
                    {
                        chosen = Some((person_id, entry.identity.clone(), offset));
                    }
                });
            }
        }
        if chosen.is_some() {
            self.adjusting = chosen;
        }
        let Some((person_id, label, mut offset)) = self.adjusting.clone() else {
            return;
        };
        ui.horizontal(|ui| {
            ui.label(format!("{label}: own offset (positive is stricter)"));
            ui.add(
                egui::DragValue::new(&mut offset)
                    .range(-MAX_PERSON_OFFSET..=MAX_PERSON_OFFSET)
                    .speed(0.005)
                    .fixed_decimals(3),
            );
            self.adjusting = Some((person_id, label.clone(), offset));
            if ui.button("Propose offset").clicked() {
                requests.push(Request::ProposeOffset {
                    modality: self.modality,
                    person_id,
                    offset,
                    scores: self.scores.clone(),
                });
            }
            if ui.button("Re-enrol…").clicked() {
                self.reenrol = Some((self.modality, person_id, label.clone()));
            }
            if ui.button("Close").clicked() {
                self.adjusting = None;
            }
        });
    }
}

/// The decisions a change would flip, newest first, behind a fold.
fn flip_list_ui(ui: &mut egui::Ui, replay: &Replay) {
    if replay.flips.is_empty() {
        return;
    }
    egui::CollapsingHeader::new(format!(
        "Show the {} decisions that would change",
        replay.changed
    ))
    .show(ui, |ui| {
        egui::ScrollArea::vertical()
            .id_salt("flips")
            .max_height(160.0)
            .show(ui, |ui| {
                for (past, after) in replay.flips.iter().rev() {
                    ui.label(format!(
                        "{}  {}  {}  score {:.3}: {:?} becomes {:?}",
                        super::local_time(&past.at),
                        past.what,
                        past.person.as_deref().unwrap_or("(deleted person)"),
                        past.score,
                        past.decision,
                        after
                    ));
                }
            });
    });
}

/// Grid lines at the rates people read: 0.001%, 0.01%, 0.1%, 1%, 2%, 5%, 10%, 20%, 40%.
fn det_grid(input: GridInput) -> Vec<GridMark> {
    [1e-5, 1e-4, 1e-3, 1e-2, 0.02, 0.05, 0.1, 0.2, 0.4]
        .into_iter()
        .map(probit)
        .filter(|v| (input.bounds.0..=input.bounds.1).contains(v))
        .map(|value| GridMark {
            value,
            step_size: 1.0,
        })
        .collect()
}

/// A normal deviate read back as a rate, in percent.
fn percent_label(deviate: f64) -> String {
    let rate = 0.5 * puruspe::erfc(-deviate / std::f64::consts::SQRT_2);
    let percent = 100.0 * rate;
    if percent >= 1.0 {
        format!("{percent:.0}%")
    } else {
        format!("{}%", format!("{percent:.3}").trim_end_matches('0'))
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
