//! Vouch: biometric enrollment and verification on a Siamese (shared-weight) encoder.
//!
//! Everything lives in this library; `src/main.rs` is a thin front end (the window with no
//! arguments, the CLI with a subcommand). See ARCHITECTURE.md for the map.

pub mod attendance;
pub mod camera;
pub mod cli;
pub mod context;
pub mod cpu;
pub mod cue;
pub mod dataset;
pub mod device;
pub mod enroll;
pub mod error;
pub mod eval;
pub mod face;
pub mod gallery;
pub mod gui;
pub mod imageio;
pub mod kiosk;
pub mod matching;
pub mod models;
pub mod nn;
pub mod perf;
pub mod signature;
pub mod store;
pub mod train;
pub mod types;
pub mod workflow;

pub use error::{Error, Result};
