//! Evaluation on labelled pairs (LFW's `pairs.txt` format): accuracy at the best
//! threshold, at the shipped threshold, and by k-fold cross-validation.

pub mod copies;
pub mod crops;
pub mod oneshot;
pub mod report;
pub mod standards;
pub mod verification;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::face::FaceModels;
use crate::imageio;
use crate::matching::{euclidean_distance, face_distance_for_score};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    pub name: String,
    pub number: u32,
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{:04}", self.name, self.number)
    }
}

impl ImageRef {
    pub fn path(&self, root: &Path) -> PathBuf {
        root.join(&self.name)
            .join(format!("{}_{:04}.jpg", self.name, self.number))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub first: ImageRef,
    pub second: ImageRef,
    pub same: bool,
}

/// Parses `Name i j` (same person) and `NameA i NameB j` (different) lines; a leading
/// line of counts, as LFW has, is skipped.
pub fn parse_pairs(text: &str) -> Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let number = |s: &str| {
            s.parse::<u32>().map_err(|_| {
                Error::Invalid(format!(
                    "pairs line {}: `{s}` is not an image number",
                    index + 1
                ))
            })
        };
        let image = |name: &str, n: &str| -> Result<ImageRef> {
            Ok(ImageRef {
                name: name.to_string(),
                number: number(n)?,
            })
        };
        match fields.as_slice() {
            [] => {}
            [count] | [count, _] if index == 0 && count.parse::<u32>().is_ok() => {}
            [name, i, j] => pairs.push(Pair {
                first: image(name, i)?,
                second: image(name, j)?,
                same: true,
            }),
            [a, i, b, j] => pairs.push(Pair {
                first: image(a, i)?,
                second: image(b, j)?,
                same: false,
            }),
            _ => {
                return Err(Error::Invalid(format!(
                    "pairs line {}: expected `Name i j` or `NameA i NameB j`",
                    index + 1
                )));
            }
        }
    }
    Ok(pairs)
}

#[derive(Debug, Clone, Serialize)]
pub struct PairsReport {
    pub pairs: usize,
    pub same_pairs: usize,
    pub different_pairs: usize,
    pub images: usize,
    /// Images in which no face was found; their pairs count as wrong decisions.
    pub failed_detections: usize,
    /// The same, by cause (no face, too small, too dark, too blurred).
    pub failure_to_acquire: standards::Acquisition,
    pub best_threshold_distance: f32,
    pub best_threshold_accuracy: f64,
    pub default_threshold_distance: f32,
    pub default_threshold_accuracy: f64,
    pub folds: Option<usize>,
    pub fold_accuracy_mean: Option<f64>,
    pub fold_accuracy_std: Option<f64>,
    /// The misjudged pairs at the best threshold, worst first (at most ten).
    pub worst_errors: Vec<PairError>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairError {
    pub first: String,
    pub second: String,
    pub same: bool,
    /// `None` where a face was not found.
    pub distance: Option<f32>,
}

/// Distances of the pairs, `None` where a face was missing in either image.
pub struct Scored {
    pub distance: Option<f32>,
    pub same: bool,
    /// `Name_0001/Name_0002`, for reports.
    pub label: (String, String),
}

/// Embeds every distinct image once (main face), reporting `(done, total)` as it goes;
/// stops early with `Error::Invalid("cancelled")` when `cancel` is set. Also returns the
/// images in which no face was found, by cause.
pub fn score_pairs(
    models: &FaceModels,
    pairs: &[Pair],
    root: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<Scored>, standards::Acquisition)> {
    let mut images: Vec<&ImageRef> = pairs.iter().flat_map(|p| [&p.first, &p.second]).collect();
    images.sort_by(|a, b| (&a.name, a.number).cmp(&(&b.name, b.number)));
    images.dedup();
    let mut embeddings: HashMap<&ImageRef, Option<Vec<f32>>> = HashMap::new();
    let mut causes = Vec::new();
    for (done, image) in images.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Invalid("cancelled".into()));
        }
        let path = image.path(root);
        let picture = imageio::load_rgb(&path)?;
        let embedding = match models.main_face(&picture, &path.display().to_string()) {
            Ok((face, _)) => Some(face.embedding),
            Err(Error::NoFace(_)) => {
                let cause = crate::face::quality::no_face_cause(&picture);
                tracing::warn!(path = %path.display(), cause, "no face found");
                causes.push(cause.to_string());
                None
            }
            Err(other) => return Err(other),
        };
        embeddings.insert(image, embedding);
        progress(done + 1, images.len());
    }
    let scored = pairs
        .iter()
        .map(|pair| Scored {
            distance: match (&embeddings[&pair.first], &embeddings[&pair.second]) {
                (Some(a), Some(b)) => euclidean_distance(a, b).ok(),
                _ => None,
            },
            same: pair.same,
            label: (pair.first.to_string(), pair.second.to_string()),
        })
        .collect();
    Ok((
        scored,
        standards::Acquisition::new(images.len(), causes, 0, 0),
    ))
}

/// Accuracy when "same" means `distance <= threshold`; a missing distance is always wrong.
pub fn accuracy_at(scored: &[&Scored], threshold: f32) -> f64 {
    let correct = scored
        .iter()
        .filter(|s| matches!(s.distance, Some(d) if (d <= threshold) == s.same))
        .count();
    correct as f64 / scored.len().max(1) as f64
}

/// The threshold with the highest accuracy, placed halfway between neighbouring distances.
pub fn best_threshold(scored: &[&Scored]) -> (f32, f64) {
    let mut distances: Vec<f32> = scored.iter().filter_map(|s| s.distance).collect();
    distances.sort_by(f32::total_cmp);
    let mut candidates = vec![0.0];
    candidates.extend(distances.windows(2).map(|w| (w[0] + w[1]) / 2.0));
    candidates.extend(distances.last().map(|d| d + 1.0));
    candidates
        .into_iter()
        .map(|t| (t, accuracy_at(scored, t)))
        .fold(
            (0.0, -1.0),
            |best, current| if current.1 > best.1 { current } else { best },
        )
}

/// k-fold accuracy: each fold is judged at the threshold that is best on the other folds.
/// Same and different pairs are spread evenly over the folds, in file order.
pub fn fold_accuracies(scored: &[Scored], folds: usize) -> Vec<f64> {
    let mut fold_of = vec![0; scored.len()];
    for same in [true, false] {
        let members: Vec<usize> = (0..scored.len())
            .filter(|&i| scored[i].same == same)
            .collect();
        for (rank, &index) in members.iter().enumerate() {
            fold_of[index] = rank * folds / members.len();
        }
    }
    (0..folds)
        .map(|fold| {
            let (test, train): (Vec<_>, Vec<_>) =
                scored.iter().zip(&fold_of).partition(|&(_, &f)| f == fold);
            let train: Vec<&Scored> = train.into_iter().map(|(s, _)| s).collect();
            let test: Vec<&Scored> = test.into_iter().map(|(s, _)| s).collect();
            accuracy_at(&test, best_threshold(&train).0)
        })
        .collect()
}

pub fn report(
    scored: &[Scored],
    failure_to_acquire: standards::Acquisition,
    default_threshold_score: f32,
    folds: Option<usize>,
    seconds: f64,
) -> PairsReport {
    let all: Vec<&Scored> = scored.iter().collect();
    let (best_threshold_distance, best_threshold_accuracy) = best_threshold(&all);
    let default_threshold_distance = face_distance_for_score(default_threshold_score);
    let fold_stats = folds.filter(|&k| k >= 2 && scored.len() >= k).map(|k| {
        let accuracies = fold_accuracies(scored, k);
        let mean = accuracies.iter().sum::<f64>() / k as f64;
        let variance = accuracies.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / k as f64;
        (k, mean, variance.sqrt())
    });
    let mut worst_errors: Vec<PairError> = scored
        .iter()
        .filter(|s| !matches!(s.distance, Some(d) if (d <= best_threshold_distance) == s.same))
        .map(|s| PairError {
            first: s.label.0.clone(),
            second: s.label.1.clone(),
            same: s.same,
            distance: s.distance,
        })
        .collect();
    let badness = |e: &PairError| {
        e.distance
            .map_or(f32::INFINITY, |d| (d - best_threshold_distance).abs())
    };
    worst_errors.sort_by(|a, b| badness(b).total_cmp(&badness(a)));
    worst_errors.truncate(10);
    PairsReport {
        pairs: scored.len(),
        same_pairs: scored.iter().filter(|s| s.same).count(),
        different_pairs: scored.iter().filter(|s| !s.same).count(),
        images: failure_to_acquire.presented,
        failed_detections: failure_to_acquire.failed_to_acquire(),
        failure_to_acquire,
        best_threshold_distance,
        best_threshold_accuracy,
        default_threshold_distance,
        default_threshold_accuracy: accuracy_at(&all, default_threshold_distance),
        folds: fold_stats.map(|s| s.0),
        fold_accuracy_mean: fold_stats.map(|s| s.1),
        fold_accuracy_std: fold_stats.map(|s| s.2),
        worst_errors,
        seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lfw_pair_lines() {
        let pairs =
            parse_pairs("2\nAbel_Pacheco 1 4\nAbdel_Madi_Shabneh 1 Dean_Barker 1\n").unwrap();
        assert_eq!(pairs.len(), 2);
        assert!(pairs[0].same);
        assert_eq!(pairs[1].second.name, "Dean_Barker");
        assert_eq!(
            pairs[0].second.path(Path::new("/lfw")),
            PathBuf::from("/lfw/Abel_Pacheco/Abel_Pacheco_0004.jpg")
        );
        assert!(parse_pairs("Abel_Pacheco x 4\n").is_err());
    }

    fn scored(values: &[(f32, bool)]) -> Vec<Scored> {
        values
            .iter()
            .map(|&(d, same)| Scored {
                distance: Some(d),
                same,
                label: Default::default(),
            })
            .collect()
    }

    #[test]
    fn best_threshold_separates_separable_scores() {
        let s = scored(&[(0.2, true), (0.3, true), (0.7, false), (0.9, false)]);
        let refs: Vec<&Scored> = s.iter().collect();
        let (threshold, accuracy) = best_threshold(&refs);
        assert_eq!(accuracy, 1.0);
        assert!((0.3..0.7).contains(&threshold));
        assert_eq!(accuracy_at(&refs, 0.25), 0.75);
    }

    #[test]
    fn missing_faces_count_as_errors() {
        let s = [
            Scored {
                distance: None,
                same: true,
                label: Default::default(),
            },
            Scored {
                distance: Some(0.1),
                same: true,
                label: Default::default(),
            },
        ];
        let refs: Vec<&Scored> = s.iter().collect();
        assert_eq!(accuracy_at(&refs, 0.5), 0.5);
    }

    #[test]
    fn folds_are_balanced_and_cover_everything() {
        let s = scored(
            &(0..40)
                .map(|i| (i as f32 / 40.0 + if i < 20 { 0.0 } else { 0.5 }, i < 20))
                .collect::<Vec<_>>(),
        );
        let accuracies = fold_accuracies(&s, 10);
        assert_eq!(accuracies.len(), 10);
        assert!(accuracies.iter().all(|&a| a == 1.0));
    }
}
