//! Labelled scans for training and evaluation: a CSV manifest `path,identity,kind`
//! (kind genuine or forgery), or a folder read by its layout.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Genuine,
    Forgery,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledScan {
    pub path: PathBuf,
    pub identity: String,
    pub kind: Kind,
}

/// Reads a manifest; relative paths are taken from the manifest's folder.
pub fn read_manifest(path: &Path) -> Result<Vec<LabelledScan>> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| Error::Invalid(format!("cannot read manifest {}: {e}", path.display())))?;
    reader
        .deserialize::<LabelledScan>()
        .enumerate()
        .map(|(index, row)| {
            let mut scan = row.map_err(|e| {
                Error::Invalid(format!(
                    "{} line {}: {e} (expected columns path,identity,kind with kind genuine or forgery)",
                    path.display(),
                    index + 2
                ))
            })?;
            scan.path = base.join(&scan.path);
            Ok(scan)
        })
        .collect()
}

pub fn write_manifest(scans: &[LabelledScan], out: impl std::io::Write) -> Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    for scan in scans {
        writer
            .serialize(scan)
            .map_err(|e| Error::Invalid(format!("cannot write the manifest: {e}")))?;
    }
    writer
        .flush()
        .map_err(|e| Error::Invalid(format!("cannot write the manifest: {e}")))
}

/// A manifest file, or a folder: CEDAR's `genuine/original_W_N.png` and
/// `forged/forgeries_W_N.png` (identity `cedar-W`), else every folder that holds images is
/// one identity, named by its path under `root`, all genuine (the cross-media set,
/// extracted Omniglot).
pub fn load(root: &Path) -> Result<Vec<LabelledScan>> {
    if root.is_file() {
        return read_manifest(root);
    }
    if !root.is_dir() {
        return Err(Error::io(
            std::io::Error::from(std::io::ErrorKind::NotFound),
            root,
        ));
    }
    let mut scans = if root.join("genuine").is_dir() && root.join("forged").is_dir() {
        cedar(root)?
    } else {
        let mut scans = Vec::new();
        folders(root, root, &mut scans)?;
        scans
    };
    if scans.is_empty() {
        return Err(Error::Invalid(format!(
            "no images found under {}",
            root.display()
        )));
    }
    scans.sort_by_key(natural_key);
    Ok(scans)
}

/// Several sources as one data set. Sets name their people independently (the cross-media
/// set's writer `1` is not SVC2004's user `1`), so an identity found in more than one
/// source is renamed `<source folder>/<identity>` in each (`<source path>/<identity>` where
/// two sources' folders share a name, as two branches' `signatures`): two people are never
/// merged.
pub fn load_all(sources: &[std::path::PathBuf]) -> Result<Vec<LabelledScan>> {
    let loaded: Vec<Vec<LabelledScan>> = sources.iter().map(|s| load(s)).collect::<Result<_>>()?;
    let folders: Vec<String> = sources.iter().map(|s| source_label(s)).collect();
    let labels = sources.iter().zip(&folders).map(|(source, folder)| {
        if folders.iter().filter(|f| *f == folder).count() > 1 {
            source.display().to_string()
        } else {
            folder.clone()
        }
    });
    let mut sources_of: std::collections::HashMap<String, usize> = Default::default();
    for identity in loaded.iter().flat_map(|scans| identities(scans)) {
        *sources_of.entry(identity).or_default() += 1;
    }
    let mut all = Vec::new();
    for (label, scans) in labels.zip(&loaded) {
        all.extend(scans.iter().cloned().map(|mut scan| {
            if sources_of[&scan.identity] > 1 {
                scan.identity = format!("{label}/{}", scan.identity);
            }
            scan
        }));
    }
    Ok(all)
}

/// A source's name: its folder (a manifest's folder), as in `svc2004`.
fn source_label(source: &Path) -> String {
    let folder = if source.is_file() {
        source.parent().unwrap_or(source)
    } else {
        source
    };
    folder.file_name().map_or_else(
        || source.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Text split into (words, number) runs, compared number by number.
type NaturalText = Vec<(String, u64)>;

/// Orders identities and files by their numbers, so `original_2_10` follows `original_2_9`.
fn natural_key(scan: &LabelledScan) -> (NaturalText, Kind, NaturalText) {
    let key = |text: &str| {
        let mut parts = Vec::new();
        let mut word = String::new();
        let mut number = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                number.push(c);
            } else {
                if !number.is_empty() {
                    parts.push((std::mem::take(&mut word), number.parse().unwrap_or(0)));
                    number.clear();
                }
                word.push(c);
            }
        }
        parts.push((word, number.parse().unwrap_or(0)));
        parts
    };
    let kind_rank = scan.kind;
    (
        key(&scan.identity),
        kind_rank,
        key(&scan.path.to_string_lossy()),
    )
}

impl PartialOrd for Kind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Kind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        matches!(
            e.to_ascii_lowercase().as_str(),
            "png" | "jpg" | "jpeg" | "bmp" | "tif" | "tiff" | "pgm" | "webp"
        )
    })
}

fn cedar(root: &Path) -> Result<Vec<LabelledScan>> {
    let mut scans = Vec::new();
    for (folder, prefix, kind) in [
        ("genuine", "original_", Kind::Genuine),
        ("forged", "forgeries_", Kind::Forgery),
    ] {
        let dir = root.join(folder);
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(e, &dir))? {
            let path = entry.map_err(|e| Error::io(e, &dir))?.path();
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let Some(writer) = stem
                .strip_prefix(prefix)
                .and_then(|rest| rest.split('_').next())
            else {
                continue;
            };
            if is_image(&path) {
                scans.push(LabelledScan {
                    identity: format!("cedar-{writer}"),
                    path,
                    kind,
                });
            }
        }
    }
    Ok(scans)
}

fn folders(root: &Path, dir: &Path, scans: &mut Vec<LabelledScan>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(e, dir))?
        .map(|entry| entry.map(|e| e.path()).map_err(|e| Error::io(e, dir)))
        .collect::<Result<_>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            folders(root, &path, scans)?;
        } else if is_image(&path) && dir != root {
            let identity = dir
                .strip_prefix(root)
                .unwrap_or(dir)
                .to_string_lossy()
                .replace('\\', "/");
            scans.push(LabelledScan {
                path,
                identity,
                kind: Kind::Genuine,
            });
        }
    }
    Ok(())
}

pub fn identities(scans: &[LabelledScan]) -> Vec<String> {
    identities_of(scans.iter().map(|s| s.identity.as_str()))
}

/// Keeps only identities whose number (the last number in the name, as in `cedar-12`)
/// lies in `range`.
pub fn numbered_between(
    scans: Vec<LabelledScan>,
    range: std::ops::RangeInclusive<u64>,
) -> Vec<LabelledScan> {
    scans
        .into_iter()
        .filter(|scan| {
            let digits: String = scan
                .identity
                .chars()
                .rev()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(char::is_ascii_digit)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            digits.parse().is_ok_and(|n| range.contains(&n))
        })
        .collect()
}

/// Distinct identity names in order of first appearance.
pub fn identities_of<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for name in names {
        if !seen.iter().any(|s| s == name) {
            seen.push(name.to_string());
        }
    }
    seen
}
