//! The desktop window: kiosk, enrollment, signature desk, threshold workbench and
//! training. The UI thread only draws and sends requests; the models and the database
//! live on the worker thread (`worker`), the camera and training on their own threads.
//! Every input carries an accessible label, which is how the tests drive the window.

mod access;
mod attendance;
pub mod cannot_start;
mod changes;
mod desk;
mod enrollment;
mod kiosk;
mod palette;
mod training;
mod workbench;
pub mod worker;

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use eframe::egui;

use crate::context::{Context, Theme};
use crate::types::{Modality, Permission};
use crate::workflow::Progress;
use palette::palette;
use worker::{CAMERA_FRAME_FAILURE, Reply, Request, START_FAILURE, WorkerHandle};

/// How long a failure stays on screen (unless a later success clears it first).
const ERROR_SHOWN: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Kiosk,
    Enrollment,
    SignatureDesk,
    Thresholds,
    Training,
    Changes,
    Attendance,
}

impl Tab {
    const ALL: [Tab; 7] = [
        Tab::Kiosk,
        Tab::Enrollment,
        Tab::SignatureDesk,
        Tab::Attendance,
        Tab::Thresholds,
        Tab::Training,
        Tab::Changes,
    ];

    fn title(self) -> &'static str {
        match self {
            Tab::Kiosk => "Kiosk",
            Tab::Enrollment => "Enrollment",
            Tab::SignatureDesk => "Signature desk",
            Tab::Thresholds => "Threshold workbench",
            Tab::Training => "Training",
            Tab::Changes => "Changes",
            Tab::Attendance => "Attendance",
        }
    }
}

pub struct App {
    tab: Tab,
    worker: WorkerHandle,
    status: String,
    /// The last failure, and since when: shown for `ERROR_SHOWN`, or until a later
    /// success; one from starting up (a failed audit) has no time and stays.
    error: Option<(String, Option<std::time::Instant>)>,
    /// The worker said it is ready: later failures are ones that pass.
    started: bool,
    progress: Option<Progress>,
    busy: bool,
    kiosk: kiosk::KioskTab,
    enrollment: enrollment::EnrollmentTab,
    desk: desk::DeskTab,
    workbench: workbench::WorkbenchTab,
    training: training::TrainingTab,
    changes: changes::ChangesTab,
    attendance: attendance::AttendanceTab,
    access: access::Access,
    /// Why the worker could not open the database or the models: all the window shows.
    cannot_start: Option<String>,
}

impl App {
    /// Starts the worker; `ctx` is woken whenever a reply arrives.
    pub fn new(context: Context, ctx: &egui::Context) -> std::io::Result<Self> {
        // egui's own fonts draw Latin, Greek and Cyrillic only: without the system's fonts a
        // kiosk would greet 王涛 or 김민준 with empty boxes, and a clerk could not read the
        // account holder's name.
        ctx.add_font_provider(std::sync::Arc::new(
            egui_system_font_provider::SystemFontProvider::new(),
        ));
        ctx.set_theme(match context.theme {
            Theme::System => egui::ThemePreference::System,
            Theme::Light => egui::ThemePreference::Light,
            Theme::Dark => egui::ThemePreference::Dark,
        });
        let wake = ctx.clone();
        let training = training::TrainingTab::new(&context);
        let worker = worker::spawn(context, move || wake.request_repaint())?;
        Ok(Self {
            tab: Tab::Kiosk,
            worker,
            status: "Loading models…".into(),
            error: None,
            started: false,
            progress: None,
            busy: true,
            kiosk: kiosk::KioskTab::default(),
            enrollment: enrollment::EnrollmentTab::default(),
            desk: desk::DeskTab::default(),
            workbench: workbench::WorkbenchTab::default(),
            training,
            changes: changes::ChangesTab::default(),
            attendance: attendance::AttendanceTab::default(),
            access: access::Access::default(),
            cannot_start: None,
        })
    }

    fn fail(&mut self, error: String) {
        let since = self.started.then(std::time::Instant::now);
        self.error = Some((error, since));
    }

    /// A success takes a passing failure off the screen.
    fn succeeded(&mut self) {
        if matches!(self.error, Some((_, Some(_)))) {
            self.error = None;
        }
    }

    fn send(&mut self, request: Request) {
        match self.worker.requests.try_send(request) {
            Ok(()) => self.busy = true,
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                self.fail("still working on earlier requests; try again".into());
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                self.fail("the worker thread has stopped; restart Vouch".into());
            }
        }
    }

    fn send_all(&mut self, requests: Vec<Request>) {
        for request in requests {
            self.send(request);
        }
    }

    /// Everything the worker answered since the last frame.
    fn take_replies(&mut self, ctx: &egui::Context) {
        while let Ok(reply) = self.worker.replies.try_recv() {
            if !matches!(reply, Reply::Progress(_)) {
                self.busy = false;
                self.progress = None;
            }
            self.on_reply(ctx, reply);
        }
    }

    fn on_reply(&mut self, ctx: &egui::Context, reply: Reply) {
        match reply {
            Reply::Ready { status } => {
                // Not clearing the error: what went wrong while starting (a failed audit)
                // must stay on screen.
                self.status = status;
                self.started = true;
            }
            Reply::Failed { what, error } => {
                if what == CAMERA_FRAME_FAILURE {
                    self.kiosk.frame_answered(ctx);
                    self.enrollment.stop_coaching();
                }
                if what == START_FAILURE {
                    self.cannot_start = Some(error.clone());
                }
                self.fail(format!("{what}: {error}"))
            }
            Reply::Progress(progress) => self.progress = Some(progress),
            Reply::KioskStep(step) => self.kiosk.on_step(ctx, *step),
            Reply::KioskPin(Ok(event)) => self.kiosk.on_event(event),
            Reply::KioskPin(Err(error)) => self.fail(format!("checking the PIN: {error}")),
            Reply::Analyzed {
                faces,
                frame,
                no_face,
            } => self.kiosk.on_file_faces(ctx, faces, &frame, no_face),
            Reply::Captured(Ok(path)) => {
                self.enrollment.add_image(&path);
                self.send(Request::AssessFace { path });
            }
            Reply::Captured(Err(error)) => self.fail(error),
            Reply::PinSet(result) => self.enrollment.on_pin_set(result),
            Reply::Coached {
                advice,
                seen,
                good,
                saved,
            } => {
                self.kiosk.frame_answered(ctx);
                match self.enrollment.on_coached(advice, seen, good, saved) {
                    Ok(paths) => {
                        for path in paths {
                            self.send(Request::AssessFace { path });
                        }
                    }
                    Err(error) => self.fail(error),
                }
            }
            Reply::CheckedIn(result) => {
                if result.is_ok() {
                    self.succeeded();
                }
                self.kiosk.on_checkin(result)
            }
            Reply::TodaysPunches(Ok(records)) => self.kiosk.on_todays_punches(records),
            Reply::TodaysPunches(Err(error)) => {
                self.fail(format!("reading today's punches: {error}"))
            }
            Reply::Enrolled(result) => {
                let modality = self.enrollment.on_enrolled(result);
                self.send(Request::People { modality });
            }
            Reply::Assessed { path, verdict } => self.enrollment.on_assessed(path, verdict),
            Reply::People(rows) => self.enrollment.on_people(ctx, rows),
            Reply::Deleted { .. } => {
                let modality = self.enrollment.modality;
                self.send(Request::People { modality });
            }
            Reply::SignatureChecked(result) => self.desk.on_checked(ctx, result),
            Reply::Scores(result) => self.workbench.on_scores(result),
            Reply::Replayed(replay) => self.workbench.replay = Some(replay),
            Reply::Bands { bands, offsets } => self.workbench.on_bands(bands, offsets),
            Reply::SiteLoad(site) => self.workbench.site = Some(site),
            Reply::Hours(result) => self.attendance.on_hours(result),
            Reply::Corrected(result) => {
                let corrected = result.is_ok();
                self.attendance.on_corrected(result);
                if corrected && let Some(request) = self.attendance.report_request() {
                    self.send(request);
                }
            }
            Reply::TrainingPrepared(result) => self.training.on_prepared(ctx, result),
            Reply::Gated(result) => self.training.on_gated(result),
            Reply::Governed(result) => {
                if let Ok(proposal) = &result {
                    self.status = format!(
                        "Proposal {}: {} ({})",
                        proposal.id,
                        proposal.change.describe(),
                        format!("{:?}", proposal.status).to_lowercase()
                    );
                }
                self.changes.outcome = Some(result);
                self.send(Request::Bands {
                    modality: self.workbench.modality,
                });
            }
            Reply::Proposals(governance) => self.changes.on_governance(governance),
            Reply::ReportSaved(result) => self.changes.report = Some(result),
            Reply::DatabaseSwitched(result) => self.changes.switched = Some(result),
            Reply::Connection { online, waiting } => self.kiosk.on_connection(online, waiting),
            Reply::AccessRefused(refusal) => self.access.on_refused(refusal),
            Reply::Session { operator, accounts } => {
                self.access.on_session(ctx, operator, accounts);
                if !self.access.shows(self.tab) {
                    self.tab = Tab::Kiosk;
                }
                if self.access.allows(Permission::Enroll) {
                    self.send(Request::People {
                        modality: self.enrollment.modality,
                    });
                }
            }
        }
    }

    fn status_bar_ui(&mut self, ui: &mut egui::Ui) {
        // Wrapped, so that a long database path does not push the rest off a 1024 px screen.
        ui.horizontal_wrapped(|ui| {
            if self.busy {
                ui.spinner();
            }
            if let Some(progress) = &self.progress {
                let fraction = progress.done as f32 / progress.total.max(1) as f32;
                ui.add(
                    egui::ProgressBar::new(fraction)
                        .desired_width(200.0)
                        .text(format!(
                            "{} {}/{}",
                            progress.current, progress.done, progress.total
                        )),
                );
                if ui.button("Cancel").clicked() {
                    self.worker.cancel.store(true, Ordering::Relaxed);
                }
            }
            ui.label(&self.status);
        });
        if let Some((_, Some(since))) = &self.error {
            let age = since.elapsed();
            if age >= ERROR_SHOWN {
                self.error = None;
            } else {
                ui.ctx().request_repaint_after(ERROR_SHOWN - age);
            }
        }
        if let Some((error, _)) = &self.error {
            ui.colored_label(palette(ui).refused, format!("Error: {error}"));
        }
    }

    pub fn tab(&mut self, tab: Tab) {
        self.tab = tab;
    }

    /// (epoch, step, steps) of a running training, for progress displays and tests.
    pub fn training_step(&self) -> Option<(usize, usize, usize)> {
        self.training.step
    }

    /// Whether the kiosk found a camera (`None` until it looked).
    pub fn has_camera(&self) -> Option<bool> {
        self.kiosk.has_camera()
    }
}

impl eframe::App for App {
    /// Runs even while the window is minimised: the worker's replies, the camera's frames
    /// and the training run's events are taken here, never only while drawing.
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.take_replies(ctx);
        if let Some(frame) = self.kiosk.poll_camera() {
            // A coached capture takes the camera while it runs; otherwise the kiosk does.
            let request = match self.enrollment.coaching_first() {
                Some(first) => Request::CoachFrame { frame, first },
                None => Request::KioskFrame { frame },
            };
            self.send(request);
        }
        self.training.poll();
        if self.busy || self.training.running() || self.kiosk.live() {
            // The camera keeps running on the enrollment tab, for captures.
            ctx.request_repaint_after(std::time::Duration::from_millis(50));
        }
    }

    /// Draws, and sends what the operator asked for.
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        // Nothing behind the tabs works: the kiosk must not look as if it were waiting.
        if let Some(reason) = &self.cannot_start {
            egui::CentralPanel::default().show(ui, |ui| cannot_start::reason_ui(ui, reason));
            return;
        }
        let mut requests = Vec::new();
        let ctx = ui.ctx().clone();
        self.access.lock_when_idle(&ctx, &mut requests);
        self.access.hold_the_kiosk(&ctx);
        self.access
            .offer_login_without_camera(self.kiosk.has_camera());
        egui::Panel::top("tabs").show(ui, |ui| {
            ui.horizontal(|ui| {
                for tab in Tab::ALL {
                    if self.access.shows(tab) {
                        ui.selectable_value(&mut self.tab, tab, tab.title());
                    }
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    if let Some(tab) = self.access.bar_ui(ui, &mut requests) {
                        self.tab = tab;
                    }
                });
            });
        });
        self.access.dialog_ui(&ctx, &mut requests);
        if !self.access.shows(self.tab) {
            self.tab = Tab::Kiosk;
        }
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar_ui(ui));
        egui::CentralPanel::default().show(ui, |ui| match self.tab {
            Tab::Kiosk => {
                // Punching from an image file is a supervisor's testing aid, never the
                // kiosk's: a photo of someone is not someone.
                let files_allowed = self.access.allows(Permission::Administer);
                // Whoever may enrol uses the camera for captures and may stop it; the
                // person in front of an unattended kiosk may not.
                let camera_allowed = self.access.allows(Permission::Enroll);
                self.kiosk
                    .ui(ui, &mut requests, files_allowed, camera_allowed)
            }
            Tab::Enrollment => self.enrollment.ui(
                ui,
                &mut requests,
                self.kiosk.last_frame.as_ref(),
                self.kiosk.preview(),
            ),
            Tab::SignatureDesk => self.desk.ui(ui, &mut requests),
            Tab::Thresholds => self.workbench.ui(ui, &mut requests),
            Tab::Training => self.training.ui(ui, &mut requests),
            Tab::Changes => self.changes.ui(ui, &mut requests),
            Tab::Attendance => {
                let may_correct = self.access.allows(Permission::Administer);
                self.attendance.ui(ui, &mut requests, may_correct)
            }
        });
        if let Some((modality, person_id, label)) = self.workbench.reenrol.take() {
            if self.access.shows(Tab::Enrollment) {
                self.enrollment.start_reenrol(modality, person_id, label);
                self.tab = Tab::Enrollment;
                requests.push(Request::People { modality });
            } else {
                self.fail(format!(
                    "Re-enrolling {label} needs an operator who may enrol (a clerk or a supervisor)."
                ));
            }
        }
        self.send_all(requests);
    }
}

/// A text field with a visible label that also names it for screen readers (and tests).
pub(crate) fn labelled_text(ui: &mut egui::Ui, label: &str, value: &mut String) -> egui::Response {
    labelled_edit(ui, label, egui::TextEdit::singleline(value))
}

/// A file or folder path: wide enough that the file's own name, at the path's end, is
/// read without scrolling the field, and narrow enough that a row with two buttons
/// beside it (the workbench's) still fits a 1024 px window.
pub(crate) fn labelled_path(ui: &mut egui::Ui, label: &str, value: &mut String) -> egui::Response {
    labelled_edit(
        ui,
        label,
        egui::TextEdit::singleline(value).desired_width(480.0),
    )
}

fn labelled_edit(ui: &mut egui::Ui, label: &str, edit: egui::TextEdit<'_>) -> egui::Response {
    ui.horizontal(|ui| {
        let name = ui.label(label);
        ui.add(edit).labelled_by(name.id)
    })
    .inner
}

/// An RFC 3339 instant as the local wall-clock time the operator reads.
pub(crate) fn local_time(rfc3339: &str) -> String {
    local_time_as(rfc3339, "%Y-%m-%d %H:%M:%S")
}

/// An RFC 3339 instant in local time, in a `chrono` format; an unreadable one as it is.
pub(crate) fn local_time_as(rfc3339: &str, format: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map_or_else(
        |_| rfc3339.to_string(),
        |t| t.with_timezone(&chrono::Local).format(format).to_string(),
    )
}

/// Faces / Signatures; the newly picked modality when the operator switched.
pub(crate) fn modality_picker(ui: &mut egui::Ui, modality: &mut Modality) -> Option<Modality> {
    ui.horizontal(|ui| {
        let mut picked = None;
        for (choice, title) in [
            (Modality::Face, "Faces"),
            (Modality::Signature, "Signatures"),
        ] {
            if ui.selectable_value(modality, choice, title).clicked() {
                picked = Some(choice);
            }
        }
        picked
    })
    .inner
}

/// Paths dropped on the window this frame.
pub(crate) fn dropped_paths(ctx: &egui::Context) -> Vec<PathBuf> {
    ctx.input(|i| {
        i.raw
            .dropped_files
            .iter()
            .map(|f| f.path().to_path_buf())
            .filter(|p| !p.as_os_str().is_empty())
            .collect()
    })
}

pub(crate) fn texture(
    ctx: &egui::Context,
    name: &str,
    image: &image::RgbaImage,
) -> egui::TextureHandle {
    let size = [image.width() as usize, image.height() as usize];
    ctx.load_texture(
        name,
        egui::ColorImage::from_rgba_unmultiplied(size, image.as_raw()),
        egui::TextureOptions::LINEAR,
    )
}

pub fn run(context: Context) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Vouch")
            .with_inner_size([1100.0, 720.0]),
        // `App::new` installs the system fonts itself, so that tests draw with them too.
        system_font_fallback: false,
        ..Default::default()
    };
    eframe::run_native(
        "Vouch",
        options,
        Box::new(move |cc| Ok(Box::new(App::new(context, &cc.egui_ctx)?))),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
