-- Vouch schema, version 2: the store guards itself.
-- Embeddings and crops are encrypted (key_id names the key; NULL only before sealing).
ALTER TABLE templates ADD COLUMN key_id INTEGER;
-- People and settings carry a seal (an HMAC of their content under the key file's key).
ALTER TABLE people ADD COLUMN seal TEXT;
ALTER TABLE settings ADD COLUMN seal TEXT;
-- Each audit row records the digests of the rows its transaction wrote (the ledger).
ALTER TABLE audit ADD COLUMN changes TEXT NOT NULL DEFAULT '';
-- The audit log's head, sealed: rows cut from the end of the log show.
CREATE TABLE anchor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    rows INTEGER NOT NULL,
    head_hash TEXT NOT NULL,
    seal TEXT NOT NULL
);
