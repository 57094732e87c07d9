//! The verdict on a questioned signature weighs five comparisons with the writer's
//! references (the Siamese embedding, ink levels, stroke directions, stroke texture, grey-
//! level co-occurrence), each as the mean distance, the nearest distance and the mean
//! relative to how much the references differ among themselves (a writer who varies a lot
//! earns slack). A logistic regression, fitted on writers with skilled forgeries, turns the
//! fifteen numbers into the probability that the writer signed.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use super::descriptor::{Block, COOCCURRENCE};
use super::encoder::EMBEDDING_DIM;
use crate::error::{Error, Result};
use crate::matching::distance_of_same_length;

const BLOCKS: usize = 1 + Block::ALL.len();
/// Per block: mean distance, nearest distance, mean distance over the references' spread.
pub const FEATURES: usize = 3 * BLOCKS;
/// sklearn's `C`: the inverse strength of the L2 penalty on the weights. Chosen by
/// 6-fold cross-validation over the training writers (never the test writers).
const INVERSE_PENALTY: f64 = 0.1;
const NEWTON_STEPS: usize = 30;
/// The scorer's tensors are named with this prefix in the model file.
pub const FUSION_PREFIX: &str = "fusion.";
const TENSOR_NAMES: [&str; 7] = [
    "fusion.mean",
    "fusion.scale",
    "fusion.weight",
    "fusion.bias",
    "fusion.typical_spread",
    "fusion.cooccurrence_mean",
    "fusion.cooccurrence_scale",
];

/// The co-occurrence statistics differ in scale a hundredfold; each is standardised over
/// the fitting scans so that contrast alone does not decide the distance.
#[derive(Debug, Clone, PartialEq)]
struct CooccurrenceStandard {
    mean: Vec<f32>,
    scale: Vec<f32>,
}

/// A template as the scorer compares it: the embedding, and the descriptor with its
/// co-occurrence statistics standardised.
struct Prepared<'a> {
    embedding: &'a [f32],
    descriptor: Vec<f32>,
}

impl CooccurrenceStandard {
    fn fit(templates: &[&[f32]]) -> Self {
        let (mut mean, mut scale) = (Vec::new(), Vec::new());
        for i in cooccurrence_in_template() {
            let (m, spread) = mean_and_spread(templates.iter().map(|t| f64::from(t[i])));
            mean.push(m as f32);
            scale.push(spread.max(1e-6) as f32);
        }
        Self { mean, scale }
    }

    fn prepare<'a>(&self, template: &'a [f32]) -> Prepared<'a> {
        let mut descriptor = template[EMBEDDING_DIM..].to_vec();
        for ((value, mean), scale) in descriptor[Block::Cooccurrence.range()]
            .iter_mut()
            .zip(&self.mean)
            .zip(&self.scale)
        {
            *value = (*value - mean) / scale;
        }
        Prepared {
            embedding: &template[..EMBEDDING_DIM],
            descriptor,
        }
    }

    fn prepare_all<'a>(&self, templates: &[&'a [f32]]) -> Vec<Prepared<'a>> {
        templates.iter().map(|t| self.prepare(t)).collect()
    }
}

fn cooccurrence_in_template() -> std::ops::Range<usize> {
    let block = Block::Cooccurrence.range();
    EMBEDDING_DIM + block.start..EMBEDDING_DIM + block.end
}

/// Distance of two prepared templates in each block.
fn block_distances(a: &Prepared, b: &Prepared) -> [f32; BLOCKS] {
    let mut distances = [0f32; BLOCKS];
    distances[0] = distance_of_same_length(a.embedding, b.embedding);
    for (slot, block) in distances[1..].iter_mut().zip(Block::ALL) {
        *slot = block.distance(&a.descriptor, &b.descriptor);
    }
    distances
}

/// Mean distance between the references in each block; `None` for a single reference.
fn reference_spread(references: &[Prepared]) -> Option<[f32; BLOCKS]> {
    let mut sum = [0f32; BLOCKS];
    let mut pairs = 0;
    for (i, a) in references.iter().enumerate() {
        for b in &references[i + 1..] {
            for (s, d) in sum.iter_mut().zip(block_distances(a, b)) {
                *s += d;
            }
            pairs += 1;
        }
    }
    (pairs > 0).then(|| sum.map(|s| s / pairs as f32))
}

fn features(
    references: &[Prepared],
    questioned: &Prepared,
    spread: [f32; BLOCKS],
) -> [f32; FEATURES] {
    let mut mean = [0f32; BLOCKS];
    let mut nearest = [f32::INFINITY; BLOCKS];
    for reference in references {
        for (block, d) in block_distances(reference, questioned)
            .into_iter()
            .enumerate()
        {
            mean[block] += d / references.len() as f32;
            nearest[block] = nearest[block].min(d);
        }
    }
    let mut out = [0f32; FEATURES];
    for block in 0..BLOCKS {
        out[block] = mean[block];
        out[BLOCKS + block] = nearest[block];
        out[2 * BLOCKS + block] = mean[block] / spread[block].max(1e-6);
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScoreFusion {
    mean: Vec<f32>,
    scale: Vec<f32>,
    weight: Vec<f32>,
    bias: f32,
    /// The references' spread of a typical writer, standing in when only one is enrolled.
    typical_spread: [f32; BLOCKS],
    cooccurrence: CooccurrenceStandard,
}

/// One writer's templates for fitting: genuine in enrollment order, and forgeries.
pub struct WriterTemplates<'a> {
    pub genuine: Vec<&'a [f32]>,
    pub forgeries: Vec<&'a [f32]>,
}

impl WriterTemplates<'_> {
    /// Whether fitting can use this writer: genuine left over after enrolling
    /// `references`, and forgeries to tell apart.
    pub fn can_fit(&self, references: usize) -> bool {
        self.genuine.len() > references && !self.forgeries.is_empty()
    }
}

impl ScoreFusion {
    /// Probability in [0, 1] that the writer of `references` signed `questioned`.
    pub fn score(&self, references: &[&[f32]], questioned: &[f32]) -> f32 {
        if references.is_empty() {
            return 0.0;
        }
        let references = self.cooccurrence.prepare_all(references);
        let spread = reference_spread(&references).unwrap_or(self.typical_spread);
        let logit = features(&references, &self.cooccurrence.prepare(questioned), spread)
            .iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .zip(&self.weight)
            .map(|(((f, m), s), w)| (f - m) / s * w)
            .sum::<f32>()
            + self.bias;
        1.0 / (1.0 + (-logit).exp())
    }

    /// Fits on every writer with more than `references` genuine templates and at least one
    /// forgery: the first `references` genuine are enrolled, the other genuine are the
    /// positives and the forgeries the negatives.
    pub fn fit(writers: &[WriterTemplates], references: usize) -> Result<Self> {
        let usable: Vec<&WriterTemplates> =
            writers.iter().filter(|w| w.can_fit(references)).collect();
        if usable.len() < 2 || references < 2 {
            return Err(Error::Invalid(format!(
                "fitting the signature scorer needs at least 2 writers with more than {references} \
                 genuine scans and some skilled forgeries, and at least 2 references (found {} writers)",
                usable.len()
            )));
        }
        let cooccurrence = CooccurrenceStandard::fit(
            &usable
                .iter()
                .flat_map(|w| w.genuine.iter().chain(&w.forgeries).copied())
                .collect::<Vec<_>>(),
        );
        let prepared: Vec<(Vec<Prepared>, Vec<Prepared>)> = usable
            .iter()
            .map(|w| {
                (
                    cooccurrence.prepare_all(&w.genuine),
                    cooccurrence.prepare_all(&w.forgeries),
                )
            })
            .collect();
        let spreads: Vec<[f32; BLOCKS]> = prepared
            .iter()
            .map(|(genuine, _)| {
                reference_spread(&genuine[..references]).expect("two or more references")
            })
            .collect();
        let typical_spread = std::array::from_fn(|block| {
            spreads.iter().map(|s| s[block]).sum::<f32>() / spreads.len() as f32
        });
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for ((genuine, forgeries), spread) in prepared.iter().zip(&spreads) {
            let enrolled = &genuine[..references];
            for (questioned, label) in genuine[references..]
                .iter()
                .map(|q| (q, 1.0))
                .chain(forgeries.iter().map(|q| (q, 0.0)))
            {
                rows.push(features(enrolled, questioned, *spread).map(f64::from));
                labels.push(label);
            }
        }
        let (mean, scale) = standardisation(&rows);
        let standardised: Vec<[f64; FEATURES]> = rows
            .iter()
            .map(|r| std::array::from_fn(|j| (r[j] - mean[j]) / scale[j]))
            .collect();
        let (weight, bias) = logistic_regression(&standardised, &labels);
        Ok(Self {
            mean: mean.iter().map(|&v| v as f32).collect(),
            scale: scale.iter().map(|&v| v as f32).collect(),
            weight: weight.iter().map(|&v| v as f32).collect(),
            bias: bias as f32,
            typical_spread,
            cooccurrence,
        })
    }

    /// The fitted numbers as named tensors, stored beside the encoder's weights.
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let values: [Vec<f32>; 7] = [
            self.mean.clone(),
            self.scale.clone(),
            self.weight.clone(),
            vec![self.bias],
            self.typical_spread.to_vec(),
            self.cooccurrence.mean.clone(),
            self.cooccurrence.scale.clone(),
        ];
        TENSOR_NAMES
            .iter()
            .zip(values)
            .map(|(name, v)| {
                let length = v.len();
                Ok((name.to_string(), Tensor::from_vec(v, length, &Device::Cpu)?))
            })
            .collect()
    }

    /// The fitted scorer of a model file, if it has one.
    pub fn from_tensors(tensors: &HashMap<String, Tensor>) -> Result<Option<Self>> {
        if !TENSOR_NAMES.iter().any(|n| tensors.contains_key(*n)) {
            return Ok(None);
        }
        let read = |name: &str, length: usize| -> Result<Vec<f32>> {
            let values = tensors
                .get(name)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "the scorer has no {name} (a scorer from an older Vouch: fit it again \
                         with `vouch models fit-scorer`)"
                    ))
                })?
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            if values.len() != length || values.iter().any(|v| !v.is_finite()) {
                return Err(Error::Invalid(format!(
                    "{name} holds {} values, expected {length} finite ones",
                    values.len()
                )));
            }
            Ok(values)
        };
        let spread = read(TENSOR_NAMES[4], BLOCKS)?;
        Ok(Some(Self {
            mean: read(TENSOR_NAMES[0], FEATURES)?,
            scale: read(TENSOR_NAMES[1], FEATURES)?,
            weight: read(TENSOR_NAMES[2], FEATURES)?,
            bias: read(TENSOR_NAMES[3], 1)?[0],
            typical_spread: std::array::from_fn(|i| spread[i]),
            cooccurrence: CooccurrenceStandard {
                mean: read(TENSOR_NAMES[5], COOCCURRENCE)?,
                scale: read(TENSOR_NAMES[6], COOCCURRENCE)?,
            },
        }))
    }
}

fn standardisation(rows: &[[f64; FEATURES]]) -> ([f64; FEATURES], [f64; FEATURES]) {
    let columns: [(f64, f64); FEATURES] =
        std::array::from_fn(|j| mean_and_spread(rows.iter().map(|r| r[j])));
    (
        columns.map(|(mean, _)| mean),
        columns.map(|(_, spread)| spread.max(1e-9)),
    )
}

/// Mean and population standard deviation.
fn mean_and_spread(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = values.clone().count().max(1) as f64;
    let mean = values.clone().sum::<f64>() / n;
    let variance = values.map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, variance.sqrt())
}

/// L2-penalised logistic regression (the intercept unpenalised) by Newton's method: the
/// problem is small and convex, so a few exact steps beat tuning a step size.
fn logistic_regression(rows: &[[f64; FEATURES]], labels: &[f64]) -> ([f64; FEATURES], f64) {
    const N: usize = FEATURES + 1;
    let mut theta = [0f64; N];
    let penalty = 1.0 / INVERSE_PENALTY;
    for _ in 0..NEWTON_STEPS {
        let mut gradient = [0f64; N];
        let mut hessian = [[0f64; N]; N];
        for (row, &label) in rows.iter().zip(labels) {
            let x: [f64; N] = std::array::from_fn(|j| if j < FEATURES { row[j] } else { 1.0 });
            let logit: f64 = x.iter().zip(&theta).map(|(a, b)| a * b).sum();
            let p = 1.0 / (1.0 + (-logit).exp());
            let curvature = (p * (1.0 - p)).max(1e-12);
            for i in 0..N {
                gradient[i] += (p - label) * x[i];
                for j in 0..N {
                    hessian[i][j] += curvature * x[i] * x[j];
                }
            }
        }
        for i in 0..FEATURES {
            gradient[i] += penalty * theta[i];
            hessian[i][i] += penalty;
        }
        let step = solve(hessian, gradient);
        theta.iter_mut().zip(step).for_each(|(t, s)| *t -= s);
        if step.iter().map(|s| s.abs()).fold(0.0, f64::max) < 1e-10 {
            break;
        }
    }
    (std::array::from_fn(|j| theta[j]), theta[FEATURES])
}

/// Gaussian elimination with partial pivoting; the penalised Hessian is positive definite.
fn solve<const N: usize>(mut a: [[f64; N]; N], mut b: [f64; N]) -> [f64; N] {
    for column in 0..N {
        let pivot = (column..N)
            .max_by(|&i, &j| a[i][column].abs().total_cmp(&a[j][column].abs()))
            .expect("a non-empty range");
        a.swap(column, pivot);
        b.swap(column, pivot);
        for row in column + 1..N {
            let factor = a[row][column] / a[column][column];
            let pivot_row = a[column];
            for (value, pivot) in a[row][column..].iter_mut().zip(&pivot_row[column..]) {
                *value -= factor * pivot;
            }
            b[row] -= factor * b[column];
        }
    }
    let mut x = [0f64; N];
    for row in (0..N).rev() {
        let rest: f64 = (row + 1..N).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - rest) / a[row][row];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newton_solves_a_separable_problem_and_the_penalty_bounds_the_weights() {
        use rand::{Rng, SeedableRng};
        // Label 1 when the first feature is positive; the others are noise.
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let rows: Vec<[f64; FEATURES]> = (0..2000)
            .map(|_| std::array::from_fn(|_| rng.random_range(-1.0..1.0)))
            .collect();
        let labels: Vec<f64> = rows.iter().map(|r| f64::from(r[0] > 0.0)).collect();
        let (weight, _) = logistic_regression(&rows, &labels);
        assert!(weight[0] > 1.0, "{weight:?}");
        assert!(
            weight[1..].iter().all(|w| w.abs() < weight[0] / 3.0),
            "{weight:?}"
        );
        assert!(
            weight[0] < 100.0,
            "the penalty keeps a separable fit finite: {weight:?}"
        );
    }

    #[test]
    fn the_scorer_survives_its_own_tensors() {
        let fusion = ScoreFusion {
            mean: (0..FEATURES).map(|i| i as f32).collect(),
            scale: vec![2.0; FEATURES],
            weight: vec![-0.5; FEATURES],
            bias: 1.5,
            typical_spread: [0.3, 0.05, 0.8, 1.4, 2.0],
            cooccurrence: CooccurrenceStandard {
                mean: (0..COOCCURRENCE).map(|i| i as f32 / 10.0).collect(),
                scale: vec![0.5; COOCCURRENCE],
            },
        };
        let tensors: HashMap<String, Tensor> = fusion.tensors().unwrap().into_iter().collect();
        assert_eq!(ScoreFusion::from_tensors(&tensors).unwrap(), Some(fusion));
        assert_eq!(ScoreFusion::from_tensors(&HashMap::new()).unwrap(), None);
    }

    #[test]
    fn a_scorer_from_before_the_cooccurrence_block_is_refused_with_the_way_out() {
        let fusion = ScoreFusion {
            mean: vec![0.0; FEATURES],
            scale: vec![1.0; FEATURES],
            weight: vec![1.0; FEATURES],
            bias: 0.0,
            typical_spread: [1.0; BLOCKS],
            cooccurrence: CooccurrenceStandard {
                mean: vec![0.0; COOCCURRENCE],
                scale: vec![1.0; COOCCURRENCE],
            },
        };
        let older: HashMap<String, Tensor> = fusion
            .tensors()
            .unwrap()
            .into_iter()
            .filter(|(name, _)| !name.starts_with("fusion.cooccurrence"))
            .collect();
        let error = ScoreFusion::from_tensors(&older).unwrap_err().to_string();
        assert!(error.contains("fusion.cooccurrence_mean"), "{error}");
        assert!(error.contains("vouch models fit-scorer"), "{error}");
    }
}
