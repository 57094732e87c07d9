//! 1:N search over every enrolled template of one model, held in memory as one row-major
//! matrix (a person's templates side by side) and scanned on all cores: squared distances
//! come from dot products, each person keeps their nearest template, and only the top k
//! are sorted.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::face::TEMPLATE_SHAPE;
use crate::face::recognition::EMBEDDING_DIM;
use crate::matching::{dot, face_score};
use crate::store::{GalleryChange, Store, StoreError, StoredTemplate};
use crate::types::{Bands, Modality};

/// People per parallel task: large enough to amortise scheduling, small enough to balance.
const PEOPLE_PER_TASK: usize = 2048;

pub struct Gallery {
    dim: usize,
    /// `rows x dim`, row-major.
    matrix: Vec<f32>,
    squared_norms: Vec<f32>,
    /// Each person's rows, in enrollment order.
    people: Vec<(i64, Range<usize>)>,
    /// The highest template id this gallery holds: an enrollment checks the templates
    /// enrolled after it (by another kiosk or desk) inside its transaction.
    pub checked_up_to: i64,
    /// Kept by a kiosk on a shared server (`keep_roster`), followed with the gallery.
    roster: Option<Roster>,
}

/// Whom a gallery's person is, as a kiosk names them.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    pub name: String,
    pub external_id: String,
}

/// What a kiosk needs to decide about a face and punch it while the site's server cannot
/// be reached: every enrolled face's name, and the site's rules, as they were when the
/// server last said. Online the kiosk reads the server itself; the roster only stands in
/// when it cannot.
#[derive(Debug, Clone)]
pub struct Roster {
    people: HashMap<i64, Known>,
    rules: Rules,
}

/// The face bands, each person's offset and the repeat window.
#[derive(Debug, Clone)]
struct Rules {
    bands: Bands,
    offsets: BTreeMap<i64, f32>,
    repeat_window: chrono::Duration,
}

impl Rules {
    fn read(store: &Store) -> Result<Self> {
        Ok(Self {
            bands: store.bands(Modality::Face)?,
            offsets: store.person_offsets()?,
            repeat_window: store.repeat_window()?,
        })
    }
}

impl Roster {
    pub fn load(store: &Store) -> Result<Self> {
        let people = store
            .people(Some(Modality::Face))?
            .into_iter()
            .map(|person| {
                let known = Known {
                    name: person.name,
                    external_id: person.external_id,
                };
                (person.id, known)
            })
            .collect();
        Ok(Self {
            people,
            rules: Rules::read(store)?,
        })
    }

    /// Reads one person again: their name and offset, or their absence.
    fn read_person(&mut self, store: &Store, person_id: i64) -> Result<()> {
        match store.person(person_id) {
            Ok(person) if person.modality == Modality::Face => {
                let known = Known {
                    name: person.name,
                    external_id: person.external_id,
                };
                self.people.insert(person_id, known);
                let offset = store.person_offset(person_id)?;
                self.rules.offsets.insert(person_id, offset);
            }
            Ok(_) | Err(StoreError::UnknownPerson(_)) => {
                self.people.remove(&person_id);
                self.rules.offsets.remove(&person_id);
            }
            Err(error) => return Err(error.into()),
        }
        Ok(())
    }

    pub fn person(&self, person_id: i64) -> Option<&Known> {
        self.people.get(&person_id)
    }

    /// The bands that decide for one person, as `Store::bands_for` reads them.
    pub fn bands_for(&self, person_id: i64) -> Bands {
        let offset = self.rules.offsets.get(&person_id).copied();
        self.rules.bands.shifted(offset.unwrap_or(0.0))
    }

    pub fn repeat_window(&self) -> chrono::Duration {
        self.rules.repeat_window
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Candidate {
    pub person_id: i64,
    pub distance: f32,
    pub score: f32,
}

impl Gallery {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            matrix: Vec::new(),
            squared_norms: Vec::new(),
            people: Vec::new(),
            checked_up_to: 0,
            roster: None,
        }
    }

    pub fn from_templates(dim: usize, templates: &[StoredTemplate]) -> Result<Self> {
        let mut sorted: Vec<&StoredTemplate> = templates.iter().collect();
        sorted.sort_by_key(|t| (t.person_id, t.template_id));
        let mut gallery = Self::new(dim);
        for group in sorted.chunk_by(|a, b| a.person_id == b.person_id) {
            gallery.add_person(
                group[0].person_id,
                group.iter().map(|t| t.embedding.as_slice()),
            )?;
        }
        gallery.checked_up_to = templates.iter().map(|t| t.template_id).max().unwrap_or(0);
        Ok(gallery)
    }

    /// Every enrolled face template made by `model_id`, each checked on the way in.
    pub fn of_faces(store: &Store, model_id: &str) -> Result<Self> {
        let templates = store.templates(Modality::Face, model_id, &TEMPLATE_SHAPE)?;
        let mut gallery = Self::from_templates(EMBEDDING_DIM, &templates)?;
        gallery.checked_up_to = gallery.checked_up_to.max(store.last_template_id()?);
        Ok(gallery)
    }

    /// Keeps a roster from now on, for when the server cannot be reached.
    pub fn keep_roster(&mut self, store: &Store) -> Result<()> {
        self.roster = Some(Roster::load(store)?);
        Ok(())
    }

    pub fn roster(&self) -> Option<&Roster> {
        self.roster.as_ref()
    }

    /// Adds one person with all their templates (an enrollment); an embedding of another
    /// size is refused.
    pub fn add_person<'a>(
        &mut self,
        person_id: i64,
        embeddings: impl IntoIterator<Item = &'a [f32]>,
    ) -> Result<()> {
        let embeddings: Vec<&[f32]> = embeddings.into_iter().collect();
        if let Some(wrong) = embeddings.iter().find(|e| e.len() != self.dim) {
            return Err(self.wrong_size(wrong.len()));
        }
        let start = self.squared_norms.len();
        for embedding in embeddings {
            self.matrix.extend_from_slice(embedding);
            self.squared_norms.push(dot(embedding, embedding));
        }
        self.people
            .push((person_id, start..self.squared_norms.len()));
        Ok(())
    }

    fn wrong_size(&self, len: usize) -> Error {
        Error::Invalid(format!(
            "an embedding of {len} values cannot be searched in a gallery of {}",
            self.dim
        ))
    }

    /// Takes a person out: they are never a candidate again. Their rows stay in the
    /// matrix until the rows no one owns outnumber the rest, then it is rebuilt.
    pub fn remove_person(&mut self, person_id: i64) -> bool {
        let Some(at) = self.people.iter().position(|(id, _)| *id == person_id) else {
            return false;
        };
        self.people.swap_remove(at);
        let live: usize = self.people.iter().map(|(_, rows)| rows.len()).sum();
        if self.squared_norms.len() - live > live.max(1024) {
            self.compact();
        }
        true
    }

    fn compact(&mut self) {
        let mut matrix = Vec::new();
        let mut squared_norms = Vec::new();
        for (_, rows) in &mut self.people {
            let start = squared_norms.len();
            matrix.extend_from_slice(&self.matrix[rows.start * self.dim..rows.end * self.dim]);
            squared_norms.extend_from_slice(&self.squared_norms[rows.clone()]);
            *rows = start..squared_norms.len();
        }
        self.matrix = matrix;
        self.squared_norms = squared_norms;
    }

    /// Applies what another kiosk or desk changed (`GalleryFeed`): the people named are
    /// read again from `store` (a deleted one is gone), or the whole gallery is.
    /// `checked_up_to` stays: an enrollment's duplicate check then looks again at the
    /// templates that arrived this way, which costs a little and misses nothing.
    pub fn follow(&mut self, store: &Store, model_id: &str, change: &GalleryChange) -> Result<()> {
        match change {
            GalleryChange::Everything => {
                let mut reloaded = Self::of_faces(store, model_id)?;
                if self.roster.is_some() {
                    reloaded.keep_roster(store)?;
                }
                *self = reloaded;
            }
            GalleryChange::Rules => {
                if let Some(roster) = &mut self.roster {
                    roster.rules = Rules::read(store)?;
                }
            }
            GalleryChange::People(people) => {
                for &person_id in people {
                    if let Some(roster) = &mut self.roster {
                        roster.read_person(store, person_id)?;
                    }
                    self.remove_person(person_id);
                    let templates = store.person_templates(person_id, model_id, &TEMPLATE_SHAPE)?;
                    if !templates.is_empty() {
                        self.add_person(
                            person_id,
                            templates.iter().map(|t| t.embedding.as_slice()),
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    pub fn templates(&self) -> usize {
        self.people.iter().map(|(_, rows)| rows.len()).sum()
    }

    pub fn people(&self) -> usize {
        self.people.len()
    }

    /// The `k` nearest people (each by their nearest template), nearest first.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Candidate>> {
        if query.len() != self.dim {
            return Err(self.wrong_size(query.len()));
        }
        let query_norm = dot(query, query);
        let mut nearest: Vec<(i64, f32)> = self
            .people
            .par_chunks(PEOPLE_PER_TASK)
            .flat_map_iter(|people| {
                people.iter().map(|(person_id, rows)| {
                    let best = rows
                        .clone()
                        .map(|row| {
                            let embedding = &self.matrix[row * self.dim..(row + 1) * self.dim];
                            query_norm + self.squared_norms[row] - 2.0 * dot(query, embedding)
                        })
                        .fold(f32::INFINITY, f32::min);
                    (*person_id, best)
                })
            })
            .collect();
        let k = k.min(nearest.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        nearest.select_nth_unstable_by(k - 1, |a, b| a.1.total_cmp(&b.1));
        nearest.truncate(k);
        nearest.sort_unstable_by(|a, b| a.1.total_cmp(&b.1));
        Ok(nearest
            .into_iter()
            .map(|(person_id, squared)| {
                let distance = squared.max(0.0).sqrt();
                Candidate {
                    person_id,
                    distance,
                    score: face_score(distance),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::euclidean_distance;

    fn pseudo_random(seed: u64, dim: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..dim)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    /// Removed people are never candidates, before and after the matrix is rebuilt
    /// without their rows, and the others are found as before.
    #[test]
    fn removed_people_are_never_found_again() {
        let dim = 16;
        let templates: Vec<StoredTemplate> = (0..3000)
            .map(|i| StoredTemplate {
                template_id: i,
                person_id: i % 1500,
                embedding: pseudo_random(i as u64, dim),
            })
            .collect();
        let mut gallery = Gallery::from_templates(dim, &templates).unwrap();
        let probe = &templates[42].embedding;
        assert_eq!(gallery.search(probe, 1).unwrap()[0].person_id, 42);
        assert!(gallery.remove_person(42));
        assert!(!gallery.remove_person(42));
        assert!(
            gallery
                .search(probe, 1500)
                .unwrap()
                .iter()
                .all(|c| c.person_id != 42)
        );
        // Most people gone: the matrix is rebuilt, and what is left is found as before.
        for person in (0..1500).filter(|p| p % 10 != 7) {
            gallery.remove_person(person);
        }
        assert_eq!((gallery.people(), gallery.templates()), (150, 300));
        let probe = &templates[1507].embedding;
        assert_eq!(gallery.search(probe, 1).unwrap()[0].person_id, 7);
        assert_eq!(gallery.search(probe, 1000).unwrap().len(), 150);
    }

    #[test]
    fn search_matches_brute_force() {
        let dim = 128;
        let templates: Vec<StoredTemplate> = (0..600)
            .map(|i| StoredTemplate {
                template_id: i,
                person_id: i % 150,
                embedding: pseudo_random(i as u64, dim),
            })
            .collect();
        let gallery = Gallery::from_templates(dim, &templates).unwrap();
        assert_eq!((gallery.people(), gallery.templates()), (150, 600));
        let query = pseudo_random(10_000, dim);
        let mut expected: Vec<(i64, f32)> = (0..150)
            .map(|person| {
                let best = templates
                    .iter()
                    .filter(|t| t.person_id == person)
                    .map(|t| euclidean_distance(&query, &t.embedding).unwrap())
                    .fold(f32::INFINITY, f32::min);
                (person, best)
            })
            .collect();
        expected.sort_by(|a, b| a.1.total_cmp(&b.1));
        let found = gallery.search(&query, 5).unwrap();
        assert_eq!(found.len(), 5);
        for (candidate, (person, distance)) in found.iter().zip(&expected) {
            assert_eq!(candidate.person_id, *person);
            assert!((candidate.distance - distance).abs() < 1e-4);
        }
        assert!(Gallery::new(dim).search(&query, 3).unwrap().is_empty());
        assert!(gallery.search(&query[..64], 3).is_err());
        assert!(Gallery::new(dim).add_person(1, [&query[..64]]).is_err());
    }
}
