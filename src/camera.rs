//! The webcam, through nokhwa: the list of cameras, and a named thread that grabs RGB
//! frames into a one-frame slot. Each new frame replaces the one before it, so the kiosk
//! always analyses the newest frame; frames it had no time for are dropped, not queued.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use image::RgbImage;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{ApiBackend, CameraIndex, RequestedFormat, RequestedFormatType};

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
        let newest = Arc::new(Mutex::new(None));
        let slot = newest.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("vouch-camera".into())
            .spawn(move || grab(index, &slot, &stopping, &on_frame))
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

fn grab(index: u32, slot: &Mutex<Option<Grabbed>>, stop: &AtomicBool, on_frame: &dyn Fn()) {
    let deliver = |grabbed: Grabbed| {
        if let Ok(mut newest) = slot.lock() {
            *newest = Some(grabbed);
        }
        on_frame();
    };
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
