//! The attendance kiosk: live camera (or an image file when there is none), face boxes
//! with names, the prompts and results of the kiosk loop (`workflow::kiosk`, run by the
//! worker on every frame it can take), and the day's punches.

use eframe::egui;

use super::palette::{FACE_MATCHED, FACE_UNKNOWN, FACE_UNSURE, palette};
use super::worker::Request;
use super::{labelled_path, texture};
use crate::camera::{CameraFeed, CameraInfo};
use crate::kiosk::KioskState;
use crate::store::Punch;
use crate::types::{Decision, counted};
use crate::workflow::CheckinReport;
use crate::workflow::kiosk::{KioskEvent, KioskStep, Match, SeenFace};

/// How long the result of an attempt stays on the kiosk's screen.
const MESSAGE_SHOWN: std::time::Duration = std::time::Duration::from_secs(6);
/// "Good morning" before noon, "Good afternoon" before six, then "Good evening".
fn greeting_for_now() -> &'static str {
    use chrono::Timelike;
    match chrono::Local::now().hour() {
        0..12 => "Good morning",
        12..18 => "Good afternoon",
        _ => "Good evening",
    }
}

fn first_name(name: &str) -> &str {
    name.split_whitespace().next().unwrap_or(name)
}

/// An RFC 3339 instant as the local hour and minute.
fn clock(rfc3339: &str) -> String {
    super::local_time_as(rfc3339, "%H:%M")
}

fn punch_line(at: &str, kind: crate::types::PunchKind, name: &str, external_id: &str) -> String {
    format!("{}  check-{kind}  {name} ({external_id})", clock(at))
}

pub struct KioskTab {
    cameras: Option<Result<Vec<CameraInfo>, String>>,
    selected: usize,
    feed: Option<CameraFeed>,
    camera_error: Option<String>,
    frame: Option<egui::TextureHandle>,
    frame_size: [f32; 2],
    faces: Vec<SeenFace>,
    in_flight: bool,
    /// Frames from a file have no liveness to check: the punch is manual.
    from_file: bool,
    image_path: String,
    /// A recorded sequence to play as the camera (a supervisor's testing aid).
    sequence_path: String,
    state: KioskState,
    /// What the loop asks of the person in front of the camera.
    prompt: Option<&'static str>,
    /// Today's punches, newest first, in local time.
    pub log: Vec<String>,
    /// What the person at the kiosk is told after an attempt, big, for a few seconds:
    /// the text, whether it is good news, and when it was said.
    message: Option<(String, bool, std::time::Instant)>,
    /// The digits typed while the kiosk asks for a PIN.
    pin: Option<String>,
    /// The sound cues, when this machine can play them (looked for at the first cue).
    cues: Option<Option<crate::cue::CuePlayer>>,
    /// The camera frame the worker is analysing: shown with its faces when they come.
    analysing: Option<image::RgbImage>,
    /// The newest camera frame, for enrollment captures.
    pub last_frame: Option<image::RgbImage>,
    /// What the person can change when the last frame showed no face.
    pub advice: Option<&'static str>,
    /// On a shared server: whether it answers, and what waits for it on this kiosk.
    connection: (bool, usize),
}

impl Default for KioskTab {
    fn default() -> Self {
        Self {
            cameras: None,
            selected: 0,
            feed: None,
            camera_error: None,
            frame: None,
            frame_size: [0.0; 2],
            faces: Vec::new(),
            in_flight: false,
            from_file: false,
            image_path: String::new(),
            sequence_path: String::new(),
            state: KioskState::Searching,
            prompt: None,
            log: Vec::new(),
            message: None,
            pin: None,
            cues: None,
            analysing: None,
            last_frame: None,
            advice: None,
            connection: (true, 0),
        }
    }
}

impl KioskTab {
    pub fn live(&self) -> bool {
        self.feed.is_some()
    }

    /// The newest camera frame, when the worker is free for it (the caller sends it to
    /// the kiosk loop or to a coached capture). The view shows the frame being analysed,
    /// so the boxes drawn belong to the picture under them.
    pub fn poll_camera(&mut self) -> Option<image::RgbImage> {
        let feed = self.feed.as_ref()?;
        if self.in_flight {
            return None;
        }
        match feed.take_newest()? {
            Ok(frame) => {
                self.analysing = Some(frame.clone());
                self.last_frame = Some(frame.clone());
                self.in_flight = true;
                self.from_file = false;
                Some(frame)
            }
            Err(error) => {
                self.camera_error = Some(error);
                self.feed = None;
                None
            }
        }
    }

    /// The camera frame and its size, for a preview elsewhere (a coached capture).
    pub fn preview(&self) -> Option<(egui::TextureId, [f32; 2])> {
        self.frame.as_ref().map(|t| (t.id(), self.frame_size))
    }

    fn show_frame(&mut self, ctx: &egui::Context, frame: &image::RgbImage) {
        let rgba = image::DynamicImage::ImageRgb8(frame.clone()).to_rgba8();
        self.frame_size = [frame.width() as f32, frame.height() as f32];
        self.frame = Some(texture(ctx, "kiosk-frame", &rgba));
    }

    /// The kiosk loop's answer to the last camera frame: faces, prompt, and what to tell
    /// the person when something happened.
    pub fn on_step(&mut self, ctx: &egui::Context, step: KioskStep) {
        self.in_flight = false;
        if let Some(frame) = self.analysing.take() {
            self.show_frame(ctx, &frame);
        }
        self.from_file = false;
        self.faces = step.faces;
        self.state = step.state;
        self.prompt = step.prompt;
        self.advice = step.no_face.map(crate::face::quality::advice);
        match (step.pin_requested, &self.pin) {
            (true, None) => self.pin = Some(String::new()),
            (false, Some(_)) => self.pin = None,
            _ => {}
        }
        if let Some(event) = step.event {
            self.on_event(event);
        }
    }

    /// What the kiosk tells the person after something happened.
    pub fn on_event(&mut self, event: KioskEvent) {
        let said = match event {
            KioskEvent::Punched(report) => {
                // A PIN that punched is done with: the pad goes with the greeting, not at
                // the camera's next frame (a recording may have none), and so does the
                // face's "?" that the PIN answered.
                if self.pin.take().is_some() {
                    self.faces.clear();
                }
                return self.on_checkin(Ok(report));
            }
            KioskEvent::Refused { alert } => {
                if alert {
                    self.log.insert(
                        0,
                        "Repeated attempts with a photo or a screen: the supervisor has been alerted (audit log).".into(),
                    );
                }
                "Not accepted: that looked like a photo or a screen. Please step up to the camera yourself.".to_string()
            }
            KioskEvent::Unknown => {
                "We do not recognise you. If you work here, please ask at the desk to be enrolled."
                    .to_string()
            }
            KioskEvent::LookAgain => "Please look straight into the camera.".to_string(),
            KioskEvent::NotSure => {
                self.pin = None;
                "We could not be sure it is you. Please ask at the desk.".to_string()
            }
            KioskEvent::AskPin => {
                "We are not quite sure it is you: please enter your PIN.".to_string()
            }
            KioskEvent::PinRefused { tries_left } => {
                if let Some(pin) = &mut self.pin {
                    pin.clear();
                }
                format!("That PIN is not right: {tries_left} more tries.")
            }
        };
        self.say(said, false);
    }

    /// The PIN pad, while the kiosk asks for one: big keys for a touch screen, and a
    /// field for a keyboard.
    fn pin_ui(&mut self, ui: &mut egui::Ui, requests: &mut Vec<Request>) {
        // The pad waits longer than the message that asked for it is shown: without this
        // line a person who hesitated would face keys with nothing saying why.
        if self.pin.is_some() && self.message.is_none() {
            ui.label(
                egui::RichText::new("Please type your PIN, then press Enter PIN.")
                    .size(36.0)
                    .strong()
                    .color(palette(ui).attention),
            );
        }
        let Some(pin) = &mut self.pin else {
            return;
        };
        let mut submit = false;
        ui.horizontal(|ui| {
            let label = ui.label(egui::RichText::new("PIN").size(24.0));
            let field = ui
                .add(
                    egui::TextEdit::singleline(pin)
                        .password(true)
                        .font(egui::TextStyle::Heading)
                        .desired_width(160.0),
                )
                .labelled_by(label.id);
            submit |= field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            submit |= ui
                .button(egui::RichText::new("Enter PIN").size(24.0))
                .clicked();
        });
        ui.horizontal(|ui| {
            for key in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "Back"] {
                let pressed = ui
                    .add(
                        egui::Button::new(egui::RichText::new(key).size(28.0))
                            .min_size(egui::vec2(48.0, 48.0)),
                    )
                    .clicked();
                if pressed && key == "Back" {
                    pin.pop();
                } else if pressed && pin.len() < 8 {
                    pin.push_str(key);
                }
            }
        });
        if submit && !pin.is_empty() {
            requests.push(Request::KioskPin {
                pin: std::mem::take(pin),
            });
        }
    }

    /// The worker is done with the last frame, outside the kiosk loop (a coached
    /// capture, or a failure that is shown): it is shown, and the next may go.
    pub fn frame_answered(&mut self, ctx: &egui::Context) {
        self.in_flight = false;
        if let Some(frame) = self.analysing.take() {
            self.show_frame(ctx, &frame);
        }
        self.faces.clear();
    }

    /// Shows `text` large for a while, with its sound.
    fn say(&mut self, text: String, good: bool) {
        let cue = if good {
            crate::cue::Cue::Done
        } else {
            crate::cue::Cue::Attention
        };
        let cues = self.cues.get_or_insert_with(|| {
            crate::cue::CuePlayer::new(&std::env::temp_dir().join("vouch-cues"))
        });
        if let Some(player) = cues {
            player.play(cue);
        }
        self.message = Some((text, good, std::time::Instant::now()));
    }

    /// The faces of an image file about to be punched from.
    pub fn on_file_faces(
        &mut self,
        ctx: &egui::Context,
        faces: Vec<SeenFace>,
        frame: &image::RgbImage,
        no_face: Option<&'static str>,
    ) {
        self.show_frame(ctx, frame);
        self.faces = faces;
        self.state = KioskState::Searching;
        self.prompt = None;
        self.advice = no_face.map(crate::face::quality::advice);
    }

    /// A punch, from the camera or a file: the greeting, and a line in the list.
    pub fn on_checkin(&mut self, result: Result<CheckinReport, String>) {
        self.in_flight = false;
        let (said, good) = match &result {
            Ok(report) => match &report.punch {
                Punch::Recorded { kind, at } => {
                    self.log
                        .insert(0, punch_line(at, *kind, &report.name, &report.external_id));
                    (
                        format!(
                            "{}, {}: checked {kind} {}",
                            greeting_for_now(),
                            first_name(&report.name),
                            clock(at)
                        ),
                        true,
                    )
                }
                Punch::Repeat { last_kind, last_at } => (
                    format!(
                        "Already checked {last_kind} at {}, {}.",
                        clock(last_at),
                        first_name(&report.name)
                    ),
                    true,
                ),
                Punch::Queued { at } => {
                    self.log.insert(
                        0,
                        format!(
                            "{}  noted (offline)  {} ({})",
                            clock(at),
                            report.name,
                            report.external_id
                        ),
                    );
                    (
                        // The offline line above says why it is only noted.
                        format!(
                            "{}, {}: noted at {}.",
                            greeting_for_now(),
                            first_name(&report.name),
                            clock(at)
                        ),
                        true,
                    )
                }
            },
            Err(error) => {
                self.log.insert(0, format!("no punch: {error}"));
                (
                    "Not recognised. Please look at the camera again, or ask at the desk.".into(),
                    false,
                )
            }
        };
        self.say(said, good);
    }

    /// Today's punches from the store, so the list survives a restart.
    pub fn on_todays_punches(&mut self, records: Vec<crate::store::AttendanceRecord>) {
        self.log = records
            .iter()
            .rev()
            .map(|r| {
                punch_line(
                    &r.at,
                    r.kind,
                    r.name.as_deref().unwrap_or("(deleted person)"),
                    r.external_id.as_deref().unwrap_or("-"),
                )
            })
            .collect();
    }

    /// Whether a camera was found (`None` until the cameras were listed).
    pub fn has_camera(&self) -> Option<bool> {
        self.cameras
            .as_ref()
            .map(|found| found.as_ref().is_ok_and(|cameras| !cameras.is_empty()))
    }

    /// `files_allowed`: whether the session may punch from an image file (the unattended
    /// kiosk punches only from its camera, with a blink); `camera_allowed`: whether it
    /// may stop the camera.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        requests: &mut Vec<Request>,
        files_allowed: bool,
        camera_allowed: bool,
    ) {
        self.camera_ui(ui, camera_allowed);
        if files_allowed {
            self.file_ui(ui, requests);
        } else if !self.live() && self.has_camera() == Some(false) {
            ui.label(
                egui::RichText::new("This kiosk has no camera. Please check in at the desk.")
                    .size(28.0),
            );
        }
        self.connection_ui(ui);
        self.message_ui(ui);
        self.pin_ui(ui, requests);
        let status = self.status();
        if !status.is_empty() {
            let size = if self.live() { 24.0 } else { 14.0 };
            ui.label(egui::RichText::new(status).size(size));
        }
        let available = ui.available_size();
        // The camera view takes most of the screen; the day's punches the rest.
        let view = egui::vec2(available.x * 0.68, available.y - 8.0);
        ui.horizontal_top(|ui| {
            self.frame_ui(ui, view);
            ui.vertical(|ui| {
                ui.heading("Punches");
                if self.log.is_empty() {
                    ui.label("No punches yet today.");
                }
                egui::ScrollArea::vertical()
                    .id_salt("punches")
                    .show(ui, |ui| {
                        for line in &self.log {
                            ui.label(line);
                        }
                    });
            });
        });
    }

    /// Where the decision stands, or what the person should change.
    fn status(&self) -> String {
        match &self.state {
            KioskState::Searching if self.from_file => {
                "Image file: no liveness check; the photo's subject punches when matched in the accept band.".to_string()
            }
            KioskState::Searching if !self.live() => String::new(),
            _ if self.live() && self.prompt.is_some() => {
                self.prompt.unwrap_or_default().to_string()
            }
            // A face the loop is still unsure of: the message above says what to do.
            KioskState::Searching if !self.faces.is_empty() => String::new(),
            KioskState::Searching => self.advice.unwrap_or("Look at the camera.").to_string(),
            KioskState::Recognising { frames, .. } => {
                format!("Recognising… ({frames}/{})", crate::kiosk::CONSENSUS_FRAMES)
            }
            KioskState::AwaitingBlink { .. } => "Blink, please.".to_string(),
            // The greeting says it, large.
            KioskState::Confirmed { .. } => String::new(),
            KioskState::Refused { .. } => {
                "Not accepted: that looked like a photo or a screen.".to_string()
            }
        }
    }

    /// The site's server went away, or punches made meanwhile are still on their way.
    pub fn on_connection(&mut self, online: bool, waiting: usize) {
        self.connection = (online, waiting);
    }

    fn connection_ui(&self, ui: &mut egui::Ui) {
        let text = match self.connection {
            (true, 0) => return,
            (false, 0) => "Offline: the site's server cannot be reached. Punches are kept on this kiosk and recorded when it is back.".to_string(),
            (false, n) => format!(
                "Offline: {} kept on this kiosk, recorded when the site's server is back.",
                counted(n, "punch")
            ),
            (true, n) => format!("Back online: sending {} kept while offline…", counted(n, "punch")),
        };
        ui.label(
            egui::RichText::new(text)
                .size(20.0)
                .color(palette(ui).attention),
        );
    }

    /// The last attempt's result for the person at the kiosk, large, until it is
    /// `MESSAGE_SECONDS` old.
    fn message_ui(&mut self, ui: &mut egui::Ui) {
        let Some((text, good, at)) = &self.message else {
            return;
        };
        let age = at.elapsed();
        if age >= MESSAGE_SHOWN {
            self.message = None;
            return;
        }
        let colour = if *good {
            palette(ui).accepted
        } else {
            palette(ui).attention
        };
        ui.label(egui::RichText::new(text).size(36.0).strong().color(colour));
        ui.ctx().request_repaint_after(MESSAGE_SHOWN - age);
    }

    /// The camera picker and start, or why there is no camera; stopping is a supervisor's
    /// (`may_stop`), not a passer-by's.
    fn camera_ui(&mut self, ui: &mut egui::Ui, may_stop: bool) {
        let cameras = self
            .cameras
            .get_or_insert_with(|| crate::camera::list().map_err(|e| e.to_string()))
            .clone();
        ui.horizontal(|ui| match &cameras {
            Ok(list) if !list.is_empty() => {
                let label = ui.label("Camera");
                egui::ComboBox::from_id_salt("camera")
                    .selected_text(list.get(self.selected).map_or("", |c| c.name.as_str()))
                    .show_ui(ui, |ui| {
                        for (index, camera) in list.iter().enumerate() {
                            ui.selectable_value(&mut self.selected, index, &camera.name);
                        }
                    })
                    .response
                    .labelled_by(label.id);
                if self.feed.is_none() && ui.button("Start camera").clicked() {
                    let ctx = ui.ctx().clone();
                    match CameraFeed::start(list[self.selected].index, move || {
                        ctx.request_repaint()
                    }) {
                        Ok(feed) => {
                            self.feed = Some(feed);
                            self.camera_error = None;
                        }
                        Err(error) => self.camera_error = Some(error.to_string()),
                    }
                }
            }
            Ok(_) if !self.live() => {
                ui.label("No camera found.");
            }
            Ok(_) => {}
            Err(error) => {
                ui.label(format!("Cameras unavailable ({error})."));
            }
        });
        if may_stop && self.feed.is_some() && ui.button("Stop camera").clicked() {
            self.feed = None;
            self.last_frame = None;
        }
        if let Some(error) = &self.camera_error {
            ui.colored_label(palette(ui).refused, error);
        }
    }

    fn file_ui(&mut self, ui: &mut egui::Ui, requests: &mut Vec<Request>) {
        ui.horizontal(|ui| {
            labelled_path(ui, "Image file", &mut self.image_path);
            if ui.button("Check in from image").clicked() && !self.image_path.trim().is_empty() {
                self.from_file = true;
                self.in_flight = true;
                requests.push(Request::CheckinFile {
                    path: self.image_path.trim().into(),
                });
            }
        });
        if let Some(path) = super::dropped_paths(ui.ctx()).first() {
            self.image_path = path.display().to_string();
        }
        ui.horizontal(|ui| {
            labelled_path(ui, "Recorded sequence", &mut self.sequence_path);
            if ui.button("Play as the camera").clicked() && !self.sequence_path.trim().is_empty() {
                let ctx = ui.ctx().clone();
                match CameraFeed::replay(self.sequence_path.trim().into(), move || {
                    ctx.request_repaint()
                }) {
                    Ok(feed) => {
                        self.feed = Some(feed);
                        self.camera_error = None;
                    }
                    Err(error) => self.camera_error = Some(error.to_string()),
                }
            }
        });
    }

    /// The last frame with a box and a name on each face.
    fn frame_ui(&self, ui: &mut egui::Ui, room: egui::Vec2) {
        if let Some(frame) = &self.frame {
            let scale = (room.x / self.frame_size[0])
                .min(room.y / self.frame_size[1])
                .max(0.1);
            let size = egui::vec2(self.frame_size[0] * scale, self.frame_size[1] * scale);
            let response = ui.image((frame.id(), size));
            let painter = ui.painter_at(response.rect);
            let mut said_of_faces = Vec::new();
            for face in &self.faces {
                let rect = egui::Rect::from_min_size(
                    response.rect.min + egui::vec2(face.bbox.x * scale, face.bbox.y * scale),
                    egui::vec2(face.bbox.width * scale, face.bbox.height * scale),
                );
                let (color, name) = match &face.nearest {
                    Some(Match {
                        name,
                        score,
                        decision: Decision::Accept,
                        ..
                    }) => (FACE_MATCHED, format!("{name} {score:.2}")),
                    Some(Match {
                        score,
                        decision: Decision::Review,
                        ..
                    }) => (FACE_UNSURE, format!("? {score:.2}")),
                    _ => (FACE_UNKNOWN, "unknown".to_string()),
                };
                painter.rect_stroke(
                    rect,
                    2.0,
                    egui::Stroke::new(2.0, color),
                    egui::StrokeKind::Outside,
                );
                painter.text(
                    rect.left_top(),
                    egui::Align2::LEFT_BOTTOM,
                    &name,
                    egui::FontId::proportional(14.0),
                    color,
                );
                said_of_faces.push(name);
            }
            // A screen reader (and a test) reads the boxes' words, not their paint.
            let description = if said_of_faces.is_empty() {
                "Camera picture: no face marked".to_string()
            } else {
                format!("Camera picture: {}", said_of_faces.join(", "))
            };
            response
                .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &description));
        }
    }
}
