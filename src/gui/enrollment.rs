//! Enrollment: reference photos (or signature scans) for a new person with live quality
//! feedback, the duplicate-identity warning, and the people list with thumbnails, search
//! and delete (after a confirmation).

use std::path::PathBuf;

use eframe::egui;

use super::palette::palette;
use super::worker::{PersonRow, Request};
use super::{labelled_text, texture};
use crate::types::{Modality, counted};
use crate::workflow::{EnrollReport, EnrollRequest, NEEDS_MORE_REFERENCES, needs_more_references};

pub struct EnrollmentTab {
    pub modality: Modality,
    name: String,
    external_id: String,
    /// One path per line.
    images: String,
    force: bool,
    feedback: Vec<(PathBuf, Result<String, String>)>,
    outcome: Option<Result<String, String>>,
    /// What the last enrolment still needs (too few references), said beside its outcome.
    outcome_advice: Option<&'static str>,
    search: String,
    people: Vec<(PersonRow, Option<egui::TextureHandle>)>,
    /// Whether `people` is the worker's answer for this modality, not a list still coming.
    people_loaded: bool,
    confirm_delete: Option<(i64, String)>,
    /// Re-enrolment of an enrolled person (their id, and "Name (id)"): the new references
    /// replace theirs.
    reenrolling: Option<(i64, String)>,
    /// A coached capture at the camera, while one runs.
    coaching: Option<CoachingView>,
    /// What the last coached capture kept.
    capture_note: Option<String>,
    /// A kiosk PIN being set: for whom (employee id), and the digits.
    pin_for: String,
    new_pin: String,
}

/// What the coach last said, and how far the capture is.
#[derive(Default)]
struct CoachingView {
    /// The next camera frame starts the capture.
    first: bool,
    advice: Option<&'static str>,
    seen: usize,
    good: usize,
}

impl Default for EnrollmentTab {
    fn default() -> Self {
        Self {
            modality: Modality::Face,
            name: String::new(),
            external_id: String::new(),
            images: String::new(),
            force: false,
            feedback: Vec::new(),
            outcome: None,
            outcome_advice: None,
            search: String::new(),
            people: Vec::new(),
            people_loaded: false,
            confirm_delete: None,
            reenrolling: None,
            coaching: None,
            capture_note: None,
            pin_for: String::new(),
            new_pin: String::new(),
        }
    }
}

impl EnrollmentTab {
    /// While a coached capture runs, whether the next camera frame is its first.
    pub fn coaching_first(&mut self) -> Option<bool> {
        let coaching = self.coaching.as_mut()?;
        Some(std::mem::take(&mut coaching.first))
    }

    pub fn stop_coaching(&mut self) {
        self.coaching = None;
    }

    /// The coach's word on a frame; when the capture ended, the photos it kept (added to
    /// the reference list, to be checked).
    pub fn on_coached(
        &mut self,
        advice: Option<&'static str>,
        seen: usize,
        good: usize,
        saved: Option<Result<Vec<PathBuf>, String>>,
    ) -> Result<Vec<PathBuf>, String> {
        if let Some(coaching) = &mut self.coaching {
            coaching.advice = advice;
            coaching.seen = seen;
            coaching.good = good;
        }
        let Some(saved) = saved else {
            return Ok(Vec::new());
        };
        self.coaching = None;
        let paths = saved?;
        for path in &paths {
            self.add_image(path);
        }
        self.capture_note = Some(if paths.is_empty() {
            format!(
                "None of the {seen} frames was good enough: follow the advice and capture again."
            )
        } else {
            format!(
                "Kept the best {} of {good} good frames (of {seen}).",
                paths.len()
            )
        });
        Ok(paths)
    }

    fn coaching_ui(&mut self, ui: &mut egui::Ui, preview: Option<(egui::TextureId, [f32; 2])>) {
        let Some(coaching) = &self.coaching else {
            if let Some(note) = &self.capture_note {
                ui.label(note);
            }
            return;
        };
        if let Some((texture, [width, height])) = preview {
            let scale = 320.0 / width.max(1.0);
            ui.image((texture, egui::vec2(width * scale, height * scale)));
        }
        let (text, colour) = match coaching.advice {
            Some(advice) => (advice, palette(ui).attention),
            None => ("Good: hold it there.", palette(ui).accepted),
        };
        ui.label(egui::RichText::new(text).size(24.0).color(colour));
        ui.label(format!(
            "{} good frames of {} looked at ({} at most; the best {} are kept)",
            coaching.good,
            coaching.seen,
            crate::enroll::CAPTURE_FRAMES,
            crate::enroll::CAPTURE_KEEP
        ));
        if ui.button("Stop capture").clicked() {
            self.coaching = None;
        }
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.images
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect()
    }

    /// Starts re-enrolling someone (from the people list or the workbench's problem
    /// enrollees).
    pub fn start_reenrol(&mut self, modality: Modality, person_id: i64, label: String) {
        self.modality = modality;
        self.reenrolling = Some((person_id, label));
        self.images.clear();
        self.feedback.clear();
        self.outcome = None;
        self.outcome_advice = None;
    }

    pub fn on_pin_set(&mut self, result: Result<String, String>) {
        self.outcome = Some(result);
        self.outcome_advice = None;
    }

    pub fn on_enrolled(&mut self, result: Result<EnrollReport, String>) -> Modality {
        let verb = if self.reenrolling.is_some() {
            "Re-enrolled"
        } else {
            "Enrolled"
        };
        self.outcome_advice = result.as_ref().ok().and_then(|report| report.advice);
        self.outcome = Some(result.map(|report| {
            let mut text = format!(
                "{verb} {} ({}) with {}.",
                report.name,
                report.external_id,
                counted(report.enrolled, "reference")
            );
            for rejected in report.rejected {
                text.push_str(&format!(
                    "\nRejected {}: {}",
                    rejected.path.display(),
                    rejected.reason
                ));
            }
            text
        }));
        if matches!(self.outcome, Some(Ok(_))) {
            self.name.clear();
            self.external_id.clear();
            self.images.clear();
            self.feedback.clear();
            self.force = false;
            self.reenrolling = None;
        }
        self.modality
    }

    pub fn add_image(&mut self, path: &std::path::Path) {
        if !self.images.is_empty() && !self.images.ends_with('\n') {
            self.images.push('\n');
        }
        self.images.push_str(&format!("{}\n", path.display()));
    }

    pub fn on_assessed(&mut self, path: PathBuf, verdict: Result<String, String>) {
        self.feedback.retain(|(p, _)| *p != path);
        self.feedback.push((path, verdict));
    }

    pub fn on_people(&mut self, ctx: &egui::Context, rows: Vec<PersonRow>) {
        self.people_loaded = true;
        self.people = rows
            .into_iter()
            .map(|row| {
                let handle = row
                    .thumbnail
                    .as_ref()
                    .map(|t| texture(ctx, &format!("person-{}", row.person.id), t));
                (row, handle)
            })
            .collect();
    }

    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        requests: &mut Vec<Request>,
        camera_frame: Option<&image::RgbImage>,
        preview: Option<(egui::TextureId, [f32; 2])>,
    ) {
        if let Some(modality) = super::modality_picker(ui, &mut self.modality) {
            self.reenrolling = None;
            // The other modality's people are not shown under this one while its list comes.
            self.people.clear();
            self.people_loaded = false;
            requests.push(Request::People { modality });
        }
        ui.columns(2, |columns| {
            self.new_person_ui(&mut columns[0], requests, camera_frame);
            if self.modality == Modality::Face {
                self.coaching_ui(&mut columns[0], preview);
            }
            self.people_ui(&mut columns[1], requests);
        });
    }

    fn new_person_ui(
        &mut self,
        ui: &mut egui::Ui,
        requests: &mut Vec<Request>,
        camera_frame: Option<&image::RgbImage>,
    ) {
        match &self.reenrolling {
            Some((_, label)) => {
                ui.heading(format!("Re-enrol {label}"));
                ui.label("The new references replace all of theirs; the old ones are kept if none is usable.");
            }
            None => {
                ui.heading("New person");
                labelled_text(ui, "Name", &mut self.name);
                labelled_text(ui, "Employee or account id", &mut self.external_id);
            }
        }
        let label = ui.label("Reference images (one path per line, or drop files here)");
        ui.add(egui::TextEdit::multiline(&mut self.images).desired_rows(4))
            .labelled_by(label.id);
        for path in super::dropped_paths(ui.ctx()) {
            self.add_image(&path);
        }
        ui.horizontal(|ui| {
            if self.modality == Modality::Face && ui.button("Check quality").clicked() {
                for path in self.paths() {
                    requests.push(Request::AssessFace { path });
                }
            }
            // Frames come from the kiosk's camera: start it on the Kiosk tab.
            if self.modality == Modality::Face
                && ui
                    .add_enabled(camera_frame.is_some(), egui::Button::new("Capture frame"))
                    .on_disabled_hover_text("Start the camera on the Kiosk tab")
                    .clicked()
                && let Some(frame) = camera_frame
            {
                requests.push(Request::Capture {
                    frame: frame.clone(),
                });
            }
            if self.modality == Modality::Face
                && ui
                    .add_enabled(
                        camera_frame.is_some() && self.coaching.is_none(),
                        egui::Button::new("Capture with coaching"),
                    )
                    .on_disabled_hover_text("Start the camera on the Kiosk tab")
                    .clicked()
            {
                self.capture_note = None;
                self.coaching = Some(CoachingView {
                    first: true,
                    ..CoachingView::default()
                });
            }
        });
        // Only faces are checked against everyone enrolled; a signature is checked
        // against its own account's references at the desk.
        if self.reenrolling.is_none() && self.modality == Modality::Face {
            ui.checkbox(
                &mut self.force,
                "Enroll even if the face matches someone else",
            );
        }
        for (path, verdict) in &self.feedback {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            match verdict {
                Ok(text) => ui.colored_label(palette(ui).accepted, format!("{name}: {text}")),
                Err(text) => ui.colored_label(palette(ui).refused, format!("{name}: {text}")),
            };
        }
        if let Some((person_id, _)) = self.reenrolling {
            ui.horizontal(|ui| {
                let ready = !self.paths().is_empty();
                if ui
                    .add_enabled(ready, egui::Button::new("Replace references"))
                    .clicked()
                {
                    requests.push(Request::Reenroll {
                        person_id,
                        images: self.paths(),
                    });
                }
                if ui.button("Cancel re-enrolment").clicked() {
                    self.reenrolling = None;
                }
            });
            self.outcome_ui(ui);
            return;
        }
        let ready = !self.name.trim().is_empty()
            && !self.external_id.trim().is_empty()
            && !self.paths().is_empty();
        if ui.add_enabled(ready, egui::Button::new("Enroll")).clicked() {
            let request = EnrollRequest {
                name: self.name.trim().to_string(),
                external_id: self.external_id.trim().to_string(),
                images: self.paths(),
            };
            requests.push(match self.modality {
                Modality::Face => Request::EnrollFace {
                    request,
                    force: self.force,
                },
                Modality::Signature => Request::EnrollSignature { request },
            });
        }
        self.outcome_ui(ui);
    }

    fn outcome_ui(&self, ui: &mut egui::Ui) {
        match &self.outcome {
            Some(Ok(text)) => {
                ui.colored_label(palette(ui).accepted, text);
                if let Some(advice) = self.outcome_advice {
                    // Done, but not yet to be trusted alone: the desk's colour for a second look.
                    ui.colored_label(palette(ui).attention, advice);
                }
            }
            Some(Err(text)) => {
                ui.colored_label(palette(ui).refused, format!("Not enrolled: {text}"));
            }
            None => {}
        }
    }

    /// A kiosk PIN for someone enrolled: asked when the camera is not sure it is them.
    fn pin_ui(&mut self, ui: &mut egui::Ui, requests: &mut Vec<Request>) {
        ui.horizontal(|ui| {
            let label = ui.label("Kiosk PIN for id");
            ui.add(egui::TextEdit::singleline(&mut self.pin_for).desired_width(90.0))
                .labelled_by(label.id);
            let label = ui.label("PIN");
            ui.add(
                egui::TextEdit::singleline(&mut self.new_pin)
                    .password(true)
                    .desired_width(80.0),
            )
            .labelled_by(label.id);
            if ui.button("Set PIN").clicked() {
                requests.push(Request::SetPin {
                    external_id: self.pin_for.trim().to_string(),
                    pin: std::mem::take(&mut self.new_pin),
                });
            }
        });
    }

    fn people_ui(&mut self, ui: &mut egui::Ui, requests: &mut Vec<Request>) {
        ui.heading("Enrolled");
        if self.modality == Modality::Face {
            self.pin_ui(ui, requests);
        }
        labelled_text(ui, "Search people", &mut self.search);
        let needle = self.search.trim().to_lowercase();
        let found = |row: &&(PersonRow, Option<egui::TextureHandle>)| {
            let person = &row.0.person;
            needle.is_empty()
                || person.name.to_lowercase().contains(&needle)
                || person.external_id.to_lowercase().contains(&needle)
        };
        if !self.people_loaded {
            ui.label("Reading who is enrolled…");
        } else if self.people.is_empty() {
            ui.label("Nobody is enrolled yet.");
        } else if !self.people.iter().any(|row| found(&row)) {
            ui.label(format!(
                "Nobody enrolled matches \u{201c}{}\u{201d}.",
                self.search.trim()
            ));
        }
        let mut reenrol = None;
        egui::ScrollArea::vertical()
            .id_salt("people")
            .show(ui, |ui| {
                for (row, thumbnail) in self.people.iter().filter(found) {
                    let person = &row.person;
                    // Wrapped: a long name pushes the buttons under it, not off the screen.
                    ui.horizontal_wrapped(|ui| {
                        if let Some(handle) = thumbnail {
                            // Its own proportions: a signature squeezed square is not its
                            // writer's.
                            let size = handle.size_vec2();
                            let scale = (48.0 / size.y).min(144.0 / size.x);
                            ui.image((handle.id(), size * scale));
                        }
                        ui.label(format!(
                            "{} ({}) · {} · since {}",
                            person.name,
                            person.external_id,
                            counted(person.templates, "reference"),
                            super::local_time_as(&person.created_at, "%Y-%m-%d")
                        ));
                        if needs_more_references(person) {
                            // Whole, on the next line if it must, never split mid-phrase.
                            let mark = egui::RichText::new(NEEDS_MORE_REFERENCES)
                                .color(palette(ui).attention);
                            ui.add(egui::Label::new(mark).extend());
                        }
                        if ui
                            .button(format!("Re-enrol {}", person.external_id))
                            .clicked()
                        {
                            reenrol = Some((
                                person.id,
                                format!("{} ({})", person.name, person.external_id),
                            ));
                        }
                        if ui
                            .button(format!("Delete {}", person.external_id))
                            .clicked()
                        {
                            self.confirm_delete = Some((person.id, person.name.clone()));
                        }
                    });
                }
            });
        if let Some((person_id, label)) = reenrol {
            self.start_reenrol(self.modality, person_id, label);
        }
        if let Some((person_id, name)) = self.confirm_delete.clone() {
            ui.separator();
            ui.label(format!(
                "Delete {name} and all their references? The audit log keeps a record."
            ));
            ui.horizontal(|ui| {
                if ui.button("Confirm delete").clicked() {
                    requests.push(Request::Delete { person_id });
                    self.confirm_delete = None;
                }
                if ui.button("Keep").clicked() {
                    self.confirm_delete = None;
                }
            });
        }
    }
}
