-- Vouch schema, version 4: the desk asks of every questioned file whether it was judged
-- before, by the sha256 each verification's audit row records; this index answers
-- without reading the whole log.
CREATE INDEX audit_by_evidence ON audit (json_extract(detail, '$.evidence_sha256'))
    WHERE action = 'verify';
