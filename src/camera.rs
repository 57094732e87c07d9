//! The webcam, through nokhwa: the list of cameras, and a named thread that grabs RGB
//! frames into a one-frame slot (or plays a recorded sequence into it). Each new frame replaces the one before it, so the kiosk
//! always analyses the newest frame; frames it had no time for are dropped, not queued.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use image::RgbImage;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{ApiBackend, CameraIndex, RequestedFormat, RequestedFormatType};
use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct CameraInfo {
    pub index: u32,
    pub name: String,
}

/// Cameras the system reports; an empty list (not an error) when there are none.
pub fn list() -> Result<Vec<CameraInfo>> {
    let cameras = nokhwa::query(ApiBackend::Auto)
        .map_err(|e| Error::Device(format!("cannot list cameras: {e}")))?;
    Ok(cameras
        .iter()
        .filter_map(|camera| match camera.index() {
            CameraIndex::Index(index) => Some(CameraInfo {
                index: *index,
                name: camera.human_name(),
            }),
            CameraIndex::String(_) => None,
        })
        .collect())
}

/// A frame, or why the camera could not give one.
pub type Grabbed = std::result::Result<RgbImage, String>;

/// A running camera; dropping it stops the thread and releases the device.
pub struct CameraFeed {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    newest: Arc<Mutex<Option<Grabbed>>>,
}

impl CameraFeed {
    /// Opens camera `index`; `on_frame` is called after each frame (to wake the window).
    pub fn start(index: u32, on_frame: impl Fn() + Send + 'static) -> Result<Self> {
        Self::spawn(move |slot, stopping| grab(index, slot, stopping, &on_frame))
    }

    /// Plays a recorded sequence (`RecordedSequence`, read on the camera's thread) once, at
    /// its frame rate or as fast as the kiosk takes the frames, whichever is slower, as if a
    /// camera grabbed it: the kiosk can be tried, and tested, without a camera.
    pub fn replay(dir: PathBuf, on_frame: impl Fn() + Send + 'static) -> Result<Self> {
        Self::spawn(move |slot, stopping| play(&dir, slot, stopping, &on_frame))
    }

    fn spawn(
        body: impl FnOnce(&Mutex<Option<Grabbed>>, &AtomicBool) + Send + 'static,
    ) -> Result<Self> {
        let newest = Arc::new(Mutex::new(None));
        let slot = newest.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("vouch-camera".into())
            .spawn(move || body(&slot, &stopping))
            .map_err(|e| Error::Device(format!("cannot start the camera thread: {e}")))?;
        Ok(Self {
            stop,
            thread: Some(thread),
            newest,
        })
    }

    /// The newest frame since the last call, if any.
    pub fn take_newest(&self) -> Option<Grabbed> {
        self.newest.lock().ok()?.take()
    }
}

/// Puts a frame in the one-frame slot, over any the kiosk has not taken.
fn deliver(slot: &Mutex<Option<Grabbed>>, on_frame: &dyn Fn(), grabbed: Grabbed) {
    if let Ok(mut newest) = slot.lock() {
        *newest = Some(grabbed);
    }
    on_frame();
}

fn play(dir: &Path, slot: &Mutex<Option<Grabbed>>, stop: &AtomicBool, on_frame: &dyn Fn()) {
    let sequence = match RecordedSequence::load(dir) {
        Ok(sequence) => sequence,
        Err(error) => return deliver(slot, on_frame, Err(error.to_string())),
    };
    let interval = std::time::Duration::from_secs_f32(1.0 / sequence.info.fps);
    for frame in sequence.frames {
        // Every frame reaches the kiosk, however slow the machine: a recording to test
        // with, not a clock (`vouch bench kiosk` measures at the camera's pace).
        while slot.lock().is_ok_and(|newest| newest.is_some()) {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        deliver(slot, on_frame, Ok(frame));
        std::thread::sleep(interval);
    }
}

fn grab(index: u32, slot: &Mutex<Option<Grabbed>>, stop: &AtomicBool, on_frame: &dyn Fn()) {
    let deliver = |grabbed: Grabbed| deliver(slot, on_frame, grabbed);
    let format = RequestedFormat::new::<RgbFormat>(RequestedFormatType::AbsoluteHighestFrameRate);
    let opened = nokhwa::Camera::new(CameraIndex::Index(index), format).and_then(|mut camera| {
        camera.open_stream()?;
        Ok(camera)
    });
    let mut camera = match opened {
        Ok(camera) => camera,
        Err(error) => {
            deliver(Err(format!("cannot open camera {index}: {error}")));
            return;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let frame = camera
            .frame()
            .and_then(|buffer| buffer.decode_image::<RgbFormat>())
            .map_err(|e| format!("camera {index}: {e}"));
        let failed = frame.is_err();
        deliver(frame);
        if failed {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    let _ = camera.stop_stream();
}

impl Drop for CameraFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Frames recorded at a kiosk (or made like them), with what is known about them.
#[derive(Debug, Clone, Deserialize)]
pub struct SequenceInfo {
    pub fps: f32,
    pub frames: usize,
    /// The first frame in which the face is wholly in view.
    pub face_in_view_from: usize,
    /// Frames with the eyes shut.
    #[serde(default)]
    pub eyes_shut: Vec<usize>,
}

/// A recorded sequence: `sequence.json`, `frame_NN.jpg`, and `reference.jpg` (the person's
/// enrollment photo).
pub struct RecordedSequence {
    pub info: SequenceInfo,
    pub frames: Vec<RgbImage>,
    pub reference: PathBuf,
}

/// Frames a sequence may hold: a minute at 30 frames a second.
const MAX_SEQUENCE_FRAMES: usize = 1800;
/// A camera frame's longest side: a 1080p webcam's, with room.
const MAX_FRAME_SIDE: u32 = 2048;
/// `sequence.json` is a few lines.
const MAX_INFO_BYTES: u64 = 64 * 1024;

impl RecordedSequence {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("sequence.json");
        let bad = |reason: String| Error::Invalid(format!("{reason}: {}", path.display()));
        let size = std::fs::metadata(&path)
            .map_err(|e| Error::io(e, &path))?
            .len();
        if size > MAX_INFO_BYTES {
            return Err(bad(format!("{size} bytes is no sequence description")));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(e, &path))?;
        let info: SequenceInfo =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a sequence: {e}")))?;
        if !(info.fps.is_finite() && info.fps > 0.0 && info.fps <= 240.0) {
            return Err(bad(format!("fps {} is not a camera's", info.fps)));
        }
        if info.frames == 0 || info.frames > MAX_SEQUENCE_FRAMES {
            return Err(bad(format!(
                "{} frames (1 to {MAX_SEQUENCE_FRAMES})",
                info.frames
            )));
        }
        if info.face_in_view_from >= info.frames {
            return Err(bad("the face is never in view".into()));
        }
        let mut frames: Vec<RgbImage> = Vec::with_capacity(info.frames);
        for index in 0..info.frames {
            let file = dir.join(format!("frame_{index:02}.jpg"));
            let frame = crate::imageio::load_rgb(&file)?;
            let (width, height) = frame.dimensions();
            let first = frames.first().map_or((width, height), RgbImage::dimensions);
            if width > MAX_FRAME_SIDE || height > MAX_FRAME_SIDE || (width, height) != first {
                return Err(Error::Invalid(format!(
                    "a {width}x{height} frame is not the camera's (at most {MAX_FRAME_SIDE} px a side, every frame the size of the first): {}",
                    file.display()
                )));
            }
            frames.push(frame);
        }
        Ok(Self {
            info,
            frames,
            reference: dir.join("reference.jpg"),
        })
    }
}
