//! The desktop window. For now it shows which models are loaded; the kiosk, enrollment,
//! signature desk, threshold workbench and training tabs come next.

use std::path::PathBuf;

use eframe::egui;

use crate::device::DeviceChoice;
use crate::face::FaceModels;

pub struct App {
    status: String,
}

impl App {
    pub fn new(models_dir: PathBuf, device: DeviceChoice) -> Self {
        let status = match device
            .open()
            .map_err(anyhow::Error::from)
            .and_then(|d| Ok(FaceModels::load(&models_dir, &d)?))
        {
            Ok(models) => format!(
                "Face models loaded from {} on {} ({}).",
                models_dir.display(),
                crate::device::describe(models.device()),
                models.model_id()
            ),
            Err(error) => format!("Face models could not be loaded: {error:#}"),
        };
        Self { status }
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default().show(ui, |ui| {
            ui.heading("Vouch");
            ui.label("Biometric enrollment and verification.");
            ui.separator();
            ui.label(&self.status);
            ui.label("Use `vouch face embed`, `vouch face compare` and `vouch eval pairs` from a terminal meanwhile.");
        });
    }
}

pub fn run(models_dir: PathBuf, device: DeviceChoice) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Vouch")
            .with_inner_size([900.0, 600.0]),
        ..Default::default()
    };
    eframe::run_native(
        "Vouch",
        options,
        Box::new(move |_cc| Ok(Box::new(App::new(models_dir, device)))),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
