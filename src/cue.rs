//! The kiosk's sound cues: a rising two-note chime for a punch, a low note when the
//! person must do something else (unknown, not sure, refused). The tones are made here as
//! WAV (hound) and played by the system's own player (PipeWire's `pw-play`, PulseAudio's
//! `paplay`, ALSA's `aplay`, macOS's `afplay`), so the build needs no audio libraries; a
//! machine with none of them stays silent and says so once in the log.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// What the person at the kiosk should hear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cue {
    /// Checked in or out.
    Done,
    /// Look at the screen: something else is needed.
    Attention,
}

const SAMPLE_RATE: u32 = 22_050;

impl Cue {
    /// (frequency in Hz, milliseconds) of each note.
    fn notes(self) -> &'static [(f32, u32)] {
        match self {
            Cue::Done => &[(660.0, 110), (880.0, 160)],
            Cue::Attention => &[(330.0, 280)],
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Cue::Done => "vouch-done.wav",
            Cue::Attention => "vouch-attention.wav",
        }
    }

    /// The cue as a mono 16-bit WAV file's bytes. Each note fades in and out over 10 ms,
    /// so it does not click.
    pub fn wav(self) -> Result<Vec<u8>> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut bytes = std::io::Cursor::new(Vec::new());
        let fail = |e: hound::Error| Error::Invalid(format!("cannot make the sound cue: {e}"));
        let mut writer = hound::WavWriter::new(&mut bytes, spec).map_err(fail)?;
        let fade = SAMPLE_RATE as f32 * 0.010;
        for &(frequency, millis) in self.notes() {
            let samples = SAMPLE_RATE * millis / 1000;
            for n in 0..samples {
                let t = n as f32 / SAMPLE_RATE as f32;
                let envelope = (n as f32 / fade).min((samples - n) as f32 / fade).min(1.0);
                let value = (std::f32::consts::TAU * frequency * t).sin() * envelope * 0.4;
                writer
                    .write_sample((value * f32::from(i16::MAX)) as i16)
                    .map_err(fail)?;
            }
        }
        writer.finalize().map_err(fail)?;
        Ok(bytes.into_inner())
    }
}

/// Players tried in order: (program, arguments before the file).
const PLAYERS: &[(&str, &[&str])] = &[
    ("pw-play", &[]),
    ("paplay", &[]),
    ("aplay", &["-q"]),
    ("afplay", &[]),
];

/// Plays cues without waiting for them.
pub struct CuePlayer {
    files: PathBuf,
    player: Option<(&'static str, &'static [&'static str])>,
}

impl CuePlayer {
    /// Writes the cues into `files` and finds a player; `None` (with a log line) when
    /// the cues cannot be written or there is no player.
    pub fn new(files: &Path) -> Option<Self> {
        let player = PLAYERS.iter().copied().find(|(program, _)| {
            Command::new(program)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        });
        if player.is_none() {
            tracing::info!("no sound player (pw-play, paplay, aplay, afplay): the kiosk is silent");
            return None;
        }
        let written = std::fs::create_dir_all(files)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                [Cue::Done, Cue::Attention].into_iter().try_for_each(|cue| {
                    let wav = cue.wav().map_err(|e| e.to_string())?;
                    std::fs::write(files.join(cue.file_name()), wav).map_err(|e| e.to_string())
                })
            });
        if let Err(error) = written {
            tracing::warn!(%error, "cannot write the sound cues: the kiosk is silent");
            return None;
        }
        Some(Self {
            files: files.to_path_buf(),
            player,
        })
    }

    /// Starts the cue and returns at once; a player that fails is logged, never raised.
    pub fn play(&self, cue: Cue) {
        let Some((program, arguments)) = self.player else {
            return;
        };
        let started = Command::new(program)
            .args(arguments)
            .arg(self.files.join(cue.file_name()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match started {
            // Reaped on its own thread so no zombie is left behind.
            Ok(mut child) => {
                std::thread::spawn(move || child.wait());
            }
            Err(error) => tracing::warn!(%error, program, "the sound cue did not play"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cue_is_a_short_clean_wav() {
        for (cue, millis) in [(Cue::Done, 270), (Cue::Attention, 280)] {
            let bytes = cue.wav().unwrap();
            let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).unwrap();
            assert_eq!(reader.spec().sample_rate, SAMPLE_RATE);
            assert_eq!(reader.duration(), SAMPLE_RATE * millis / 1000);
            let samples: Vec<i16> = reader.into_samples().map(|s| s.unwrap()).collect();
            // Loud enough to hear, far from clipping, and silent at both ends.
            let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!((10_000..16_000).contains(&peak), "peak {peak}");
            assert!(samples[0].abs() < 100 && samples.last().unwrap().abs() < 400);
        }
    }
}
