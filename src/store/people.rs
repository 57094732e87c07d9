//! People and their reference templates: enrollment (with the duplicate check inside the
//! same transaction), reads that open and validate every template, deletion that leaves
//! nothing behind, re-embedding, and moving the biometrics to a new key.

use super::sql::{Db, OptionalExtension, Params, ToValue, params};

use super::keys::Keys;
use super::ledger::{ATTENDANCE, DECISIONS, PEOPLE, SETTINGS, TEMPLATES};
use super::seals;
use super::text::check_text;
use super::{CropTemplate, NewTemplate, Person, ReferenceCrop, Store, StoredTemplate, now};
use crate::error::{StoreError, StoreResult};
use crate::types::{Modality, TemplateShape};

/// A person's template counts once per picture (its source's hash) and model: the same
/// picture stored twice (enrolled twice before that was refused) is one reference, to the
/// scorer and to the desk's count alike.
const ONE_PER_PICTURE: &str = "t.id = (SELECT min(u.id) FROM templates u
    WHERE u.person_id = t.person_id AND u.model_id = t.model_id
      AND u.source_sha256 = t.source_sha256)";

/// One person to enroll, and what the duplicate check already looked at.
pub struct Enrollment<'a> {
    pub name: &'a str,
    pub external_id: &'a str,
    pub modality: Modality,
    pub model_id: &'a str,
    pub templates: &'a [NewTemplate],
    /// The shape of `model_id`'s templates.
    pub shape: &'a TemplateShape,
    /// Templates up to this id were already checked against (an in-memory gallery); the
    /// guard sees the ones enrolled since, by this process or another.
    pub checked_up_to: i64,
    /// Re-enrolment: the person exists, and these templates replace all of theirs (those
    /// of earlier models too: they were made from the references being replaced).
    pub replace: bool,
}

/// The blob field a template row encrypts, bound into its associated data.
#[derive(Clone, Copy)]
enum Field {
    Embedding,
    Crop,
}

fn aad(template_id: i64, person_id: i64, model_id: &str, field: Field) -> Vec<u8> {
    let field = match field {
        Field::Embedding => "embedding",
        Field::Crop => "crop",
    };
    format!("vouch template {template_id} of person {person_id} by {model_id}: {field}")
        .into_bytes()
}

impl Store {
    /// Enrolls a person with all their templates in one transaction, with an audit row.
    pub fn enroll(
        &mut self,
        name: &str,
        external_id: &str,
        modality: Modality,
        model_id: &str,
        templates: &[NewTemplate],
        actor: &str,
    ) -> StoreResult<i64> {
        let shape = TemplateShape {
            len: templates.first().map_or(0, |t| t.embedding.len()),
            norm_of_first: 0,
            norm: 0.0..=0.0,
        };
        self.enroll_guarded(
            &Enrollment {
                name,
                external_id,
                modality,
                model_id,
                templates,
                shape: &shape,
                checked_up_to: i64::MAX,
                replace: false,
            },
            actor,
            |_| Ok::<(), StoreError>(()),
        )
    }

    /// Enrolls a person; inside the transaction (no other writer can enroll meanwhile),
    /// `guard` sees the templates of the same model enrolled after `checked_up_to` and may
    /// refuse (a face that is already someone else's).
    pub fn enroll_guarded<E: From<StoreError>>(
        &mut self,
        enrollment: &Enrollment,
        actor: &str,
        guard: impl FnOnce(&[StoredTemplate]) -> Result<(), E>,
    ) -> Result<i64, E> {
        check_text("name", enrollment.name)?;
        check_text("id", enrollment.external_id)?;
        let path = self.path.clone();
        let action = if enrollment.replace {
            "reenroll"
        } else {
            "enroll"
        };
        self.write(actor, action, |tx, keys, changes| {
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT id FROM people WHERE external_id = ?1 AND modality = ?2",
                    params![enrollment.external_id, enrollment.modality],
                    |row| row.get(0),
                )
                .optional()?;
            match (exists, enrollment.replace) {
                (Some(_), false) => {
                    return Err(StoreError::Duplicate {
                        external_id: enrollment.external_id.to_string(),
                        modality: enrollment.modality,
                    }
                    .into());
                }
                (None, true) => {
                    return Err(
                        StoreError::UnknownPerson(enrollment.external_id.to_string()).into(),
                    );
                }
                _ => {}
            }
            if enrollment.checked_up_to != i64::MAX {
                let newer = read_templates(
                    tx,
                    keys,
                    &path,
                    "p.modality = ?1 AND t.model_id = ?2 AND t.id > ?3",
                    params![
                        enrollment.modality,
                        enrollment.model_id,
                        enrollment.checked_up_to
                    ],
                    enrollment.shape,
                )?;
                guard(&newer)?;
            }
            let at = now();
            let (person_id, replaced) = match exists {
                Some(person_id) => {
                    let old = ids(
                        tx,
                        "SELECT id FROM templates WHERE person_id = ?1",
                        person_id,
                    )?;
                    tx.execute("DELETE FROM templates WHERE person_id = ?1", params![person_id])?;
                    for id in &old {
                        changes.gone(&TEMPLATES, id);
                    }
                    (person_id, old.len())
                }
                None => {
                    tx.execute(
                        "INSERT INTO people (name, external_id, modality, created_at) VALUES (?1, ?2, ?3, ?4)",
                        params![enrollment.name, enrollment.external_id, enrollment.modality, at],
                    )?;
                    let person_id = tx.last_insert_rowid()?;
                    seals::seal(tx, keys, &seals::PEOPLE, &person_id)?;
                    changes.put(tx, &PEOPLE, person_id)?;
                    (person_id, 0)
                }
            };
            for template in enrollment.templates {
                let id = insert_template(tx, keys, person_id, enrollment.model_id, template, &at)?;
                changes.put(tx, &TEMPLATES, id)?;
            }
            let detail = serde_json::json!({
                "person_id": person_id, "external_id": enrollment.external_id,
                "name": enrollment.name, "modality": enrollment.modality,
                "templates": enrollment.templates.len(), "model": enrollment.model_id,
                "replaced": replaced,
            });
            Ok((person_id, detail))
        })
    }

    pub fn people(&self, modality: Option<Modality>) -> StoreResult<Vec<Person>> {
        self.people_where("CAST(?1 AS TEXT) IS NULL OR p.modality = ?1", &[&modality])
    }

    pub fn person_by_external_id(
        &self,
        external_id: &str,
        modality: Modality,
    ) -> StoreResult<Person> {
        self.people_where(
            "p.external_id = ?1 AND p.modality = ?2",
            &[&external_id, &modality],
        )?
        .pop()
        .ok_or_else(|| StoreError::UnknownPerson(external_id.to_string()))
    }

    pub fn person(&self, person_id: i64) -> StoreResult<Person> {
        self.people_where("p.id = ?1", &[&person_id])?
            .pop()
            .ok_or_else(|| StoreError::UnknownPerson(person_id.to_string()))
    }

    /// People matching an SQL condition on `p` (people), with how many pictures they were
    /// enrolled from; each row's seal is checked (when the key is at hand) and its words
    /// validated.
    fn people_where(&self, condition: &str, values: &[&dyn ToValue]) -> StoreResult<Vec<Person>> {
        // One picture re-embedded for a later model is still one reference.
        let rows = self.conn.query(
            &format!(
                "SELECT {}, count(DISTINCT t.source_sha256)
             FROM people p LEFT JOIN templates t ON t.person_id = p.id
             WHERE {condition}
             GROUP BY p.id ORDER BY p.name, p.id",
                seals::select_sealed(&seals::PEOPLE)
                    .split(", ")
                    .map(|c| format!("p.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            values,
        )?;
        let mut people = Vec::new();
        for row in &rows {
            let id: i64 = row.get(0)?;
            let bad = StoreError::bad_row("people", id, &self.path);
            if let Some(keys) = &self.keys
                && !seals::holds(keys, &seals::PEOPLE, row)?
            {
                return Err(bad("its seal does not match its content".into()));
            }
            let person = Person {
                id,
                name: row.get(1)?,
                external_id: row.get(2)?,
                modality: row.get(3).map_err(|e| bad(e.to_string()))?,
                created_at: row.get(4)?,
                templates: row.get::<i64>(6)? as usize,
            };
            for (field, value) in [("name", &person.name), ("id", &person.external_id)] {
                check_text(field, value).map_err(|e| bad(e.to_string()))?;
            }
            people.push(person);
        }
        Ok(people)
    }

    /// Deletes a person with their templates and crops, and takes their id off their
    /// punches and decisions; the audit keeps a row saying so. Deleted pages are
    /// overwritten and the write-ahead log emptied, so nothing of them stays in the file.
    pub fn delete_person(&mut self, person_id: i64, actor: &str) -> StoreResult<()> {
        self.write(actor, "delete_person", |tx, _, changes| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM people WHERE id = ?1)",
                params![person_id],
                |row| row.get(0),
            )?;
            if !exists {
                return Err(StoreError::UnknownPerson(person_id.to_string()));
            }
            for id in ids(
                tx,
                "SELECT id FROM templates WHERE person_id = ?1",
                person_id,
            )? {
                changes.gone(&TEMPLATES, id);
            }
            let punches = ids(
                tx,
                "SELECT id FROM attendance WHERE person_id = ?1",
                person_id,
            )?;
            let decisions = ids(
                tx,
                "SELECT id FROM decisions WHERE person_id = ?1",
                person_id,
            )?;
            tx.execute(
                "UPDATE attendance SET person_id = NULL WHERE person_id = ?1",
                params![person_id],
            )?;
            tx.execute(
                "UPDATE decisions SET person_id = NULL WHERE person_id = ?1",
                params![person_id],
            )?;
            tx.execute(
                "DELETE FROM templates WHERE person_id = ?1",
                params![person_id],
            )?;
            tx.execute("DELETE FROM people WHERE id = ?1", params![person_id])?;
            changes.gone(&PEOPLE, person_id);
            for key in [
                super::records::offset_key(person_id),
                super::operators::pin_key(person_id),
            ] {
                if tx.execute("DELETE FROM settings WHERE key = ?1", params![&key])? > 0 {
                    changes.gone(&SETTINGS, key);
                }
            }
            for id in punches {
                changes.put(tx, &ATTENDANCE, id)?;
            }
            for id in decisions {
                changes.put(tx, &DECISIONS, id)?;
            }
            Ok(((), serde_json::json!({ "person_id": person_id })))
        })?;
        self.checkpoint();
        Ok(())
    }

    /// All templates made by `model_id` for one modality, opened and checked against
    /// `shape`: embeddings of other models are never returned, so never compared.
    pub fn templates(
        &self,
        modality: Modality,
        model_id: &str,
        shape: &TemplateShape,
    ) -> StoreResult<Vec<StoredTemplate>> {
        read_templates(
            &self.conn,
            self.keys()?,
            &self.path,
            "p.modality = ?1 AND t.model_id = ?2",
            params![modality, model_id],
            shape,
        )
    }

    /// One person's templates of `model_id`, one per picture enrolled.
    pub fn person_templates(
        &self,
        person_id: i64,
        model_id: &str,
        shape: &TemplateShape,
    ) -> StoreResult<Vec<StoredTemplate>> {
        read_templates(
            &self.conn,
            self.keys()?,
            &self.path,
            &format!("t.person_id = ?1 AND t.model_id = ?2 AND {ONE_PER_PICTURE}"),
            params![person_id, model_id],
            shape,
        )
    }

    /// The highest template id, for "what has been enrolled since".
    pub fn last_template_id(&self) -> StoreResult<i64> {
        self.conn.query_row(
            "SELECT coalesce(max(id), 0) FROM templates",
            params![],
            |row| row.get(0),
        )
    }

    /// Templates whose crop has not yet been embedded by `model_id` (the work of a
    /// re-embedding after a model change), with their crops.
    pub fn templates_missing_model(
        &self,
        modality: Modality,
        model_id: &str,
    ) -> StoreResult<Vec<CropTemplate>> {
        let rows = self.conn.query(
            "SELECT t.id, t.person_id, t.quality, t.source_sha256, t.crop, t.model_id, t.key_id
             FROM templates t JOIN people p ON p.id = t.person_id
             WHERE p.modality = ?1 AND t.model_id <> ?2 AND t.crop IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM templates n
                               WHERE n.person_id = t.person_id AND n.model_id = ?2
                                 AND n.source_sha256 = t.source_sha256)
               AND t.id = (SELECT min(u.id) FROM templates u
                           WHERE u.person_id = t.person_id AND u.source_sha256 = t.source_sha256
                             AND u.model_id <> ?2 AND u.crop IS NOT NULL)
             ORDER BY t.person_id, t.id",
            params![modality, model_id],
        )?;
        let mut found = Vec::new();
        for row in &rows {
            let (template_id, person_id): (i64, i64) = (row.get(0)?, row.get(1)?);
            let crop = self.open_blob(
                template_id,
                person_id,
                &row.get::<String>(5)?,
                Field::Crop,
                row.get(6)?,
                &row.get::<Vec<u8>>(4)?,
            )?;
            found.push(CropTemplate {
                template_id,
                person_id,
                quality: row.get(2)?,
                source_sha256: row.get(3)?,
                crop,
            });
        }
        Ok(found)
    }

    /// Adds templates of `model_id` to existing people (re-embedding), in one transaction.
    pub fn add_templates(
        &mut self,
        model_id: &str,
        templates: &[(i64, NewTemplate)],
        actor: &str,
    ) -> StoreResult<()> {
        self.write(actor, "reembed", |tx, keys, changes| {
            let at = now();
            for (person_id, template) in templates {
                let id = insert_template(tx, keys, *person_id, model_id, template, &at)?;
                changes.put(tx, &TEMPLATES, id)?;
            }
            let detail = serde_json::json!({ "model": model_id, "templates": templates.len() });
            Ok(((), detail))
        })
    }

    /// The first stored crop of a person (a thumbnail for lists).
    pub fn first_crop(&self, person_id: i64) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .crops_where("t.person_id = ?1", params![person_id], Some(1))?
            .pop()
            .map(|(_, crop)| crop))
    }

    /// A person's stored crops for one model, each with its template id, one per picture
    /// as `person_templates` gives their templates; a template without a crop is absent.
    pub fn crops(&self, person_id: i64, model_id: &str) -> StoreResult<Vec<(i64, Vec<u8>)>> {
        self.crops_where(
            &format!("t.person_id = ?1 AND t.model_id = ?2 AND {ONE_PER_PICTURE}"),
            params![person_id, model_id],
            None,
        )
    }

    /// Each enrolled reference crop of a modality once (a re-embedded template shares its
    /// crop with the template it came from), with the person's id.
    pub fn reference_crops(&self, modality: Modality) -> StoreResult<Vec<ReferenceCrop>> {
        let rows = self.conn.query(
            "SELECT t.id, t.person_id, t.model_id, t.key_id, t.crop, p.external_id, t.source_sha256
             FROM templates t JOIN people p ON p.id = t.person_id
             WHERE p.modality = ?1 AND t.crop IS NOT NULL
               AND t.id = (SELECT min(u.id) FROM templates u
                           WHERE u.person_id = t.person_id AND u.source_sha256 = t.source_sha256)
             ORDER BY p.external_id, t.id",
            params![modality],
        )?;
        let mut found = Vec::new();
        for row in &rows {
            let crop = self.open_blob(
                row.get(0)?,
                row.get(1)?,
                &row.get::<String>(2)?,
                Field::Crop,
                row.get(3)?,
                &row.get::<Vec<u8>>(4)?,
            )?;
            found.push(ReferenceCrop {
                external_id: row.get(5)?,
                source_sha256: row.get(6)?,
                crop,
            });
        }
        Ok(found)
    }

    /// (template id, crop) of templates matching a condition on `t`, in id order.
    fn crops_where(
        &self,
        condition: &str,
        values: impl Params,
        limit: Option<usize>,
    ) -> StoreResult<Vec<(i64, Vec<u8>)>> {
        let rows = self.conn.query(
            &format!(
                "SELECT t.id, t.person_id, t.model_id, t.key_id, t.crop FROM templates t
             WHERE {condition} AND t.crop IS NOT NULL ORDER BY t.id{}",
                limit.map_or(String::new(), |n| format!(" LIMIT {n}"))
            ),
            values,
        )?;
        let mut found = Vec::new();
        for row in &rows {
            let id: i64 = row.get(0)?;
            let crop = self.open_blob(
                id,
                row.get(1)?,
                &row.get::<String>(2)?,
                Field::Crop,
                row.get(3)?,
                &row.get::<Vec<u8>>(4)?,
            )?;
            found.push((id, crop));
        }
        Ok(found)
    }

    fn open_blob(
        &self,
        template_id: i64,
        person_id: i64,
        model_id: &str,
        field: Field,
        key_id: Option<u32>,
        blob: &[u8],
    ) -> StoreResult<Vec<u8>> {
        open_blob(
            self.keys()?,
            &self.path,
            (template_id, person_id, model_id, field),
            key_id,
            blob,
        )
    }

    /// Moves up to `chunk` templates still under an old key to the current one, in one
    /// transaction; returns how many moved (0 when none is left).
    pub fn reencrypt_templates(&mut self, chunk: usize, actor: &str) -> StoreResult<usize> {
        let path = self.path.clone();
        self.write(actor, "rotate_keys", |tx, keys, changes| {
            let moved = seal_templates(
                tx,
                keys,
                &path,
                "key_id IS DISTINCT FROM ?1 ORDER BY id LIMIT ?2",
                params![keys.current_id(), chunk as i64],
            )?;
            for id in &moved {
                changes.put(tx, &TEMPLATES, *id)?;
            }
            let detail = serde_json::json!({ "templates": moved.len(), "key": keys.current_id() });
            Ok((moved.len(), detail))
        })
    }

    /// Re-seals people, settings and the audit anchor with the current key.
    pub fn reseal(&mut self, actor: &str) -> StoreResult<usize> {
        self.write(actor, "rotate_keys", |tx, keys, changes| {
            let resealed = seals::reseal_all(tx, keys)?;
            for (which, key) in &resealed {
                let table = if which.name == "people" {
                    &PEOPLE
                } else {
                    &super::ledger::SETTINGS
                };
                changes.put_key(tx, table, key)?;
            }
            let count = resealed.len();
            Ok((
                count,
                serde_json::json!({ "resealed": count, "key": keys.current_id() }),
            ))
        })
    }
}

fn ids(tx: &Db, sql: &str, person_id: i64) -> StoreResult<Vec<i64>> {
    tx.query_map(sql, params![person_id], |row| row.get(0))
}

/// A template row's blob, opened: the key it was sealed with, its associated data naming
/// the row, and the AEAD tag must all agree, or the row is reported.
fn open_blob(
    keys: &Keys,
    path: &std::path::Path,
    (template_id, person_id, model_id, field): (i64, i64, &str, Field),
    key_id: Option<u32>,
    blob: &[u8],
) -> StoreResult<Vec<u8>> {
    let bad = StoreError::bad_row("templates", template_id, path);
    let key_id = key_id.ok_or_else(|| bad("it was never sealed".into()))?;
    keys.decrypt(key_id, &aad(template_id, person_id, model_id, field), blob)
        .map_err(|refused| bad(refused.0))
}

/// Templates (joined with their person as `p`) matching `condition`, opened and checked.
fn read_templates(
    conn: &Db,
    keys: &Keys,
    path: &std::path::Path,
    condition: &str,
    values: impl Params,
    shape: &TemplateShape,
) -> StoreResult<Vec<StoredTemplate>> {
    let rows = conn.query(
        &format!(
            "SELECT t.id, t.person_id, t.model_id, t.key_id, t.embedding
             FROM templates t JOIN people p ON p.id = t.person_id
             WHERE {condition} ORDER BY t.id"
        ),
        values,
    )?;
    let mut found = Vec::new();
    for row in &rows {
        let (template_id, person_id): (i64, i64) = (row.get(0)?, row.get(1)?);
        let bytes = open_blob(
            keys,
            path,
            (
                template_id,
                person_id,
                &row.get::<String>(2)?,
                Field::Embedding,
            ),
            row.get(3)?,
            &row.get::<Vec<u8>>(4)?,
        )?;
        let embedding = blob_to_embedding(&bytes).and_then(|values| {
            shape.check(&values)?;
            Ok(values)
        });
        let embedding = embedding.map_err(StoreError::bad_row("templates", template_id, path))?;
        found.push(StoredTemplate {
            template_id,
            person_id,
            embedding,
        });
    }
    Ok(found)
}

/// Inserts one template with its id chosen first, so its blobs can be bound to it.
fn insert_template(
    tx: &Db,
    keys: &Keys,
    person_id: i64,
    model_id: &str,
    template: &NewTemplate,
    at: &str,
) -> StoreResult<i64> {
    let id: i64 = tx.query_row(
        "SELECT coalesce(max(id), 0) + 1 FROM templates",
        [],
        |row| row.get(0),
    )?;
    let embedding = keys.encrypt(
        &aad(id, person_id, model_id, Field::Embedding),
        &embedding_to_blob(&template.embedding),
    );
    let crop = template
        .crop
        .as_ref()
        .map(|crop| keys.encrypt(&aad(id, person_id, model_id, Field::Crop), crop));
    tx.execute(
        "INSERT INTO templates (id, person_id, model_id, embedding, quality, source_sha256, crop, created_at, key_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            id,
            person_id,
            model_id,
            embedding,
            template.quality,
            template.source_sha256,
            crop,
            at,
            keys.current_id()
        ],
    )?;
    Ok(id)
}

/// A template row as stored, to be sealed (again).
struct StoredBlobs {
    id: i64,
    person_id: i64,
    model_id: String,
    /// `None`: kept in the clear by an earlier schema.
    key_id: Option<u32>,
    embedding: Vec<u8>,
    crop: Option<Vec<u8>>,
}

/// Seals the embedding and crop of the templates matching `condition` with the current
/// key: blobs under an older key are opened first, blobs an earlier schema kept in the
/// clear are taken as they are. Returns the ids sealed.
fn seal_templates(
    tx: &Db,
    keys: &Keys,
    path: &std::path::Path,
    condition: &str,
    values: impl Params,
) -> StoreResult<Vec<i64>> {
    let rows: Vec<StoredBlobs> = tx.query_map(
        &format!(
            "SELECT id, person_id, model_id, key_id, embedding, crop FROM templates WHERE {condition}"
        ),
        values,
        |row| {
            Ok(StoredBlobs {
                id: row.get(0)?,
                person_id: row.get(1)?,
                model_id: row.get(2)?,
                key_id: row.get(3)?,
                embedding: row.get(4)?,
                crop: row.get(5)?,
            })
        },
    )?;
    for row in &rows {
        let reseal = |field, blob: &[u8]| -> StoreResult<Vec<u8>> {
            let plain = match row.key_id {
                Some(_) => open_blob(
                    keys,
                    path,
                    (row.id, row.person_id, &row.model_id, field),
                    row.key_id,
                    blob,
                )?,
                None => blob.to_vec(),
            };
            Ok(keys.encrypt(&aad(row.id, row.person_id, &row.model_id, field), &plain))
        };
        let embedding = reseal(Field::Embedding, &row.embedding)?;
        let crop = row
            .crop
            .as_deref()
            .map(|crop| reseal(Field::Crop, crop))
            .transpose()?;
        tx.execute(
            "UPDATE templates SET embedding = ?1, crop = ?2, key_id = ?3 WHERE id = ?4",
            params![embedding, crop, keys.current_id(), row.id],
        )?;
    }
    Ok(rows.iter().map(|row| row.id).collect())
}

/// Encrypts the templates a database of an earlier schema kept in the clear.
pub(super) fn encrypt_plain_templates(
    tx: &Db,
    keys: &Keys,
    path: &std::path::Path,
) -> StoreResult<usize> {
    seal_templates(tx, keys, path, "key_id IS NULL", []).map(|ids| ids.len())
}

/// Problems with any template a database holds: every blob must open with its row's
/// associated data and hold finite numbers (a backup is checked so before it is restored).
pub(super) fn unreadable_templates(
    conn: &Db,
    keys: &Keys,
    path: &std::path::Path,
) -> StoreResult<Vec<String>> {
    let rows = conn.query(
        "SELECT id, person_id, model_id, key_id, embedding, crop FROM templates ORDER BY id",
        params![],
    )?;
    let mut problems = Vec::new();
    for row in &rows {
        let (id, person_id, model_id): (i64, i64, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let key_id: Option<u32> = row.get(3)?;
        let embedding = open_blob(
            keys,
            path,
            (id, person_id, &model_id, Field::Embedding),
            key_id,
            &row.get::<Vec<u8>>(4)?,
        )
        .and_then(|bytes| {
            let bad = StoreError::bad_row("templates", id, path);
            let values = blob_to_embedding(&bytes).map_err(&bad)?;
            if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
                return Err(bad(
                    "it is empty or holds a value that is not a finite number".into(),
                ));
            }
            Ok(())
        });
        let crop = match row.get::<Option<Vec<u8>>>(5)? {
            Some(crop) => open_blob(
                keys,
                path,
                (id, person_id, &model_id, Field::Crop),
                key_id,
                &crop,
            )
            .map(drop),
            None => Ok(()),
        };
        for result in [embedding, crop] {
            if let Err(error) = result {
                problems.push(error.to_string());
            }
        }
    }
    Ok(problems)
}

pub fn embedding_to_blob(embedding: &[f32]) -> Vec<u8> {
    embedding.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Little-endian f32s; a length that is not a multiple of 4 is refused.
pub fn blob_to_embedding(blob: &[u8]) -> Result<Vec<f32>, String> {
    if !blob.len().is_multiple_of(4) {
        return Err(format!(
            "its {} bytes are not whole 32-bit numbers",
            blob.len()
        ));
    }
    Ok(blob
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}
