//! The figures ISO/IEC 19795-1 and NIST FRTE reports give beside an EER: FNMR at fixed
//! FMRs with their thresholds, comparison counts and 95% confidence intervals; the lowest
//! FMR a number of impostor comparisons can support; failure to enrol and to acquire; the
//! false alarms a gallery of N people would raise; DET curves on normal-deviate axes; and
//! the per-identity view of who is often rejected or often impersonated (Doddington's zoo).

use serde::{Deserialize, Serialize};

use super::verification::{error_rates, threshold_for_far};

/// The false match rates reports quote FNMR at.
pub const REPORTED_FMRS: [f64; 3] = [1e-2, 1e-3, 1e-4];

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// The 95% Wilson score interval of a rate of `k` in `n`: unlike the normal
/// approximation it stays inside [0, 1] and is honest at zero errors.
pub fn wilson_interval(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At the ends the bound is exactly 0 or 1; rounding would leave a hair off it.
    let low = if k == 0.0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let high = if k == n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    (low, high)
}

/// The lowest FMR that `impostors` comparisons can support with 95% confidence when
/// none of them falsely matched (the "rule of three": 3/n).
pub fn lowest_supported_fmr(impostors: usize) -> f64 {
    3.0 / impostors.max(1) as f64
}

/// The normal deviate of a rate: DET axes are drawn on it, so that normally distributed
/// scores give straight lines and 0.01% is as far from 0.1% as 0.1% is from 1%.
pub fn probit(rate: f64) -> f64 {
    let rate = rate.clamp(DET_FLOOR, 1.0 - DET_FLOOR);
    -std::f64::consts::SQRT_2 * puruspe::inverfc(2.0 * rate)
}

/// The smallest rate a DET plot shows (0.001%); a rate of zero is drawn there.
pub const DET_FLOOR: f64 = 1e-5;

/// (probit FMR, probit FNMR) at every distinct score used as the threshold: the DET curve
/// on normal-deviate axes. Points where either rate is zero are left out: a zero has no
/// place on these axes, and drawing it at the floor would claim a rate never measured.
pub fn det_probit(genuine: &[f32], impostor: &[f32]) -> Vec<[f64; 2]> {
    let mut thresholds: Vec<f32> = genuine.iter().chain(impostor).copied().collect();
    thresholds.sort_by(f32::total_cmp);
    thresholds.dedup();
    let mut curve: Vec<[f64; 2]> = thresholds
        .iter()
        .map(|&t| error_rates(genuine, impostor, t))
        .filter(|&(fmr, fnmr)| fmr > 0.0 && fnmr > 0.0)
        .map(|(fmr, fnmr)| [probit(fmr), probit(fnmr)])
        .collect();
    curve.dedup();
    curve
}

/// FNMR where the FMR is at most `target`, with everything a reader needs to trust it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FnmrAtFmr {
    pub target_fmr: f64,
    /// The lowest threshold of the workbench's grid that keeps FMR at or under the target.
    pub threshold: f32,
    pub false_matches: usize,
    pub impostors: usize,
    pub false_non_matches: usize,
    pub genuine: usize,
    pub fnmr: f64,
    /// 95% Wilson interval of the FNMR.
    pub fnmr_interval: (f64, f64),
    /// Whether the impostor count can support the target at all (3/n at or under it).
    pub supported: bool,
}

pub fn fnmr_at_fmr(genuine: &[f32], impostor: &[f32], target_fmr: f64) -> FnmrAtFmr {
    let threshold = threshold_for_far(impostor, target_fmr);
    let false_matches = impostor.iter().filter(|&&s| s >= threshold).count();
    let false_non_matches = genuine.iter().filter(|&&s| s < threshold).count();
    FnmrAtFmr {
        target_fmr,
        threshold,
        false_matches,
        impostors: impostor.len(),
        false_non_matches,
        genuine: genuine.len(),
        fnmr: false_non_matches as f64 / genuine.len().max(1) as f64,
        fnmr_interval: wilson_interval(false_non_matches, genuine.len()),
        supported: lowest_supported_fmr(impostor.len()) <= target_fmr,
    }
}

/// Failure to enrol and failure to acquire on an evaluation set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Acquisition {
    /// Samples presented (scans or photos).
    pub presented: usize,
    /// Of those, how many gave nothing to compare, by cause ("no ink", "no face", ...).
    pub failed: Vec<(String, usize)>,
    /// Identities with at least one genuine sample.
    pub identities: usize,
    /// Of those, how many could not be enrolled: fewer usable references than asked for.
    pub failed_to_enrol: usize,
}

impl Acquisition {
    /// Counts failures by cause.
    pub fn new(
        presented: usize,
        causes: impl IntoIterator<Item = String>,
        identities: usize,
        failed_to_enrol: usize,
    ) -> Self {
        let mut failed: Vec<(String, usize)> = Vec::new();
        for cause in causes {
            match failed.iter_mut().find(|(c, _)| *c == cause) {
                Some((_, count)) => *count += 1,
                None => failed.push((cause, 1)),
            }
        }
        failed.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Self {
            presented,
            failed,
            identities,
            failed_to_enrol,
        }
    }

    pub fn failed_to_acquire(&self) -> usize {
        self.failed.iter().map(|(_, n)| n).sum()
    }

    pub fn fta_rate(&self) -> f64 {
        self.failed_to_acquire() as f64 / self.presented.max(1) as f64
    }

    pub fn fte_rate(&self) -> f64 {
        self.failed_to_enrol as f64 / self.identities.max(1) as f64
    }
}

/// "FTA r% (k of n samples: causes). FTE r% (k of n identities could not be enrolled)."
impl std::fmt::Display for Acquisition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let causes: Vec<String> = self
            .failed
            .iter()
            .map(|(cause, n)| format!("{n} {cause}"))
            .collect();
        write!(
            f,
            "FTA {:.2}% ({} of {} samples gave nothing to compare{}).",
            100.0 * self.fta_rate(),
            self.failed_to_acquire(),
            self.presented,
            if causes.is_empty() {
                String::new()
            } else {
                format!(": {}", causes.join(", "))
            },
        )?;
        // Pairs of photos enrol nobody: FTE is only said where identities were enrolled.
        if self.identities > 0 {
            write!(
                f,
                " FTE {:.2}% ({} of {} identities could not be enrolled).",
                100.0 * self.fte_rate(),
                self.failed_to_enrol,
                self.identities
            )?;
        }
        Ok(())
    }
}

/// What a site's gallery and traffic make of an FMR.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SiteLoad {
    /// People a kiosk search compares against.
    pub enrolled: usize,
    /// Kiosk punches a day, averaged over the last weeks.
    pub searches_per_day: f64,
}

/// FPIR for one search of a gallery of `enrolled` people at a per-comparison `fmr`
/// (1 - (1 - FMR)^N, about N x FMR when small), and the wrong-person matches a day it
/// predicts at the site's traffic.
pub fn projected_false_alarms(site: SiteLoad, fmr: f64) -> (f64, f64) {
    let fpir = 1.0 - (1.0 - fmr).powf(site.enrolled as f64);
    (fpir, fpir * site.searches_per_day)
}

/// One identity's scores: its genuine attempts, and impostor attempts against its
/// references.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdentityScores {
    pub identity: String,
    pub genuine: Vec<f32>,
    pub impostor: Vec<f32>,
    /// The enrolled person these are, when the scores came from enrolled references:
    /// what the zoo's actions act on.
    #[serde(default)]
    pub person_id: Option<i64>,
}

/// One problem enrollee: how often, of how many attempts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZooEntry {
    pub identity: String,
    pub person_id: Option<i64>,
    pub errors: usize,
    pub attempts: usize,
    /// The accept threshold their attempts were counted at.
    pub threshold: f32,
}

impl ZooEntry {
    pub fn rate(&self) -> f64 {
        self.errors as f64 / self.attempts.max(1) as f64
    }
}

/// Doddington's zoo, each identity at its own accept threshold (everyone's, moved by
/// their offset): goats (genuine attempts often rejected) and lambs
/// (references that impostors often match), worst first, only those with an error.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Zoo {
    pub goats: Vec<ZooEntry>,
    pub lambs: Vec<ZooEntry>,
}

pub fn zoo(
    identities: &[IdentityScores],
    threshold_of: impl Fn(&IdentityScores) -> f32,
    worst: usize,
) -> Zoo {
    let rank = |count: &dyn Fn(&IdentityScores, f32) -> (usize, usize)| {
        let mut entries: Vec<ZooEntry> = identities
            .iter()
            .map(|scores| {
                let threshold = threshold_of(scores);
                let (errors, attempts) = count(scores, threshold);
                ZooEntry {
                    identity: scores.identity.clone(),
                    person_id: scores.person_id,
                    errors,
                    attempts,
                    threshold,
                }
            })
            .filter(|entry| entry.errors > 0)
            .collect();
        entries.sort_by(|a, b| {
            b.rate()
                .total_cmp(&a.rate())
                .then(b.errors.cmp(&a.errors))
                .then(a.identity.cmp(&b.identity))
        });
        entries.truncate(worst);
        entries
    };
    Zoo {
        goats: rank(&|s, threshold| {
            let rejected = s.genuine.iter().filter(|&&v| v < threshold).count();
            (rejected, s.genuine.len())
        }),
        lambs: rank(&|s, threshold| {
            let matched = s.impostor.iter().filter(|&&v| v >= threshold).count();
            (matched, s.impostor.len())
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_brackets_the_rate_and_stays_honest_at_zero() {
        let (low, high) = wilson_interval(10, 100);
        assert!(low < 0.1 && 0.1 < high);
        assert!((low - 0.0552).abs() < 1e-3 && (high - 0.1744).abs() < 1e-3);
        let (low, high) = wilson_interval(0, 100);
        assert_eq!(low, 0.0);
        // No errors in 100 still allows a rate of about 3.7%.
        assert!((0.03..0.04).contains(&high));
    }

    #[test]
    fn probit_is_the_normal_deviate() {
        assert!(probit(0.5).abs() < 1e-12);
        assert!((probit(0.025) + 1.959_964).abs() < 1e-5);
        assert!((probit(0.001) + 3.090_232).abs() < 1e-5);
        assert_eq!(probit(0.0), probit(DET_FLOOR));
    }

    #[test]
    fn fnmr_at_fmr_keeps_its_target_and_says_when_too_few_impostors() {
        let genuine: Vec<f32> = (0..100).map(|i| 0.5 + i as f32 / 250.0).collect();
        let impostor: Vec<f32> = (0..1000).map(|i| i as f32 / 1700.0).collect();
        let at = fnmr_at_fmr(&genuine, &impostor, 1e-2);
        assert!(at.false_matches as f64 / at.impostors as f64 <= 1e-2);
        assert!(at.supported);
        assert!(at.fnmr_interval.0 <= at.fnmr && at.fnmr <= at.fnmr_interval.1);
        // 1000 impostors cannot show an FMR of 1e-4.
        assert!(!fnmr_at_fmr(&genuine, &impostor, 1e-4).supported);
        assert_eq!(lowest_supported_fmr(1000), 0.003);
    }

    #[test]
    fn the_zoo_names_who_is_rejected_and_who_is_impersonated() {
        let person = |identity: &str, genuine: &[f32], impostor: &[f32]| IdentityScores {
            identity: identity.into(),
            genuine: genuine.to_vec(),
            impostor: impostor.to_vec(),
            person_id: None,
        };
        let people = [
            person("sheep", &[0.9, 0.8], &[0.1, 0.2]),
            person("goat", &[0.3, 0.9], &[0.1]),
            person("lamb", &[0.9], &[0.7, 0.2, 0.1, 0.1]),
        ];
        let zoo = zoo(&people, |_| 0.5, 5);
        assert_eq!(zoo.goats.len(), 1);
        assert_eq!(
            (zoo.goats[0].identity.as_str(), zoo.goats[0].errors),
            ("goat", 1)
        );
        assert_eq!(zoo.lambs.len(), 1);
        assert_eq!(zoo.lambs[0].identity, "lamb");
        assert_eq!(zoo.lambs[0].rate(), 0.25);
        // A stricter threshold of their own takes the lamb out of the zoo.
        let offset = |s: &IdentityScores| if s.identity == "lamb" { 0.75 } else { 0.5 };
        assert!(super::zoo(&people, offset, 5).lambs.is_empty());
    }

    #[test]
    fn a_bigger_gallery_raises_more_false_alarms() {
        let small = SiteLoad {
            enrolled: 10,
            searches_per_day: 100.0,
        };
        let (fpir, per_day) = projected_false_alarms(small, 1e-3);
        assert!((fpir - 0.00995).abs() < 1e-4);
        assert!((per_day - 0.995).abs() < 1e-2);
        let big = SiteLoad {
            enrolled: 1000,
            ..small
        };
        assert!(projected_false_alarms(big, 1e-3).0 > 0.6);
    }
}
