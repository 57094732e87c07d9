//! The signature desk: an account's reference signatures beside the questioned scan,
//! a score per reference, and the verdict in the accept / review / reject bands.

use eframe::egui;

use super::palette::palette;
use super::worker::Request;
use super::{labelled_path, labelled_text, texture};
use crate::signature::reference::ink_on_paper;
use crate::store::EarlierCheck;
use crate::types::{Decision, counted};
use crate::workflow::SignatureVerifyReport;

/// Each signature as the desk shows it, the shape of the normalised canvas.
const CARD: egui::Vec2 = egui::vec2(220.0, 150.0);

/// Earlier checks of the same file listed at the desk, the latest ones.
const EARLIER_CHECKS_SHOWN: usize = 3;

#[derive(Default)]
pub struct DeskTab {
    account: String,
    scan: String,
    pub check: Option<Result<SignatureVerifyReport, String>>,
    references: Vec<egui::TextureHandle>,
    questioned: Option<egui::TextureHandle>,
}

fn paper_texture(ctx: &egui::Context, name: &str, ink: &image::GrayImage) -> egui::TextureHandle {
    let paper = image::DynamicImage::ImageLuma8(ink_on_paper(ink));
    texture(ctx, name, &paper.to_rgba8())
}

/// The latest few earlier checks of the same file: one presented many times must not push
/// the signatures off the screen.
fn show_earlier_checks(ui: &mut egui::Ui, earlier: &[EarlierCheck], colour: egui::Color32) {
    let older = earlier.len().saturating_sub(EARLIER_CHECKS_SHOWN);
    if older > 0 {
        ui.colored_label(
            colour,
            format!(
                "Checked before {}; the latest {EARLIER_CHECKS_SHOWN}:",
                counted(earlier.len(), "time")
            ),
        );
    }
    for earlier in &earlier[older..] {
        ui.colored_label(
            colour,
            format!(
                "Checked before: {} by {}, against {}: {} (score {:.3})",
                super::local_time(&earlier.at),
                earlier.by,
                earlier.against(),
                earlier.decision,
                earlier.score
            ),
        );
    }
}

impl DeskTab {
    pub fn on_checked(
        &mut self,
        ctx: &egui::Context,
        result: Result<SignatureVerifyReport, String>,
    ) {
        if let Ok(check) = &result {
            self.references = check
                .reference_canvases
                .iter()
                .enumerate()
                .map(|(i, r)| paper_texture(ctx, &format!("reference-{i}"), r))
                .collect();
            self.questioned = Some(paper_texture(ctx, "questioned", &check.questioned_canvas));
        }
        self.check = Some(result);
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, requests: &mut Vec<Request>) {
        labelled_text(ui, "Account", &mut self.account);
        ui.horizontal(|ui| {
            labelled_path(ui, "Questioned scan", &mut self.scan);
            let ready = !self.account.trim().is_empty() && !self.scan.trim().is_empty();
            if ui
                .add_enabled(ready, egui::Button::new("Verify signature"))
                .clicked()
            {
                requests.push(Request::CheckSignature {
                    external_id: self.account.trim().to_string(),
                    scan: self.scan.trim().into(),
                });
            }
        });
        if let Some(path) = super::dropped_paths(ui.ctx()).first() {
            self.scan = path.display().to_string();
        }
        match &self.check {
            None => {
                ui.label("Enter the account and the scan of the cheque (or drop the scan on the window).");
            }
            Some(Err(error)) => {
                ui.colored_label(palette(ui).refused, format!("Cannot verify: {error}"));
            }
            Some(Ok(check)) => {
                // Twelve references and the notes above them run past a small screen.
                egui::ScrollArea::vertical().show(ui, |ui| self.show_check(ui, check));
            }
        }
    }

    fn show_check(&self, ui: &mut egui::Ui, check: &SignatureVerifyReport) {
        let look_again = palette(ui).attention;
        let (color, word) = match check.verdict.decision {
            Decision::Accept => (palette(ui).accepted, "GENUINE (accept)"),
            Decision::Review => (look_again, "REVIEW by a second clerk"),
            Decision::Reject => (palette(ui).refused, "FORGED? (reject)"),
        };
        // As large as the kiosk's greeting: the clerk reads it at a glance.
        ui.label(
            egui::RichText::new(format!("Verdict: {word}, score {:.3}", check.verdict.score))
                .size(28.0)
                .strong()
                .color(color),
        );
        let references = check.verdict.reference_scores.len();
        ui.label(format!(
            "{} ({}): scored against {} by {}; accept at {:.3} or more, reject under {:.3}.",
            check.name,
            check.external_id,
            counted(references, "reference"),
            check.model,
            check.verdict.bands.high,
            check.verdict.bands.low
        ));
        if let Some(caution) = check.verdict.caution {
            // A check to make before acting, not part of the verdict: the review's colour.
            ui.label(egui::RichText::new(caution).size(18.0).color(look_again));
        }
        show_earlier_checks(ui, &check.verdict.checked_before, look_again);
        // The questioned scan and every reference as cards in rows that fit the window:
        // a card is as wide as its picture, so rows are counted, not left to wrap.
        let mut cards: Vec<(String, Option<egui::Color32>, &egui::TextureHandle)> = Vec::new();
        cards.extend(
            self.questioned
                .iter()
                .map(|q| ("Questioned".to_string(), None, q)),
        );
        for (number, (texture, score)) in
            (1..).zip(self.references.iter().zip(&check.verdict.reference_scores))
        {
            cards.push(match check.verdict.copy_of {
                Some(copy) if copy.reference == number => (
                    format!("Reference {number}: the questioned lies on it"),
                    Some(look_again),
                    texture,
                ),
                _ => (format!("Reference {number}: {score:.3}"), None, texture),
            });
        }
        let spacing = ui.spacing().item_spacing.x;
        let per_row = (((ui.available_width() + spacing) / (CARD.x + spacing)) as usize).max(1);
        for row in cards.chunks(per_row) {
            ui.horizontal(|ui| {
                for (label, colour, texture) in row {
                    ui.vertical(|ui| {
                        ui.set_width(CARD.x);
                        match colour {
                            Some(colour) => ui.colored_label(*colour, label),
                            None => ui.label(label),
                        };
                        ui.image((texture.id(), CARD));
                    });
                }
            });
        }
    }
}
