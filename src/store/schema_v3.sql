-- Vouch schema, version 3: who acts, and changes that need a second person.
-- An operator's secret is an argon2id PHC string; the row is sealed like people and
-- settings, so a role raised in a SQLite shell is refused at the next login.
CREATE TABLE operators (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('kiosk', 'clerk', 'supervisor', 'auditor')),
    secret_hash TEXT NOT NULL,
    active INTEGER NOT NULL CHECK (active IN (0, 1)),
    failed_logins INTEGER NOT NULL,
    locked_until TEXT,
    created_at TEXT NOT NULL,
    seal TEXT
);
-- A governed change: proposed with its predicted effect, applied only when approved.
CREATE TABLE proposals (
    id INTEGER PRIMARY KEY,
    change TEXT NOT NULL,
    evidence TEXT NOT NULL,
    proposed_by TEXT NOT NULL,
    proposed_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'withdrawn')),
    decided_by TEXT,
    decided_at TEXT,
    seal TEXT
);
