//! Siamese losses on a batch of embeddings, with hard-negative mining: contrastive
//! (pairs), triplet (batch-hard) and binary cross-entropy on a learned similarity; and
//! the prototypical loss, which asks every scan to pick its own class out of all the
//! batch's classes at once.
//!
//! Mining reads the distances once on the host, picks the pairs, and turns them into
//! constant masks; the loss itself is a differentiable sum over masked distances.

use candle_core::{Result, Tensor, Var};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    Contrastive,
    Triplet,
    Bce,
    /// Softmax over the batch's classes, each scan against every class's mean embedding
    /// (its own class's without itself); a writer's forgeries are a class of their own.
    Prototypical,
}

impl Loss {
    /// The margin each loss is used with (on distances between unit vectors, in [0, 2]).
    pub fn default_margin(self) -> f32 {
        match self {
            Loss::Contrastive => 1.0,
            Loss::Triplet => 0.3,
            Loss::Bce | Loss::Prototypical => 0.0,
        }
    }
}

/// Who is in the batch: each row's identity and whether it is a forgery of it.
#[derive(Debug, Clone, Copy)]
pub struct RowLabel {
    pub identity: usize,
    pub forgery: bool,
}

fn is_positive(a: RowLabel, b: RowLabel) -> bool {
    a.identity == b.identity && !a.forgery && !b.forgery
}

fn is_negative(a: RowLabel, b: RowLabel) -> bool {
    a.identity != b.identity || a.forgery != b.forgery
}

/// The learned scale and offset that turn a cosine into a logit for BCE.
pub struct PairHead {
    pub scale: Var,
    pub offset: Var,
}

pub fn batch_loss(
    embeddings: &Tensor,
    labels: &[RowLabel],
    loss: Loss,
    margin: f32,
    head: Option<&PairHead>,
    rng: &mut StdRng,
) -> Result<Tensor> {
    let n = labels.len();
    let device = embeddings.device();
    let cosine = embeddings.matmul(&embeddings.t()?)?;
    let squared = (1.0 - &cosine)?.affine(2.0, 0.0)?.clamp(1e-9, 4.0)?;
    let distance = squared.sqrt()?;
    let host: Vec<Vec<f32>> = distance.to_vec2()?;
    let mask = |cells: &[(usize, usize)]| -> Result<Tensor> {
        let mut values = vec![0f32; n * n];
        for &(i, j) in cells {
            values[i * n + j] = 1.0;
        }
        Tensor::from_vec(values, (n, n), device)
    };
    if loss == Loss::Prototypical {
        return prototypical(&cosine, labels);
    }
    let anchors: Vec<usize> = (0..n).filter(|&i| !labels[i].forgery).collect();
    let hardest_negative = |i: usize| {
        (0..n)
            .filter(|&j| j != i && is_negative(labels[i], labels[j]))
            .min_by(|&a, &b| host[i][a].total_cmp(&host[i][b]))
    };
    match loss {
        Loss::Triplet => {
            let mut positives = Vec::new();
            let mut negatives = Vec::new();
            for &i in &anchors {
                let positive = (0..n)
                    .filter(|&j| j != i && is_positive(labels[i], labels[j]))
                    .max_by(|&a, &b| host[i][a].total_cmp(&host[i][b]));
                if let (Some(p), Some(q)) = (positive, hardest_negative(i)) {
                    positives.push((i, p));
                    negatives.push((i, q));
                }
            }
            if positives.is_empty() {
                return Tensor::zeros((), candle_core::DType::F32, device);
            }
            let anchor_positive = (mask(&positives)? * &distance)?.sum(1)?;
            let anchor_negative = (mask(&negatives)? * &distance)?.sum(1)?;
            let row_used = mask(&positives)?.sum(1)?;
            let violation = ((anchor_positive - anchor_negative)? + f64::from(margin))?.relu()?;
            (violation * row_used)?.sum_all()? / positives.len() as f64
        }
        Loss::Prototypical => unreachable!("answered above"),
        Loss::Contrastive | Loss::Bce => {
            let positives: Vec<(usize, usize)> = (0..n)
                .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
                .filter(|&(i, j)| is_positive(labels[i], labels[j]))
                .collect();
            // Each anchor's hardest negative, plus a random one so easy regions are not
            // forgotten.
            let mut negatives = Vec::new();
            for &i in &anchors {
                if let Some(j) = hardest_negative(i) {
                    negatives.push((i, j));
                }
                let candidates: Vec<usize> = (0..n)
                    .filter(|&j| j != i && is_negative(labels[i], labels[j]))
                    .collect();
                if !candidates.is_empty() {
                    negatives.push((i, candidates[rng.random_range(0..candidates.len())]));
                }
            }
            if positives.is_empty() || negatives.is_empty() {
                return Tensor::zeros((), candle_core::DType::F32, device);
            }
            let positive_mask = mask(&positives)?;
            let negative_mask = mask(&negatives)?;
            let (positive_term, negative_term) = if loss == Loss::Contrastive {
                let pull = &squared;
                let push = (f64::from(margin) - &distance)?.relu()?.sqr()?;
                (pull.clone(), push)
            } else {
                let head = head.expect("BCE needs its pair head");
                let logits = cosine
                    .broadcast_mul(head.scale.as_tensor())?
                    .broadcast_add(head.offset.as_tensor())?;
                (softplus(&logits.neg()?)?, softplus(&logits)?)
            };
            let positive_loss =
                ((positive_mask * positive_term)?.sum_all()? / positives.len() as f64)?;
            let negative_loss =
                ((negative_mask * negative_term)?.sum_all()? / negatives.len() as f64)?;
            positive_loss + negative_loss
        }
    }
}

/// Cosines are scaled by this before the softmax: unit vectors' cosines span only
/// [-1, 1], too flat a range for a confident choice among dozens of classes.
const PROTOTYPE_SCALE: f64 = 16.0;

/// Mean cross-entropy of each scan choosing its own class, a class's similarity being
/// the scan's mean cosine with the class's other members. A scan alone in its class has no
/// prototype to find and only serves as another class's member.
fn prototypical(cosine: &Tensor, labels: &[RowLabel]) -> Result<Tensor> {
    let n = labels.len();
    let device = cosine.device();
    let mut classes: Vec<(usize, bool)> = labels.iter().map(|l| (l.identity, l.forgery)).collect();
    classes.sort_unstable();
    classes.dedup();
    let class_of: Vec<usize> = labels
        .iter()
        .map(|l| {
            classes
                .binary_search(&(l.identity, l.forgery))
                .expect("every label's class was listed")
        })
        .collect();
    let k = classes.len();
    let mut size = vec![0usize; k];
    for &c in &class_of {
        size[c] += 1;
    }
    let (mut membership, mut others) = (vec![0f32; n * k], vec![1f32; n * n]);
    let (mut mean_over, mut own) = (vec![0f32; n * k], vec![0f32; n * k]);
    let mut queries = 0usize;
    for i in 0..n {
        membership[i * k + class_of[i]] = 1.0;
        others[i * n + i] = 0.0;
        for c in 0..k {
            let members = size[c] - usize::from(c == class_of[i]);
            if members > 0 {
                mean_over[i * k + c] = 1.0 / members as f32;
            }
        }
        if size[class_of[i]] > 1 {
            own[i * k + class_of[i]] = 1.0;
            queries += 1;
        }
    }
    if queries == 0 || k < 2 {
        return Tensor::zeros((), candle_core::DType::F32, device);
    }
    let membership = Tensor::from_vec(membership, (n, k), device)?;
    let others = Tensor::from_vec(others, (n, n), device)?;
    let mean_over = Tensor::from_vec(mean_over, (n, k), device)?;
    let own = Tensor::from_vec(own, (n, k), device)?;
    let similarity = (cosine * others)?.matmul(&membership)? * mean_over;
    let log_probabilities =
        candle_nn::ops::log_softmax(&(similarity? * PROTOTYPE_SCALE)?, candle_core::D::Minus1)?;
    ((log_probabilities * own)?.sum_all()? / queries as f64)?.neg()
}

/// log(1 + e^x), stable for large |x|.
fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device};
    use rand::SeedableRng;

    fn labels(identities: &[usize], forgery: &[bool]) -> Vec<RowLabel> {
        identities
            .iter()
            .zip(forgery)
            .map(|(&identity, &forgery)| RowLabel { identity, forgery })
            .collect()
    }

    fn unit_rows(x: &Tensor) -> Result<Tensor> {
        x.broadcast_div(&x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)
    }

    /// Gradient descent on the prototypical loss gathers each class and parts a writer's
    /// forgeries from his genuine scans, even from random starting points; a scan alone in
    /// its class is no query but does not break the loss.
    #[test]
    fn the_prototypical_loss_gathers_classes_and_parts_forgeries() {
        let identities = [0, 0, 0, 1, 1, 1, 0, 0, 2];
        let forgery = [false, false, false, false, false, false, true, true, false];
        let labels = labels(&identities, &forgery);
        let mut rng = StdRng::seed_from_u64(7);
        let start: Vec<f32> = (0..labels.len() * 8)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let points = Var::from_vec(start, (labels.len(), 8), &Device::Cpu).unwrap();
        let loss_of = |points: &Var| {
            let embeddings = unit_rows(points.as_tensor()).unwrap();
            batch_loss(
                &embeddings,
                &labels,
                Loss::Prototypical,
                0.0,
                None,
                &mut rng.clone(),
            )
            .unwrap()
        };
        let first = loss_of(&points).to_scalar::<f32>().unwrap();
        for _ in 0..200 {
            let gradients = loss_of(&points).backward().unwrap();
            let step = (gradients.get(&points).unwrap() * 0.5).unwrap();
            points.set(&(points.as_tensor() - step).unwrap()).unwrap();
        }
        let last = loss_of(&points).to_scalar::<f32>().unwrap();
        assert!(first.is_finite() && last < first * 0.2, "{first} -> {last}");
        let embeddings = unit_rows(points.as_tensor()).unwrap();
        let cosine: Vec<Vec<f32>> = embeddings
            .matmul(&embeddings.t().unwrap())
            .unwrap()
            .to_vec2()
            .unwrap();
        // Each of the writer's genuine scans is nearer the others than any forgery of him.
        for i in 0..3 {
            let nearest_genuine = (0..3).filter(|&j| j != i).map(|j| cosine[i][j]);
            let nearest_forgery = (6..8).map(|j| cosine[i][j]);
            assert!(
                nearest_genuine.fold(f32::INFINITY, f32::min)
                    > nearest_forgery.fold(f32::NEG_INFINITY, f32::max),
                "{cosine:?}"
            );
        }
    }
}
