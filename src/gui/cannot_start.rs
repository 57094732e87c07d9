//! What vouch shows when it cannot start: a window of its own when its configuration names
//! a database that is gone (a kiosk started from a launcher has no terminal, so the person
//! at the screen would otherwise see nothing at all), and the same words in place of the
//! tabs when the worker cannot open the database or the models.

use eframe::egui;

pub struct CannotStart {
    reason: String,
}

impl CannotStart {
    pub fn new(reason: String) -> Self {
        Self { reason }
    }
}

impl eframe::App for CannotStart {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default().show(ui, |ui| reason_ui(ui, &self.reason));
    }
}

/// Why vouch cannot work, large, for whoever stands at the screen; and a way to close it.
pub fn reason_ui(ui: &mut egui::Ui, reason: &str) {
    ui.label(
        egui::RichText::new("Vouch cannot start")
            .size(28.0)
            .strong(),
    );
    ui.add_space(12.0);
    ui.label(egui::RichText::new(reason).size(18.0));
    ui.add_space(12.0);
    ui.label(
        egui::RichText::new("Please tell the site's supervisor: nothing was recorded.").size(18.0),
    );
    ui.add_space(12.0);
    if ui.button("Close").clicked() {
        ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
    }
}

/// Shows why vouch cannot start until the window is closed.
pub fn run(reason: String) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Vouch")
            .with_inner_size([720.0, 320.0]),
        ..Default::default()
    };
    eframe::run_native(
        "Vouch",
        options,
        Box::new(move |_| Ok(Box::new(CannotStart::new(reason)))),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
