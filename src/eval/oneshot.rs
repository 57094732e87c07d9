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
use crate::signature::distortion::GradientContexts;
use crate::signature::shape::{self, InkShape};
use crate::signature::{SignatureModel, signature_score};

#[derive(Debug, Clone, Serialize)]
pub struct OneshotReport {
    pub runs: usize,
    pub ways: usize,
    pub trials: usize,
    /// Trials the fused decision got right (the encoder's alone when both weights are 0).
    pub correct: usize,
    pub accuracy: f64,
    /// Each opinion alone, for comparison.
    pub encoder_accuracy: f64,
    pub shape_accuracy: f64,
    pub distortion_accuracy: f64,
    pub weights: OneshotWeights,
}

/// How much the two comparisons that learn nothing count beside the encoder's score.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct OneshotWeights {
    /// The aligned-ink distance of `signature::shape`.
    pub shape: f32,
    /// The local-distortion distance of `signature::distortion`.
    pub distortion: f32,
}

impl Default for OneshotWeights {
    /// Chosen on the Omniglot development folds (models/README.md).
    fn default() -> Self {
        Self {
            shape: 2.0,
            distortion: 4.0,
        }
    }
}

/// `runNN/test/item01.png` names a file inside the run folder by its last two parts.
fn in_run(run: &Path, listed: &str) -> PathBuf {
    let parts: Vec<&str> = listed.split(['/', '\\']).collect();
    parts[parts.len().saturating_sub(2)..]
        .iter()
        .fold(run.to_path_buf(), |path, part| path.join(part))
}

/// What each comparison needs of a set of drawings.
struct Described {
    embeddings: Vec<Vec<f32>>,
    shapes: Vec<InkShape>,
    contexts: Vec<GradientContexts>,
}

fn describe(model: &SignatureModel, paths: &[PathBuf]) -> Result<Described> {
    let mut canvases = Vec::with_capacity(paths.len());
    let mut shapes = Vec::with_capacity(paths.len());
    let mut contexts = Vec::with_capacity(paths.len());
    for path in paths {
        let source = path.display().to_string();
        let image = crate::imageio::load(path)?;
        canvases.push(model.normalise(&image, &source)?.canvas);
        let grey = image.to_luma8();
        shapes.push(InkShape::of(&grey, &source)?);
        contexts.push(GradientContexts::of(&grey, &source)?);
    }
    Ok(Described {
        embeddings: model.embed_canvases(&canvases)?,
        shapes,
        contexts,
    })
}

/// Each value's distance from the values' mean in their standard deviations (0 when they
/// are all equal), so that a score and a distance can be added whatever their units.
fn standardised(values: &[f32]) -> Vec<f32> {
    let count = values.len().max(1) as f32;
    let mean = values.iter().sum::<f32>() / count;
    let spread = (values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / count).sqrt();
    values
        .iter()
        .map(|v| {
            if spread > 0.0 {
                (v - mean) / spread
            } else {
                0.0
            }
        })
        .collect()
}

fn best(values: &[f32]) -> Option<usize> {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(index, _)| index)
}

/// Classifies every query of every run by the encoder's score, by the distances of
/// `signature::shape` and `signature::distortion`, and by all three together: per query,
/// the candidates' standardised scores minus each distance's weight times its
/// standardised distances.
pub fn evaluate_runs(
    model: &SignatureModel,
    runs_dir: &Path,
    weights: OneshotWeights,
) -> Result<OneshotReport> {
    for (name, weight) in [("shape", weights.shape), ("distortion", weights.distortion)] {
        if !weight.is_finite() || weight < 0.0 {
            return Err(Error::Invalid(format!(
                "{name} weight {weight}: must be 0 or more"
            )));
        }
    }
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
    let (mut trials, mut ways) = (0, 0);
    let (mut fused_correct, mut encoder_correct) = (0, 0);
    let (mut shape_correct, mut distortion_correct) = (0, 0);
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
        let candidates = describe(model, &classes)?;
        let asked = describe(model, &queries)?;
        let shape_distances =
            shape::distance_matrix(&asked.shapes, &candidates.shapes, InkShape::distance);
        let distortion_distances = shape::distance_matrix(
            &asked.contexts,
            &candidates.contexts,
            GradientContexts::distance,
        );
        for (index, (_, truth)) in pairs.iter().enumerate() {
            let scores: Vec<f32> = candidates
                .embeddings
                .iter()
                .map(|class| signature_score(class, &asked.embeddings[index]))
                .collect();
            let nearness = |distances: &[f32]| distances.iter().map(|d| -d).collect::<Vec<_>>();
            let shape_nearness = nearness(&shape_distances[index]);
            let distortion_nearness = nearness(&distortion_distances[index]);
            let fused: Vec<f32> = standardised(&scores)
                .iter()
                .zip(standardised(&shape_nearness))
                .zip(standardised(&distortion_nearness))
                .map(|((score, shape), distortion)| {
                    score + weights.shape * shape + weights.distortion * distortion
                })
                .collect();
            let is_truth =
                |choice: Option<usize>| choice.map(|index| &classes[index]) == Some(truth);
            trials += 1;
            encoder_correct += usize::from(is_truth(best(&scores)));
            shape_correct += usize::from(is_truth(best(&shape_nearness)));
            distortion_correct += usize::from(is_truth(best(&distortion_nearness)));
            fused_correct += usize::from(is_truth(best(&fused)));
        }
    }
    let share = |correct: usize| correct as f64 / trials.max(1) as f64;
    Ok(OneshotReport {
        runs: runs.len(),
        ways,
        trials,
        correct: fused_correct,
        accuracy: share(fused_correct),
        encoder_accuracy: share(encoder_correct),
        shape_accuracy: share(shape_correct),
        distortion_accuracy: share(distortion_correct),
        weights,
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
