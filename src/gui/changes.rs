//! Governed changes: the proposals with what they were predicted to do, approving or
//! rejecting them (a second supervisor), the kiosk's repeat window, how many approvals a
//! change needs, and rolling the signature model back to one that was active before.

use eframe::egui;

use super::palette::palette;
use super::worker::{Governance, Request};
use crate::store::{Proposal, ProposalStatus};
use crate::types::counted;

#[derive(Default)]
pub struct ChangesTab {
    governance: Option<Governance>,
    asked: bool,
    repeat_minutes: i64,
    /// The outcome of the last proposal, approval or rejection.
    pub outcome: Option<Result<Proposal, String>>,
    /// Where the last report was saved, or why it was not.
    pub report: Option<Result<std::path::PathBuf, String>>,
    /// This machine's next database, as typed: a file or a server's URL, its key file and
    /// the site's certificate authority (the last two may stay empty).
    next_db: [String; 3],
    /// The config file the last switch wrote, or why it did not.
    pub switched: Option<Result<std::path::PathBuf, String>>,
}

impl ChangesTab {
    pub fn on_governance(&mut self, governance: Governance) {
        if self.governance.is_none() {
            self.repeat_minutes = governance.repeat_minutes;
        }
        self.governance = Some(governance);
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, requests: &mut Vec<Request>) {
        if !self.asked {
            self.asked = true;
            requests.push(Request::Proposals);
        }
        self.outcome_ui(ui);
        match &self.report {
            Some(Ok(path)) => {
                ui.label(format!("Report saved: {}", path.display()));
            }
            Some(Err(error)) => {
                ui.colored_label(palette(ui).refused, error);
            }
            None => {}
        }
        let Some(governance) = &self.governance else {
            ui.label("Loading the proposals…");
            // A read that failed (the server away) is not asked again by itself.
            if ui.button("Load again").clicked() {
                requests.push(Request::Proposals);
            }
            return;
        };
        ui.heading("Settings");
        ui.horizontal(|ui| {
            ui.label(format!(
                "Kiosk repeat window: {} min in force.",
                governance.repeat_minutes
            ));
            let label = ui.label("New window (minutes)");
            ui.add(egui::DragValue::new(&mut self.repeat_minutes).range(0..=1440))
                .labelled_by(label.id);
            if ui.button("Propose window").clicked() {
                requests.push(Request::ProposeRepeatWindow {
                    minutes: self.repeat_minutes,
                });
            }
        });
        ui.horizontal(|ui| {
            ui.label(format!(
                "A change needs {}.",
                counted(governance.approvers_required, "approval")
            ));
            let other = 3 - governance.approvers_required;
            if ui
                .button(format!("Propose needing {}", counted(other, "approval")))
                .clicked()
            {
                requests.push(Request::ProposeApprovers { required: other });
            }
        });
        ui.label(format!(
            "Active signature model: {}",
            governance.active_model.display()
        ));
        for (path, model) in &governance.earlier_models {
            ui.horizontal(|ui| {
                ui.label(format!("{model}: {path}"));
                if std::path::Path::new(path) != governance.active_model
                    && ui.button(format!("Propose rollback to {model}")).clicked()
                {
                    requests.push(Request::ProposeRollback { model: path.into() });
                }
            });
        }
        database_ui(ui, &mut self.next_db, self.switched.as_ref(), requests);
        ui.separator();
        ui.heading("Proposals");
        if governance.proposals.is_empty() {
            ui.label("None yet.");
        }
        egui::ScrollArea::vertical().show(ui, |ui| {
            for proposal in &governance.proposals {
                proposal_ui(ui, proposal, requests);
            }
        });
    }

    fn outcome_ui(&self, ui: &mut egui::Ui) {
        match &self.outcome {
            Some(Ok(proposal)) => {
                let text = match proposal.status {
                    ProposalStatus::Pending => format!(
                        "Proposal {} waits for a second supervisor: {}",
                        proposal.id,
                        proposal.change.describe()
                    ),
                    status => format!(
                        "Proposal {} {}: {}",
                        proposal.id,
                        format!("{status:?}").to_lowercase(),
                        proposal.change.describe()
                    ),
                };
                ui.colored_label(palette(ui).accepted, text);
            }
            Some(Err(error)) => {
                ui.colored_label(palette(ui).refused, error);
            }
            None => {}
        }
    }
}

/// Which database this machine opens from its next start: a supervisor's setting
/// for a kiosk joining (or leaving) a site's server.
fn database_ui(
    ui: &mut egui::Ui,
    next_db: &mut [String; 3],
    switched: Option<&Result<std::path::PathBuf, String>>,
    requests: &mut Vec<Request>,
) {
    ui.separator();
    ui.label("This machine's database, from its next start:");
    let fields = [
        (
            "Database",
            "postgres://kiosk1@dbhost/vouch, or a whole path: /srv/vouch/site.db",
        ),
        ("Key file", "empty: the default beside the database"),
        ("Site CA", "empty: the system's certificate authorities"),
    ];
    egui::Grid::new("next database").show(ui, |ui| {
        for ((name, hint), value) in fields.iter().zip(next_db.iter_mut()) {
            let label = ui.label(*name);
            // A grid cell is only as wide as its content unless sized.
            ui.add_sized(
                [460.0, 22.0],
                egui::TextEdit::singleline(value).hint_text(*hint),
            )
            .labelled_by(label.id);
            ui.end_row();
        }
    });
    let given = |text: &String| {
        let text = text.trim();
        (!text.is_empty()).then(|| std::path::PathBuf::from(text))
    };
    let [db, key, ca] = &*next_db;
    if ui
        .add_enabled(
            given(db).is_some(),
            egui::Button::new("Use from next start"),
        )
        .clicked()
    {
        requests.push(Request::SwitchDatabase(crate::context::SiteConfig {
            db: given(db),
            key: given(key),
            db_ca: given(ca),
            theme: None,
        }));
    }
    match switched {
        Some(Ok(path)) => {
            ui.label(format!(
                "Saved in {}: Vouch opens it when it starts again (unless started with --db).",
                path.display()
            ));
        }
        Some(Err(error)) => {
            ui.colored_label(palette(ui).refused, format!("Not changed: {error}"));
        }
        None => {}
    }
}

fn proposal_ui(ui: &mut egui::Ui, proposal: &Proposal, requests: &mut Vec<Request>) {
    ui.group(|ui| {
        ui.label(
            egui::RichText::new(format!("#{} {}", proposal.id, proposal.change.describe()))
                .strong(),
        );
        ui.label(format!(
            "proposed by {} at {}; {}",
            proposal.proposed_by,
            super::local_time(&proposal.proposed_at),
            match (&proposal.status, &proposal.decided_by) {
                (ProposalStatus::Pending, _) => "pending".to_string(),
                (status, Some(by)) => format!("{} by {by}", format!("{status:?}").to_lowercase()),
                (status, None) => format!("{status:?}").to_lowercase(),
            }
        ));
        ui.label(evidence_summary(&proposal.evidence));
        ui.horizontal(|ui| {
            if ui.button(format!("Save report #{}", proposal.id)).clicked() {
                requests.push(Request::SaveReport { id: proposal.id });
            }
            if proposal.status == ProposalStatus::Pending {
                if ui.button(format!("Approve #{}", proposal.id)).clicked() {
                    requests.push(Request::Approve { id: proposal.id });
                }
                if ui.button(format!("Reject #{}", proposal.id)).clicked() {
                    requests.push(Request::Reject { id: proposal.id });
                }
            }
        });
    });
}

/// What a proposal was predicted to do, in a line a supervisor reads before approving.
fn evidence_summary(evidence: &serde_json::Value) -> String {
    let percent = |value: &serde_json::Value| {
        value
            .as_f64()
            .map_or("?".to_string(), |v| format!("{:.2}%", 100.0 * v))
    };
    let mut parts = Vec::new();
    if let Some(old) = evidence.get("old").filter(|old| old.get("high").is_some()) {
        parts.push(format!(
            "in force now: accept at {:.3}, reject below {:.3}",
            old["high"].as_f64().unwrap_or(f64::NAN),
            old["low"].as_f64().unwrap_or(f64::NAN)
        ));
    }
    if let Some(replay) = evidence.get("replay") {
        parts.push(format!(
            "{} of {} recorded decisions would change, {} of them to accept",
            replay["changed"], replay["total"], replay["now_accepted"]
        ));
    }
    if let Some(evaluation) = evidence.get("evaluation").filter(|e| !e.is_null()) {
        parts.push(format!(
            "on {} ({} genuine, {} impostor): FAR {} to {}, FRR {} to {}, review {}",
            evaluation["source"].as_str().unwrap_or("scores"),
            evaluation["genuine"],
            evaluation["impostor"],
            percent(&evaluation["at_old"]["far"]),
            percent(&evaluation["at_new"]["far"]),
            percent(&evaluation["at_old"]["frr"]),
            percent(&evaluation["at_new"]["frr"]),
            percent(&evaluation["at_new"]["review_rate"]),
        ));
        for kind in evaluation["far_by_kind"].as_array().into_iter().flatten() {
            parts.push(format!(
                "FAR on {} ({}) {} to {}",
                kind["kind"].as_str().unwrap_or("?"),
                kind["impostors"],
                percent(&kind["old"]),
                percent(&kind["new"])
            ));
        }
    }
    if let Some(skilled) = evidence
        .pointer("/candidate/skilled")
        .filter(|s| !s.is_null())
    {
        parts.push(format!(
            "gate passed on {} held-out writers: skilled EER {} (active {})",
            evidence["heldout_identities"],
            percent(&skilled["eer"]),
            percent(&evidence["active"]["skilled"]["eer"]),
        ));
    }
    if let Some(from) = evidence.get("rollback_from") {
        parts.push(format!("rollback from {}", from.as_str().unwrap_or("?")));
    }
    if parts.is_empty() {
        evidence.to_string()
    } else {
        parts.join("; ")
    }
}
