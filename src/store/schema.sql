-- Vouch schema, version 1. Applied by rusqlite_migration; later versions append migrations.
CREATE TABLE people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    external_id TEXT NOT NULL,
    modality TEXT NOT NULL CHECK (modality IN ('face', 'signature')),
    created_at TEXT NOT NULL,
    UNIQUE (external_id, modality)
);

-- One reference embedding. `crop` keeps the aligned chip so that a new model can
-- re-embed without the original photo; `model_id` binds the embedding to its space.
CREATE TABLE templates (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    embedding BLOB NOT NULL,
    quality REAL NOT NULL,
    source_sha256 TEXT NOT NULL,
    crop BLOB,
    created_at TEXT NOT NULL
);
CREATE INDEX templates_by_model ON templates (model_id);
CREATE INDEX templates_by_person ON templates (person_id);

CREATE TABLE attendance (
    id INTEGER PRIMARY KEY,
    person_id INTEGER REFERENCES people (id) ON DELETE SET NULL,
    kind TEXT NOT NULL CHECK (kind IN ('in', 'out')),
    at TEXT NOT NULL,
    score REAL NOT NULL
);
CREATE INDEX attendance_by_person ON attendance (person_id, at);

CREATE TABLE decisions (
    id INTEGER PRIMARY KEY,
    person_id INTEGER REFERENCES people (id) ON DELETE SET NULL,
    modality TEXT NOT NULL,
    score REAL NOT NULL,
    threshold_high REAL NOT NULL,
    threshold_low REAL NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('accept', 'review', 'reject')),
    operator TEXT NOT NULL,
    at TEXT NOT NULL
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Append-only: each row's hash covers its content and the previous row's hash, so an
-- edited or deleted row breaks the chain (`vouch audit verify`).
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
