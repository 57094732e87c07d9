//! Siamese losses on a batch of embeddings, with hard-negative mining: contrastive
//! (pairs), triplet (batch-hard) and binary cross-entropy on a learned similarity.
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
}

impl Loss {
    /// The margin each loss is used with (on distances between unit vectors, in [0, 2]).
    pub fn default_margin(self) -> f32 {
        match self {
            Loss::Contrastive => 1.0,
            Loss::Triplet => 0.3,
            Loss::Bce => 0.0,
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

/// log(1 + e^x), stable for large |x|.
fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}
