//! From two embeddings to a score and a decision, and the error rates of a threshold.
//!
//! The face network was trained so that the Euclidean distance between two embeddings of
//! one person is below about 0.6. Operators work with a similarity score in [0, 1]
//! instead: `score = 1 - distance / FACE_DISTANCE_AT_ZERO_SCORE`, so that higher is more
//! alike and thresholds read the same for every modality.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::types::{Bands, Modality};

/// Distance at which the score reaches 0 (twice dlib's 0.6 same-person distance, so the
/// classic threshold sits at a score of 0.5).
pub const FACE_DISTANCE_AT_ZERO_SCORE: f32 = 1.2;

/// Default face threshold as a score: 0.5, distance 0.6. The best threshold on all 2200
/// LFW DevTrain pairs was distance 0.599 (98.77%; `vouch eval pairs --pairs
/// pairsDevTrain.txt`), which is dlib's own 0.6.
pub const DEFAULT_FACE_THRESHOLD: f32 = 0.5;

/// The dot product of two slices of one length, summed in eight independent lanes so the
/// compiler keeps them in vector registers (SSE2 or NEON on any CPU, wider inside code
/// compiled for AVX2: `cpu::Compiled`, which needs it inlined).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_rest, b_rest) = (a_chunks.remainder(), b_chunks.remainder());
    for (x, y) in a_chunks.zip(b_chunks) {
        add_products(&mut lanes, x, y);
    }
    lanes_and_rest(lanes, a_rest, b_rest)
}

/// Four dot products, of `a[k]` with `b[k]`, over the length the shortest slice has: each
/// the bits `dot` gives its pair, their sums made side by side so that none waits on
/// another's additions (one after another, row by row, a correlation spent most of its
/// time waiting on them).
#[inline(always)]
pub fn four_dots(a: [&[f32]; 4], b: [&[f32]; 4]) -> [f32; 4] {
    let length = a.iter().chain(&b).map(|s| s.len()).min().unwrap_or(0);
    let whole = length / 8 * 8;
    let [a0, a1, a2, a3] = a.map(|s| s[..whole].chunks_exact(8));
    let [b0, b1, b2, b3] = b.map(|s| s[..whole].chunks_exact(8));
    let (mut l0, mut l1, mut l2, mut l3) = ([0f32; 8], [0f32; 8], [0f32; 8], [0f32; 8]);
    for (((p0, p1), p2), p3) in a0.zip(b0).zip(a1.zip(b1)).zip(a2.zip(b2)).zip(a3.zip(b3)) {
        add_products(&mut l0, p0.0, p0.1);
        add_products(&mut l1, p1.0, p1.1);
        add_products(&mut l2, p2.0, p2.1);
        add_products(&mut l3, p3.0, p3.1);
    }
    let rest = |k: usize, lanes| {
        lanes_and_rest_out_of_line(lanes, &a[k][whole..length], &b[k][whole..length])
    };
    [rest(0, l0), rest(1, l1), rest(2, l2), rest(3, l3)]
}

/// One chunk of eight products into the eight lanes.
#[inline(always)]
fn add_products(lanes: &mut [f32; 8], x: &[f32], y: &[f32]) {
    for lane in 0..8 {
        lanes[lane] += x[lane] * y[lane];
    }
}

/// The lanes summed in order, then the products of what is left after whole chunks.
#[inline(always)]
fn lanes_and_rest(lanes: [f32; 8], a_rest: &[f32], b_rest: &[f32]) -> f32 {
    let rest: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + rest
}

/// `lanes_and_rest` for `four_dots`, kept out of line: inlined there, the compiler summed
/// the four rows' lanes together, and so laid every row's sums out lane by lane and
/// shuffled them at each chunk of the loop before it. (The four summed side by side by
/// hand, out of line, were no faster.)
#[inline(never)]
fn lanes_and_rest_out_of_line(lanes: [f32; 8], a_rest: &[f32], b_rest: &[f32]) -> f32 {
    lanes_and_rest(lanes, a_rest, b_rest)
}

/// The Euclidean distance of two embeddings. Vectors of different lengths (another
/// model's template, a damaged row) are refused, never compared on what they share.
pub fn euclidean_distance(a: &[f32], b: &[f32]) -> Result<f32> {
    if a.len() != b.len() {
        return Err(Error::Invalid(format!(
            "cannot compare a vector of {} values with one of {}",
            a.len(),
            b.len()
        )));
    }
    Ok(distance_of_same_length(a, b))
}

/// The same, for slices cut from one checked layout (the blocks of a signature template),
/// whose lengths agree by construction.
pub(crate) fn distance_of_same_length(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

pub fn face_score(distance: f32) -> f32 {
    (1.0 - distance / FACE_DISTANCE_AT_ZERO_SCORE).clamp(0.0, 1.0)
}

pub fn face_distance_for_score(score: f32) -> f32 {
    (1.0 - score) * FACE_DISTANCE_AT_ZERO_SCORE
}

/// Faces: a band of +-0.05 score (+-0.06 distance) around the default threshold, where
/// LFW DevTrain's same and different pairs overlap most.
pub const FACE_BANDS: Bands = Bands {
    low: DEFAULT_FACE_THRESHOLD - 0.05,
    high: DEFAULT_FACE_THRESHOLD + 0.05,
};

/// Signatures (score = the fitted scorer's probability that the account holder signed),
/// from the scorer's own fitting writers (CEDAR 1-30, never the test writers 31-40): accept
/// from just above their skilled-forgery EER threshold with 12 references (0.466), reject
/// below it with 5 references (0.342); between them a second clerk looks. Command:
/// `vouch eval verify --manifest cedar-1-30.csv --refs 5 --refs 12` (see models/README.md).
pub const SIGNATURE_BANDS: Bands = Bands {
    low: 0.34,
    high: 0.47,
};

/// The bands a modality starts with, before an operator saves their own.
pub fn default_bands(modality: Modality) -> Bands {
    match modality {
        Modality::Face => FACE_BANDS,
        Modality::Signature => SIGNATURE_BANDS,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    pub distance: f32,
    pub score: f32,
    pub threshold: f32,
    pub same_person: bool,
}

pub fn compare_faces(a: &[f32], b: &[f32], threshold: f32) -> Result<Comparison> {
    let distance = euclidean_distance(a, b)?;
    let score = face_score(distance);
    Ok(Comparison {
        distance,
        score,
        threshold,
        same_person: score >= threshold,
    })
}

/// Equal error rate and the threshold where FAR and FRR cross (a score at or above the
/// threshold is accepted). Every distinct score is tried as the threshold, lowest first,
/// and the first with the smallest gap between FAR and FRR wins: `error_rates` at each, but
/// counted in one sweep over the sorted scores, since a validation set of a thousand
/// drawings has half a million impostor pairs and counting anew at each threshold took
/// most of a training epoch.
pub fn equal_error_rate(genuine: &[f32], impostor: &[f32]) -> (f64, f32) {
    if genuine.is_empty() || impostor.is_empty() {
        return (f64::NAN, f32::NAN);
    }
    let mut thresholds: Vec<f32> = genuine.iter().chain(impostor).copied().collect();
    thresholds.sort_by(f32::total_cmp);
    thresholds.dedup();
    // A NaN score is neither accepted nor rejected at any threshold, as in `error_rates`.
    let sorted = |scores: &[f32]| {
        let mut sorted: Vec<f32> = scores.iter().copied().filter(|s| !s.is_nan()).collect();
        sorted.sort_by(f32::total_cmp);
        sorted
    };
    let (genuine_sorted, impostor_sorted) = (sorted(genuine), sorted(impostor));
    let (mut genuine_below, mut impostor_below) = (0, 0);
    let mut best = (f64::INFINITY, 0.0, thresholds[0]);
    for &threshold in &thresholds {
        let (far, frr) = if threshold.is_nan() {
            (0.0, 0.0)
        } else {
            while genuine_sorted
                .get(genuine_below)
                .is_some_and(|&s| s < threshold)
            {
                genuine_below += 1;
            }
            while impostor_sorted
                .get(impostor_below)
                .is_some_and(|&s| s < threshold)
            {
                impostor_below += 1;
            }
            let accepted = impostor_sorted.len() - impostor_below;
            (
                accepted as f64 / impostor.len() as f64,
                genuine_below as f64 / genuine.len() as f64,
            )
        };
        let gap = (far - frr).abs();
        if gap < best.0 {
            best = (gap, (far + frr) / 2.0, threshold);
        }
    }
    (best.1, best.2)
}

/// (false accept rate, false reject rate) when scores at or above `threshold` accept.
pub fn error_rates(genuine: &[f32], impostor: &[f32], threshold: f32) -> (f64, f64) {
    let far = impostor.iter().filter(|&&s| s >= threshold).count() as f64 / impostor.len() as f64;
    let frr = genuine.iter().filter(|&&s| s < threshold).count() as f64 / genuine.len() as f64;
    (far, frr)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep gives what trying each threshold with `error_rates` gives, bit for bit:
    /// ties, scores of 0 and -0, infinities and NaNs included.
    #[test]
    fn the_sweep_finds_the_eer_that_every_threshold_tried_finds() {
        let by_definition = |genuine: &[f32], impostor: &[f32]| {
            let mut thresholds: Vec<f32> = genuine.iter().chain(impostor).copied().collect();
            thresholds.sort_by(f32::total_cmp);
            thresholds.dedup();
            let mut best = (f64::INFINITY, 0.0, thresholds[0]);
            for &threshold in &thresholds {
                let (far, frr) = error_rates(genuine, impostor, threshold);
                if (far - frr).abs() < best.0 {
                    best = ((far - frr).abs(), (far + frr) / 2.0, threshold);
                }
            }
            (best.1, best.2)
        };
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let specials = [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
        ];
        for trial in 0..300 {
            let mut draw = |count: u32, shift: f32| -> Vec<f32> {
                (0..1 + next() % count)
                    .map(|_| match next() % 20 {
                        0 if trial % 3 == 0 => specials[next() as usize % specials.len()],
                        // Coarse values, so that ties between the two sides are common.
                        _ => (next() % 16) as f32 / 8.0 - 1.0 + shift,
                    })
                    .collect()
            };
            let (genuine, impostor) = (draw(40, 0.5), draw(90, 0.0));
            let (eer, threshold) = equal_error_rate(&genuine, &impostor);
            let (expected_eer, expected_threshold) = by_definition(&genuine, &impostor);
            assert_eq!(eer.to_bits(), expected_eer.to_bits(), "trial {trial}");
            assert_eq!(
                threshold.to_bits(),
                expected_threshold.to_bits(),
                "trial {trial}"
            );
        }
    }

    #[test]
    fn four_dots_side_by_side_are_each_the_dot_of_its_pair() {
        // The definition: eight lanes over whole chunks of eight, summed in order, then
        // the products left over.
        let in_lanes = |a: &[f32], b: &[f32]| {
            let whole = a.len() / 8 * 8;
            let mut lanes = [0f32; 8];
            for i in 0..whole {
                lanes[i % 8] += a[i] * b[i];
            }
            let tail: f32 = (whole..a.len()).map(|i| a[i] * b[i]).sum();
            lanes.iter().sum::<f32>() + tail
        };
        let values = |seed: f32, length: usize| -> Vec<f32> {
            (0..length)
                .map(|i| ((i as f32 + seed) * 0.731).sin() * 1e3 / (1.0 + i as f32))
                .collect()
        };
        for length in 0..40 {
            let a: [Vec<f32>; 4] = [1.0, 2.0, 3.0, 4.0].map(|seed| values(seed, length));
            let b: [Vec<f32>; 4] = [5.0, 6.0, 7.0, 8.0].map(|seed| values(seed, length));
            let together = four_dots(
                [&a[0][..], &a[1][..], &a[2][..], &a[3][..]],
                [&b[0][..], &b[1][..], &b[2][..], &b[3][..]],
            );
            for k in 0..4 {
                let alone = in_lanes(&a[k], &b[k]);
                assert_eq!(together[k].to_bits(), alone.to_bits(), "{length} {k}");
                assert_eq!(dot(&a[k], &b[k]).to_bits(), alone.to_bits(), "{length}");
            }
        }
        let (short, long) = ([1.0; 9], [2.0; 10]);
        assert_eq!(
            four_dots([&short; 4], [&long; 4]),
            [18.0; 4],
            "the shorter length"
        );
    }

    #[test]
    fn score_is_monotone_and_bounded() {
        assert_eq!(face_score(0.0), 1.0);
        assert_eq!(face_score(5.0), 0.0);
        assert!((face_score(0.6) - 0.5).abs() < 1e-6);
        assert!(face_score(0.4) > face_score(0.5));
        assert!((face_distance_for_score(face_score(0.37)) - 0.37).abs() < 1e-6);
    }

    use crate::types::Decision;

    #[test]
    fn bands_split_scores_three_ways() {
        assert_eq!(FACE_BANDS.decide(0.9), Decision::Accept);
        assert_eq!(FACE_BANDS.decide(DEFAULT_FACE_THRESHOLD), Decision::Review);
        assert_eq!(FACE_BANDS.decide(0.1), Decision::Reject);
    }

    #[test]
    fn decision_follows_the_threshold() {
        let a = [0.0f32; 128];
        let mut b = [0.0f32; 128];
        b[0] = 0.3;
        assert!(
            compare_faces(&a, &b, DEFAULT_FACE_THRESHOLD)
                .unwrap()
                .same_person
        );
        b[0] = 0.9;
        assert!(
            !compare_faces(&a, &b, DEFAULT_FACE_THRESHOLD)
                .unwrap()
                .same_person
        );
        assert!(compare_faces(&a, &b[..64], DEFAULT_FACE_THRESHOLD).is_err());
        assert!(euclidean_distance(&a, &[]).is_err());
    }
}
