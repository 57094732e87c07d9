-- Vouch schema, version 4, for PostgreSQL: schema_v4.sql in PostgreSQL's words.
CREATE INDEX audit_by_evidence ON audit ((detail::jsonb ->> 'evidence_sha256'))
    WHERE action = 'verify';
UPDATE vouch_meta SET schema_version = 4;
