//! N-way one-shot classification in the format of Lake et al.'s Omniglot runs: each run
//! folder holds `training/` (one image per class), `test/` (one query per class) and
//! `class_labels.txt` (lines `runNN/test/itemKK.png runNN/training/classJJ.png`). A query
//! is classified as the training image it scores highest against.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::signature::{SignatureModel, signature_score};

#[derive(Debug, Clone, Serialize)]
pub struct OneshotReport {
    pub runs: usize,
    pub ways: usize,
    pub trials: usize,
    pub correct: usize,
    pub accuracy: f64,
}

/// `runNN/test/item01.png` names a file inside the run folder by its last two parts.
fn in_run(run: &Path, listed: &str) -> PathBuf {
    let parts: Vec<&str> = listed.split(['/', '\\']).collect();
    parts[parts.len().saturating_sub(2)..]
        .iter()
        .fold(run.to_path_buf(), |path, part| path.join(part))
}

fn embed(model: &SignatureModel, paths: &[PathBuf]) -> Result<Vec<Vec<f32>>> {
    let canvases = paths
        .iter()
        .map(|path| {
            let image = crate::imageio::load(path)?;
            Ok(model.normalise(&image, &path.display().to_string())?.canvas)
        })
        .collect::<Result<Vec<_>>>()?;
    model.embed_canvases(&canvases)
}

pub fn evaluate_runs(model: &SignatureModel, runs_dir: &Path) -> Result<OneshotReport> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(runs_dir)
        .map_err(|e| Error::io(e, runs_dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.join("class_labels.txt").is_file())
        .collect();
    runs.sort();
    if runs.is_empty() {
        return Err(Error::Invalid(format!(
            "no run folders with class_labels.txt in {}",
            runs_dir.display()
        )));
    }
    let (mut trials, mut correct, mut ways) = (0, 0, 0);
    for run in &runs {
        let labels_path = run.join("class_labels.txt");
        let text = std::fs::read_to_string(&labels_path).map_err(|e| Error::io(e, &labels_path))?;
        let pairs: Vec<(PathBuf, PathBuf)> = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                Some((in_run(run, fields.next()?), in_run(run, fields.next()?)))
            })
            .collect();
        let mut classes: Vec<PathBuf> = pairs.iter().map(|(_, class)| class.clone()).collect();
        classes.sort();
        classes.dedup();
        ways = classes.len();
        let queries: Vec<PathBuf> = pairs.iter().map(|(query, _)| query.clone()).collect();
        let class_embeddings = embed(model, &classes)?;
        let query_embeddings = embed(model, &queries)?;
        for ((_, truth), query) in pairs.iter().zip(&query_embeddings) {
            let best = class_embeddings
                .iter()
                .enumerate()
                .max_by(|a, b| signature_score(a.1, query).total_cmp(&signature_score(b.1, query)))
                .map(|(index, _)| &classes[index]);
            trials += 1;
            if best == Some(truth) {
                correct += 1;
            }
        }
    }
    Ok(OneshotReport {
        runs: runs.len(),
        ways,
        trials,
        correct,
        accuracy: correct as f64 / trials.max(1) as f64,
    })
}

/// Builds `runs` N-way runs in the standard format from an Omniglot-style folder
/// (`Alphabet/characterNN/ID_DD.png`, DD the drawer): each run takes `ways` characters of
/// one alphabet and two drawers, one for the training images and one for the queries.
/// Alphabets named in `exclude` (those seen in training) are skipped.
pub fn make_runs(
    source: &Path,
    out: &Path,
    runs: usize,
    ways: usize,
    exclude: &[String],
    seed: u64,
) -> Result<usize> {
    let scans = crate::dataset::load(source)?;
    let mut alphabets: Vec<String> = crate::dataset::identities(&scans)
        .iter()
        .filter_map(|identity| identity.split('/').next().map(str::to_string))
        .filter(|alphabet| !exclude.contains(alphabet))
        .collect();
    alphabets.dedup();
    // An N-way run needs N characters from one alphabet.
    let identities = crate::dataset::identities(&scans);
    alphabets.retain(|alphabet| {
        identities
            .iter()
            .filter(|identity| identity.starts_with(&format!("{alphabet}/")))
            .count()
            >= ways
    });
    let mut rng = StdRng::seed_from_u64(seed);
    let drawer = |path: &Path| {
        path.file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.rsplit('_').next())
            .map(str::to_string)
    };
    let mut made = 0;
    for run in 1..=runs {
        let alphabet = alphabets
            .choose(&mut rng)
            .ok_or_else(|| Error::Invalid("no alphabet left for one-shot runs".into()))?;
        let mut characters: Vec<String> = crate::dataset::identities(&scans)
            .into_iter()
            .filter(|identity| identity.starts_with(&format!("{alphabet}/")))
            .collect();
        characters.shuffle(&mut rng);
        characters.truncate(ways);
        let drawers: Vec<String> = {
            let mut all: Vec<String> = scans
                .iter()
                .filter(|s| s.identity == characters[0])
                .filter_map(|s| drawer(&s.path))
                .collect();
            all.sort();
            all.dedup();
            all.choose_multiple(&mut rng, 2).cloned().collect()
        };
        let dir = out.join(format!("run{run:02}"));
        for sub in ["training", "test"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| Error::io(e, &dir))?;
        }
        let mut order: Vec<usize> = (0..characters.len()).collect();
        order.shuffle(&mut rng);
        let mut labels = String::new();
        for (index, character) in characters.iter().enumerate() {
            let by_drawer = |wanted: &String| {
                scans
                    .iter()
                    .find(|s| s.identity == *character && drawer(&s.path).as_ref() == Some(wanted))
                    .map(|s| s.path.clone())
            };
            let (Some(class_image), Some(query_image)) =
                (by_drawer(&drawers[0]), by_drawer(&drawers[1]))
            else {
                continue;
            };
            let class_name = format!("training/class{:02}.png", index + 1);
            let query_name = format!("test/item{:02}.png", order[index] + 1);
            for (from, to) in [(&class_image, &class_name), (&query_image, &query_name)] {
                std::fs::copy(from, dir.join(to)).map_err(|e| Error::io(e, from))?;
            }
            labels.push_str(&format!(
                "run{run:02}/{query_name} run{run:02}/{class_name}\n"
            ));
        }
        let labels_path = dir.join("class_labels.txt");
        std::fs::write(&labels_path, labels).map_err(|e| Error::io(e, &labels_path))?;
        made += 1;
    }
    Ok(made)
}
