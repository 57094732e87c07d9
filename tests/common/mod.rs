//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Device;
use vouch::face::FaceModels;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn data(name: &str) -> PathBuf {
    repo().join("tests/data").join(name)
}

/// The real models, loaded once per test binary.
pub fn models() -> &'static FaceModels {
    static MODELS: OnceLock<FaceModels> = OnceLock::new();
    MODELS.get_or_init(|| {
        FaceModels::load(&repo().join("models"), &Device::Cpu)
            .expect("models/ holds the converted weights")
    })
}

/// `../shared` (or `$VOUCH_SHARED`) joined with `relative`, or `None` with a message
/// saying which test skips and why.
pub fn shared(relative: &str, test: &str) -> Option<PathBuf> {
    let base = std::env::var_os("VOUCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared"));
    let path = base.join(relative);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED {test}: {} is absent (set VOUCH_SHARED to the shared data folder)",
            path.display()
        );
        None
    }
}
