//! Attendance for a manager: each person's local days over a period (first in, last out,
//! hours, a missing check-out, corrections) and the totals per person; a supervisor adds
//! a forgotten punch here, which is a new punch with its reason in the audit log.

use std::time::{Duration, Instant};

use chrono::{Datelike, Local, NaiveDate};
use eframe::egui;

use super::labelled_text;
use super::palette::palette;
use super::worker::Request;
use crate::attendance::{DaySummary, PeriodReport, PeriodSummary, period};
use crate::store::AttendanceRecord;
use crate::types::PunchKind;

/// How long a note stays.
const NOTE_SHOWN: Duration = Duration::from_secs(8);

pub struct AttendanceTab {
    from: String,
    to: String,
    days: Vec<DaySummary>,
    totals: Vec<PeriodSummary>,
    corrections: Vec<AttendanceRecord>,
    /// What the last request said (an error, or the correction made), and when.
    note: Option<(String, bool, Instant)>,
    correction_id: String,
    correction_kind: PunchKind,
    correction_at: String,
    correction_reason: String,
    /// The period was asked for once, when the tab was first opened.
    asked: bool,
}

impl Default for AttendanceTab {
    fn default() -> Self {
        let today = Local::now().date_naive();
        Self {
            from: today.with_day(1).unwrap_or(today).to_string(),
            to: today.to_string(),
            days: Vec::new(),
            totals: Vec::new(),
            corrections: Vec::new(),
            note: None,
            correction_id: String::new(),
            correction_kind: PunchKind::Out,
            correction_at: format!("{} 17:00", today),
            correction_reason: String::new(),
            asked: false,
        }
    }
}

fn hours(minutes: i64) -> String {
    format!("{}:{:02}", minutes / 60, minutes % 60)
}

impl AttendanceTab {
    /// The request for the period in the fields, or why there is none.
    pub fn report_request(&mut self) -> Option<Request> {
        let parse = |text: &str, which: &str| {
            NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                .map_err(|_| format!("the {which} date {text:?} is not like 2026-12-01"))
        };
        match (parse(&self.from, "first"), parse(&self.to, "last")) {
            (Ok(from), Ok(to)) => Some(Request::Hours { from, to }),
            (Err(error), _) | (_, Err(error)) => {
                self.say(error, false);
                None
            }
        }
    }

    pub fn on_hours(&mut self, result: Result<PeriodReport, String>) {
        match result {
            Ok(report) => {
                self.totals = period(&report.days);
                self.days = report.days;
                self.corrections = report.corrections;
            }
            Err(error) => self.say(error, false),
        }
    }

    fn say(&mut self, text: String, good: bool) {
        self.note = Some((text, good, Instant::now()));
    }

    pub fn on_corrected(&mut self, result: Result<AttendanceRecord, String>) {
        match result {
            Ok(record) => {
                self.correction_reason.clear();
                let said = format!(
                    "Added a check-{} for {} at {}.",
                    record.kind,
                    record.name.as_deref().unwrap_or_default(),
                    self.correction_at.trim()
                );
                self.say(said, true);
            }
            Err(error) => self.say(error, false),
        }
    }

    /// `may_correct`: whether the session may add punches (a supervisor).
    pub fn ui(&mut self, ui: &mut egui::Ui, requests: &mut Vec<Request>, may_correct: bool) {
        if !self.asked {
            self.asked = true;
            requests.extend(self.report_request());
        }
        ui.horizontal(|ui| {
            labelled_text(ui, "From", &mut self.from);
            labelled_text(ui, "To", &mut self.to);
            let today = Local::now().date_naive();
            let mut period = None;
            if ui.button("Today").clicked() {
                period = Some((today, today));
            }
            if ui.button("This month").clicked() {
                period = Some((today.with_day(1).unwrap_or(today), today));
            }
            if let Some((from, to)) = period {
                self.from = from.to_string();
                self.to = to.to_string();
            }
            if (ui.button("Show").clicked() || period.is_some())
                && let Some(request) = self.report_request()
            {
                requests.push(request);
            }
        });
        if let Some((text, good, at)) = &self.note {
            if at.elapsed() < NOTE_SHOWN {
                let colour = if *good {
                    palette(ui).accepted
                } else {
                    palette(ui).attention
                };
                ui.colored_label(colour, text);
                ui.ctx().request_repaint_after(NOTE_SHOWN - at.elapsed());
            } else {
                self.note = None;
            }
        }
        if may_correct {
            self.correction_ui(ui, requests);
        }
        ui.separator();
        egui::ScrollArea::vertical().show(ui, |ui| {
            self.days_ui(ui);
            ui.add_space(12.0);
            self.totals_ui(ui);
            ui.add_space(12.0);
            self.corrections_ui(ui);
        });
    }

    fn correction_ui(&mut self, ui: &mut egui::Ui, requests: &mut Vec<Request>) {
        ui.collapsing("Add a forgotten punch", |ui| {
            ui.label("A correction is a new punch with its reason in the audit log; no punch is ever changed.");
            ui.horizontal(|ui| {
                labelled_text(ui, "Employee id", &mut self.correction_id);
                ui.radio_value(&mut self.correction_kind, PunchKind::In, "check-in");
                ui.radio_value(&mut self.correction_kind, PunchKind::Out, "check-out");
                labelled_text(ui, "Local time", &mut self.correction_at);
            });
            ui.horizontal(|ui| {
                labelled_text(ui, "Reason", &mut self.correction_reason);
                if ui.button("Add punch").clicked() {
                    match crate::attendance::parse_local_time(&self.correction_at) {
                        Ok(at) => requests.push(Request::CorrectPunch {
                            external_id: self.correction_id.trim().to_string(),
                            kind: self.correction_kind,
                            at,
                            reason: self.correction_reason.trim().to_string(),
                        }),
                        Err(error) => self.say(error.to_string(), false),
                    }
                }
            });
        });
    }

    fn days_ui(&self, ui: &mut egui::Ui) {
        ui.heading("Days");
        if self.days.is_empty() {
            ui.label("No punches in this period.");
            return;
        }
        egui::Grid::new("attendance-days")
            .striped(true)
            .spacing([18.0, 4.0])
            .show(ui, |ui| {
                for title in [
                    "Date", "Person", "First in", "Last out", "Hours", "Punches", "Notes",
                ] {
                    ui.strong(title);
                }
                ui.end_row();
                for day in &self.days {
                    ui.label(day.date.to_string());
                    ui.label(format!("{} ({})", day.name, day.external_id));
                    ui.label(day.first_in.as_deref().unwrap_or("-"));
                    ui.label(day.last_out.as_deref().unwrap_or("-"));
                    ui.label(hours(day.worked_minutes));
                    ui.label(day.punches.to_string());
                    let mut notes = Vec::new();
                    if day.missing_check_out {
                        notes.push("no check-out".to_string());
                    }
                    if day.corrected > 0 {
                        notes.push(format!("{} corrected", day.corrected));
                    }
                    ui.label(notes.join(", "));
                    ui.end_row();
                }
            });
    }

    fn corrections_ui(&self, ui: &mut egui::Ui) {
        if self.corrections.is_empty() {
            return;
        }
        ui.heading("Corrections");
        egui::Grid::new("attendance-corrections")
            .striped(true)
            .spacing([18.0, 4.0])
            .show(ui, |ui| {
                for title in ["Punch", "Person", "Added by", "Reason"] {
                    ui.strong(title);
                }
                ui.end_row();
                for record in &self.corrections {
                    let Some(correction) = &record.correction else {
                        continue;
                    };
                    let local = super::local_time_as(&record.at, "%Y-%m-%d %H:%M");
                    ui.label(format!("{local} check-{}", record.kind));
                    ui.label(format!(
                        "{} ({})",
                        record.name.as_deref().unwrap_or("(deleted person)"),
                        record.external_id.as_deref().unwrap_or("-")
                    ));
                    ui.label(&correction.by);
                    ui.label(&correction.reason);
                    ui.end_row();
                }
            });
    }

    fn totals_ui(&self, ui: &mut egui::Ui) {
        ui.heading("Per person");
        egui::Grid::new("attendance-totals")
            .striped(true)
            .spacing([18.0, 4.0])
            .show(ui, |ui| {
                for title in [
                    "Person",
                    "Days present",
                    "Hours",
                    "Days without a check-out",
                ] {
                    ui.strong(title);
                }
                ui.end_row();
                for person in &self.totals {
                    ui.label(format!("{} ({})", person.name, person.external_id));
                    ui.label(person.days_present.to_string());
                    ui.label(hours(person.worked_minutes));
                    ui.label(person.days_missing_check_out.to_string());
                    ui.end_row();
                }
            });
    }
}
