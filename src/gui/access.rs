//! Who is at the window: the login bar and dialog, the offer to create the first
//! supervisor, locking after idle time, and the full-screen kiosk mode that only a
//! supervisor's login leaves. The worker decides what a session may do; this mirrors its
//! answer to show only the tabs the operator can use.

use std::time::{Duration, Instant};

use eframe::egui;

use super::Tab;
use super::palette::palette;
use super::worker::{AccessRequest, Request};
use crate::types::{Permission, Role};

/// A logged-in operator who leaves the window is logged out after this long.
pub const IDLE_LOCK: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialog {
    Closed,
    Login,
    /// Creating the first supervisor on a database without accounts.
    FirstSupervisor,
    /// A supervisor's login to leave kiosk mode.
    LeaveKiosk,
}

pub struct Access {
    /// Who is logged in (`None`: locked); a role of `None` is the single-user desk.
    operator: Option<(String, Option<Role>)>,
    /// Whether the database has operator accounts (until the worker says, assume so).
    accounts: bool,
    dialog: Dialog,
    name: String,
    secret: String,
    pub kiosk_mode: bool,
    last_activity: Instant,
    /// Whether the worker has said who is logged in yet.
    heard: bool,
    /// Whether the login was offered since the window was last locked.
    login_offered: bool,
    /// Why the last login (or first supervisor) was refused, shown in the dialog.
    refusal: Option<String>,
    /// The refusal just arrived: the secret is to be typed again, the name stays.
    retype_secret: bool,
}

impl Default for Access {
    fn default() -> Self {
        Self {
            operator: None,
            accounts: true,
            dialog: Dialog::Closed,
            name: String::new(),
            secret: String::new(),
            kiosk_mode: false,
            last_activity: Instant::now(),
            heard: false,
            login_offered: false,
            refusal: None,
            retype_secret: false,
        }
    }
}

impl Access {
    /// The worker's word on who is logged in.
    pub fn on_session(
        &mut self,
        ctx: &egui::Context,
        operator: Option<(String, Option<Role>)>,
        accounts: bool,
    ) {
        let supervisor = matches!(operator, Some((_, Some(Role::Supervisor))));
        if self.dialog == Dialog::LeaveKiosk && supervisor {
            self.kiosk_mode = false;
            ctx.send_viewport_cmd(egui::ViewportCommand::Fullscreen(false));
        }
        match &operator {
            Some((_, Some(_))) => {
                self.dialog = Dialog::Closed;
                self.refusal = None;
            }
            // The single-user desk stays so after a refused first supervisor: its dialog
            // stays open with the refusal.
            Some((_, None)) => {}
            // The next person at a shared screen does not see who was here; a refused
            // attempt keeps its name, since the same person is still typing.
            None if self.operator.is_some() => {
                self.name.clear();
                self.login_offered = false;
            }
            None => {}
        }
        self.heard = true;
        self.secret.clear();
        self.operator = operator;
        self.accounts = accounts;
        self.last_activity = Instant::now();
    }

    /// The worker refused the dialog's login or first supervisor.
    pub fn on_refused(&mut self, refusal: String) {
        self.refusal = Some(refusal);
        self.retype_secret = true;
    }

    /// A locked window with no camera has no kiosk to show: it opens on the login, once
    /// each time it locks (`camera`: whether one was found; `None` until looked for).
    pub fn offer_login_without_camera(&mut self, camera: Option<bool>) {
        let locked = self.heard && self.accounts && self.operator.is_none();
        if locked && camera == Some(false) && !self.kiosk_mode && !self.login_offered {
            self.login_offered = true;
            if self.dialog == Dialog::Closed {
                self.dialog = Dialog::Login;
            }
        }
    }

    pub fn allows(&self, permission: Permission) -> bool {
        match &self.operator {
            Some((_, Some(role))) => role.allows(permission),
            Some((_, None)) => true,
            None => false,
        }
    }

    pub fn shows(&self, tab: Tab) -> bool {
        if self.kiosk_mode {
            return tab == Tab::Kiosk;
        }
        match tab {
            Tab::Kiosk => true,
            Tab::Enrollment => self.allows(Permission::Enroll),
            Tab::SignatureDesk => self.allows(Permission::Verify),
            Tab::Thresholds | Tab::Changes | Tab::Attendance => self.allows(Permission::Report),
            Tab::Training => self.allows(Permission::Train),
        }
    }

    /// Logs out an operator who has not touched the window for `IDLE_LOCK`.
    pub fn lock_when_idle(&mut self, ctx: &egui::Context, requests: &mut Vec<Request>) {
        if ctx.input(|i| !i.events.is_empty() || i.pointer.is_moving()) {
            self.last_activity = Instant::now();
        }
        let logged_in = matches!(self.operator, Some((_, Some(_))));
        if logged_in && self.last_activity.elapsed() > IDLE_LOCK {
            self.last_activity = Instant::now();
            requests.push(Request::Access(AccessRequest::Logout));
        }
        if logged_in {
            ctx.request_repaint_after(Duration::from_secs(10));
        }
    }

    /// In kiosk mode the window cannot be closed: only a supervisor leaves it.
    pub fn hold_the_kiosk(&mut self, ctx: &egui::Context) {
        if self.kiosk_mode && ctx.input(|i| i.viewport().close_requested()) {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.dialog = Dialog::LeaveKiosk;
        }
    }

    /// The right end of the tab bar: who is here, and the way in or out.
    pub fn bar_ui(&mut self, ui: &mut egui::Ui, requests: &mut Vec<Request>) -> Option<Tab> {
        let mut go_to = None;
        if self.kiosk_mode {
            if ui.button("Leave kiosk mode").clicked() {
                self.dialog = Dialog::LeaveKiosk;
            }
            return None;
        }
        match &self.operator {
            Some((name, Some(role))) => {
                ui.label(format!("{name} ({role})"));
                if ui.button("Log out").clicked() {
                    requests.push(Request::Access(AccessRequest::Logout));
                    go_to = Some(Tab::Kiosk);
                }
                if *role == Role::Supervisor && ui.button("Kiosk mode").clicked() {
                    self.kiosk_mode = true;
                    ui.ctx()
                        .send_viewport_cmd(egui::ViewportCommand::Fullscreen(true));
                    requests.push(Request::Access(AccessRequest::Logout));
                    go_to = Some(Tab::Kiosk);
                }
            }
            Some((_, None)) => {
                ui.label("Single-user desk").on_hover_text(
                    "No operator accounts: whoever opens the window may do everything",
                );
                if ui.button("Create the first supervisor").clicked() {
                    self.dialog = Dialog::FirstSupervisor;
                }
            }
            None => {
                if ui.button("Log in").clicked() {
                    self.dialog = Dialog::Login;
                }
            }
        }
        go_to
    }

    /// The login (or first-supervisor) dialog, when open.
    pub fn dialog_ui(&mut self, ctx: &egui::Context, requests: &mut Vec<Request>) {
        let title = match self.dialog {
            Dialog::Closed => return,
            Dialog::Login => "Log in",
            Dialog::FirstSupervisor => "Create the first supervisor",
            Dialog::LeaveKiosk => "Supervisor login to leave kiosk mode",
        };
        let mut open = true;
        egui::Window::new(title)
            .collapsible(false)
            .resizable(false)
            .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
            .open(&mut open)
            .show(ctx, |ui| {
                super::labelled_text(ui, "Operator", &mut self.name);
                ui.horizontal(|ui| {
                    let label = ui.label("Password or PIN");
                    let secret = ui
                        .add(egui::TextEdit::singleline(&mut self.secret).password(true))
                        .labelled_by(label.id);
                    if std::mem::take(&mut self.retype_secret) {
                        secret.request_focus();
                    }
                });
                if let Some(refusal) = &self.refusal {
                    ui.colored_label(palette(ui).refused, refusal);
                }
                if self.dialog == Dialog::FirstSupervisor {
                    ui.label("At least 8 characters. From now on every change needs a login.");
                }
                let action = if self.dialog == Dialog::FirstSupervisor {
                    "Create supervisor"
                } else {
                    "Enter"
                };
                let submitted =
                    ui.button(action).clicked() || ui.input(|i| i.key_pressed(egui::Key::Enter));
                if submitted && !self.name.trim().is_empty() {
                    self.refusal = None;
                    let (name, secret) = (self.name.trim().to_string(), self.secret.clone());
                    requests.push(if self.dialog == Dialog::FirstSupervisor {
                        Request::Access(AccessRequest::CreateFirstSupervisor { name, secret })
                    } else {
                        Request::Access(AccessRequest::Login { name, secret })
                    });
                }
            });
        if !open {
            self.dialog = Dialog::Closed;
            self.secret.clear();
            self.refusal = None;
        }
    }
}
