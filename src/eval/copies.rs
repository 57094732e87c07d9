//! How the copy check (`signature::superimpose`) does on labelled scans, measured on the
//! canvases the desk lays on each other: how often two signings of one hand, or a forgery
//! and the hand it imitates, lie on each other closely enough to be taken for a copy (a
//! false flag), and how often copies of a reference, made as a forger would make them, are
//! caught, or would be paid unseen. The figures of models/README's "A copy of a reference"
//! come from here.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use image::GrayImage;
use rayon::prelude::*;
use serde::Serialize;

use super::verification::{Unusable, UnusableScan, path_seed};
use crate::dataset::{Kind, LabelledScan};
use crate::error::{Error, Result};
use crate::signature::SignatureModel;
use crate::signature::preprocess::Normalised;
use crate::signature::reference::shown_from_ink;
use crate::signature::superimpose::{COPY_OVERLAP, overlaps};
use crate::signature::variation::{Variation, apply};

/// What was done to a reference's image before it was presented as a new signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyGroup {
    /// Printed, scanned or saved again, on another scanner, pen or paper, or laid crooked:
    /// what the check was made for (its rule asked 95% of these).
    Rescanned,
    /// Slanted to pass for a fresh signing.
    Slanted,
    /// Turned and slanted together: a limit of the check, which tries one or the other.
    TurnedAndSlanted,
    /// Strokes thinned by a pixel: a limit of the check.
    Thinned,
}

impl std::fmt::Display for CopyGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rescanned => "rescanned",
            Self::Slanted => "slanted",
            Self::TurnedAndSlanted => "turned and slanted",
            Self::Thinned => "thinned",
        })
    }
}

/// One way of copying a reference: its variations, applied to the reference's scan in order.
#[derive(Debug, Clone, Copy)]
pub struct CopyRecipe {
    pub group: CopyGroup,
    pub steps: &'static [Variation],
}

impl CopyRecipe {
    pub fn label(&self) -> String {
        let steps: Vec<String> = self.steps.iter().map(ToString::to_string).collect();
        steps.join(", ")
    }
}

/// Every copy the check has been measured on since stop 66, in models/README's order: the
/// fifteen rescans its rule was written for, the slants and the thinned strokes it left as
/// limits, and the eight turned-and-slanted copies of stop 72.
pub const COPY_RECIPES: [CopyRecipe; 27] = {
    use CopyGroup::{Rescanned, Slanted, Thinned, TurnedAndSlanted};
    use Variation::{GreyLevels, InkDarkness, Jpeg, Paper, Rotation, Scale, Slant, StrokeWidth};
    const fn recipe(group: CopyGroup, steps: &'static [Variation]) -> CopyRecipe {
        CopyRecipe { group, steps }
    }
    [
        recipe(Rescanned, &[GreyLevels(16)]),
        recipe(Rescanned, &[GreyLevels(4)]),
        recipe(Rescanned, &[Jpeg(40)]),
        recipe(Rescanned, &[InkDarkness(0.6)]),
        recipe(Rescanned, &[InkDarkness(1.4)]),
        recipe(
            Rescanned,
            &[Paper {
                level: 215,
                grain: 6,
            }],
        ),
        recipe(Rescanned, &[Scale(0.5)]),
        recipe(Rescanned, &[Scale(2.0)]),
        recipe(Rescanned, &[StrokeWidth(1)]),
        recipe(Rescanned, &[Rotation(1.0)]),
        recipe(Rescanned, &[Rotation(3.0)]),
        recipe(Rescanned, &[Rotation(5.0)]),
        recipe(Rescanned, &[Rotation(-2.0)]),
        recipe(Rescanned, &[Rotation(-4.0)]),
        recipe(Rescanned, &[Rotation(-5.0)]),
        recipe(Slanted, &[Slant(0.05)]),
        recipe(Slanted, &[Slant(-0.08)]),
        recipe(Slanted, &[Slant(0.15)]),
        recipe(Thinned, &[StrokeWidth(-1)]),
        recipe(TurnedAndSlanted, &[Rotation(3.0), Slant(0.1)]),
        recipe(TurnedAndSlanted, &[Rotation(-2.0), Slant(-0.05)]),
        recipe(TurnedAndSlanted, &[Rotation(4.5), Slant(-0.125)]),
        recipe(TurnedAndSlanted, &[Rotation(-2.5), Slant(0.075)]),
        recipe(TurnedAndSlanted, &[Rotation(1.5), Slant(0.125)]),
        recipe(TurnedAndSlanted, &[Rotation(-3.5), Slant(-0.09)]),
        recipe(TurnedAndSlanted, &[Rotation(5.0), Slant(0.05)]),
        recipe(TurnedAndSlanted, &[Rotation(-1.0), Slant(0.15)]),
    ]
};

/// What to measure: the copies are of each identity's first `copied` genuine scans, each
/// laid on its first `references` genuine scans (the source among them), as the desk lays a
/// questioned scan on the account's references.
#[derive(Debug, Clone)]
pub struct CopyCheckPlan<'r> {
    pub references: usize,
    pub copied: usize,
    pub recipes: &'r [CopyRecipe],
    /// The scorer's accept band: a copy scored at or above it and not caught is paid.
    pub accept_from: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct CopyCheckReport {
    pub model: String,
    /// The overlap at or above which the desk takes a scan for a copy.
    pub threshold: f32,
    pub accept_from: f32,
    pub identities: usize,
    pub references: usize,
    pub copied: usize,
    /// Scans that could not be read or show no ink, with their error; left out of
    /// everything below.
    pub unusable: Unusable,
    /// Each genuine scan laid on every earlier genuine scan of its identity.
    pub genuine_pairs: PairOverlaps,
    /// Each skilled forgery laid on every genuine scan of the identity it imitates.
    pub skilled_pairs: PairOverlaps,
    /// Identities with fewer usable genuine scans than `references`: none of theirs is copied.
    pub too_few_references: Vec<String>,
    pub copies: Vec<CopyCount>,
    pub groups: Vec<GroupCount>,
}

/// Pairs of signings laid on each other: none is a copy, so every flag is a false one.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PairOverlaps {
    pub pairs: usize,
    pub flagged: usize,
    /// The pair that came closest to a copy, for anyone to look at.
    pub highest: Option<ClosestPair>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClosestPair {
    pub overlap: f32,
    pub questioned: PathBuf,
    pub reference: PathBuf,
}

impl PairOverlaps {
    fn add(&mut self, questioned: &Path, references: &[&Path], overlaps: &[f32]) {
        self.pairs += overlaps.len();
        self.flagged += overlaps.iter().filter(|&&o| o >= COPY_OVERLAP).count();
        for (reference, &overlap) in references.iter().zip(overlaps) {
            if self.highest.as_ref().is_none_or(|h| overlap > h.overlap) {
                self.highest = Some(ClosestPair {
                    overlap,
                    questioned: questioned.to_path_buf(),
                    reference: reference.to_path_buf(),
                });
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CopyCount {
    pub copy: String,
    pub group: CopyGroup,
    pub made: usize,
    /// Copies the desk refuses to check, as it refuses any scan it cannot read: never paid,
    /// never caught.
    pub refused: usize,
    pub caught: usize,
    /// Scored at or above the accept band and not caught: a copy the desk would pay.
    pub paid_unseen: usize,
    /// The lowest overlap of any of these copies with the reference set (the check's margin).
    pub lowest_overlap: Option<f32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupCount {
    pub group: CopyGroup,
    pub made: usize,
    pub refused: usize,
    pub caught: usize,
    pub paid_unseen: usize,
}

/// One copy laid on its references and scored against them, or refused as the desk refuses
/// a scan it cannot read (a thinned faint signature may keep no ink).
struct CopyOutcome {
    recipe: usize,
    checked: Option<Checked>,
}

struct Checked {
    overlap: f32,
    score: f32,
}

/// A usable scan as the desk has it: the canvas it lays on references when questioned, and
/// the canvas it is laid on once enrolled.
struct Prepared<'s> {
    scan: &'s LabelledScan,
    normalised: Normalised,
    as_reference: GrayImage,
}

/// Measures the copy check on `scans` (`dataset::load`'s), one identity at a time,
/// reporting `(identities done, identities)`; stops with `Error::Cancelled` when `cancel`
/// is set.
pub fn evaluate_copy_check(
    model: &SignatureModel,
    scans: &[LabelledScan],
    plan: &CopyCheckPlan<'_>,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<CopyCheckReport> {
    if plan.references == 0 || plan.copied == 0 || plan.copied > plan.references {
        return Err(Error::Invalid(format!(
            "copies of {} references laid on {}: each copy is of one of the references, \
             so at least one is copied and no more than are laid on",
            plan.copied, plan.references
        )));
    }
    let identities = crate::dataset::identities(scans);
    let mut report = CopyCheckReport {
        model: model.model_id(),
        threshold: COPY_OVERLAP,
        accept_from: plan.accept_from,
        identities: identities.len(),
        references: plan.references,
        copied: plan.copied,
        unusable: Vec::new(),
        genuine_pairs: PairOverlaps::default(),
        skilled_pairs: PairOverlaps::default(),
        too_few_references: Vec::new(),
        copies: Vec::new(),
        groups: Vec::new(),
    };
    let mut outcomes = Vec::new();
    for (done, identity) in identities.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        progress(done, identities.len());
        let of_identity: Vec<&LabelledScan> =
            scans.iter().filter(|s| &s.identity == identity).collect();
        let (genuine, skilled) = prepare(model, &of_identity, &mut report.unusable);
        lay_pairs(&genuine, &skilled, &mut report);
        if genuine.len() < plan.references {
            report.too_few_references.push(identity.clone());
            continue;
        }
        outcomes.extend(copies_of(model, &genuine[..plan.references], plan)?);
    }
    progress(identities.len(), identities.len());
    report.copies = count_copies(plan, &outcomes);
    report.groups = count_groups(&report.copies);
    Ok(report)
}

/// The identity's usable genuine scans and skilled forgeries, in manifest order; the others
/// join `unusable` with their error.
fn prepare<'s>(
    model: &SignatureModel,
    scans: &[&'s LabelledScan],
    unusable: &mut Unusable,
) -> (Vec<Prepared<'s>>, Vec<Prepared<'s>>) {
    let normalised: Vec<Result<Normalised>> = scans
        .par_iter()
        .map(|scan| {
            let image = crate::imageio::load(&scan.path)?;
            model.normalise(&image, &scan.path.display().to_string())
        })
        .collect();
    let (mut genuine, mut skilled) = (Vec::new(), Vec::new());
    for (scan, normalised) in scans.iter().zip(normalised) {
        match normalised {
            Ok(normalised) => {
                let prepared = Prepared {
                    scan,
                    as_reference: shown_from_ink(&normalised.ink, model.canvas),
                    normalised,
                };
                match scan.kind {
                    Kind::Genuine => genuine.push(prepared),
                    Kind::Forgery => skilled.push(prepared),
                }
            }
            Err(error) => unusable.push(UnusableScan {
                path: scan.path.clone(),
                cause: error.acquisition_cause(),
                error: error.to_string(),
            }),
        }
    }
    (genuine, skilled)
}

/// Each genuine scan on the genuine scans before it, each forgery on every genuine scan.
fn lay_pairs(genuine: &[Prepared<'_>], skilled: &[Prepared<'_>], report: &mut CopyCheckReport) {
    let laid: Vec<GrayImage> = genuine.iter().map(|g| g.as_reference.clone()).collect();
    let paths: Vec<&Path> = genuine.iter().map(|g| g.scan.path.as_path()).collect();
    for (index, questioned) in genuine.iter().enumerate().skip(1) {
        let found = overlaps(&questioned.normalised.canvas, &laid[..index]);
        report
            .genuine_pairs
            .add(&questioned.scan.path, &paths[..index], &found);
    }
    if laid.is_empty() {
        return;
    }
    for forgery in skilled {
        let found = overlaps(&forgery.normalised.canvas, &laid);
        report.skilled_pairs.add(&forgery.scan.path, &paths, &found);
    }
}

/// Every recipe's copy of each of the first `plan.copied` references, laid on all of them
/// and scored against them as the desk would.
fn copies_of(
    model: &SignatureModel,
    references: &[Prepared<'_>],
    plan: &CopyCheckPlan<'_>,
) -> Result<Vec<CopyOutcome>> {
    let inputs: Vec<_> = references
        .iter()
        .map(|r| r.normalised.template_input())
        .collect();
    let templates = model.templates(&inputs)?;
    let templates: Vec<&[f32]> = templates.iter().map(Vec::as_slice).collect();
    let laid: Vec<GrayImage> = references.iter().map(|r| r.as_reference.clone()).collect();
    let sources: Vec<(&Path, GrayImage)> = references[..plan.copied]
        .iter()
        .map(|r| {
            Ok((
                r.scan.path.as_path(),
                crate::imageio::load(&r.scan.path)?.into_luma8(),
            ))
        })
        .collect::<Result<_>>()?;
    let made: Vec<(usize, &Path, &GrayImage)> = sources
        .iter()
        .flat_map(|(path, scan)| (0..plan.recipes.len()).map(move |recipe| (recipe, *path, scan)))
        .collect();
    made.into_par_iter()
        .map(|(recipe, path, scan)| {
            let seed = path_seed(path);
            let copy = plan.recipes[recipe]
                .steps
                .iter()
                .try_fold(scan.clone(), |copy, &step| apply(&copy, step, seed))?;
            let source = format!(
                "{} copied ({})",
                path.display(),
                plan.recipes[recipe].label()
            );
            let Ok(normalised) = model.normalise(&image::DynamicImage::ImageLuma8(copy), &source)
            else {
                return Ok(CopyOutcome {
                    recipe,
                    checked: None,
                });
            };
            let overlap = overlaps(&normalised.canvas, &laid)
                .into_iter()
                .fold(f32::NEG_INFINITY, f32::max);
            let template = model.templates(&[normalised.template_input()])?.remove(0);
            let score = model.score(&templates, &template)?;
            Ok(CopyOutcome {
                recipe,
                checked: Some(Checked { overlap, score }),
            })
        })
        .collect()
}

fn count_copies(plan: &CopyCheckPlan<'_>, outcomes: &[CopyOutcome]) -> Vec<CopyCount> {
    plan.recipes
        .iter()
        .enumerate()
        .map(|(index, recipe)| {
            let made: Vec<&CopyOutcome> = outcomes.iter().filter(|o| o.recipe == index).collect();
            let checked: Vec<&Checked> = made.iter().filter_map(|o| o.checked.as_ref()).collect();
            let caught = |c: &&&Checked| c.overlap >= COPY_OVERLAP;
            CopyCount {
                copy: recipe.label(),
                group: recipe.group,
                made: made.len(),
                refused: made.len() - checked.len(),
                caught: checked.iter().filter(caught).count(),
                paid_unseen: checked
                    .iter()
                    .filter(|c| !caught(c) && c.score >= plan.accept_from)
                    .count(),
                lowest_overlap: checked.iter().map(|c| c.overlap).reduce(f32::min),
            }
        })
        .collect()
}

fn count_groups(copies: &[CopyCount]) -> Vec<GroupCount> {
    let mut groups: Vec<GroupCount> = Vec::new();
    for count in copies {
        let at = match groups.iter().position(|g| g.group == count.group) {
            Some(at) => at,
            None => {
                groups.push(GroupCount {
                    group: count.group,
                    made: 0,
                    refused: 0,
                    caught: 0,
                    paid_unseen: 0,
                });
                groups.len() - 1
            }
        };
        let group = &mut groups[at];
        group.made += count.made;
        group.refused += count.refused;
        group.caught += count.caught;
        group.paid_unseen += count.paid_unseen;
    }
    groups
}
