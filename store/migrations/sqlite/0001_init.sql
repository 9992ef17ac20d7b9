-- 0001: the initial schema (SQLite). Keep it in step with
-- migrations/postgres/0001_init.sql: one schema, two dialects.
--
-- Times are INTEGER unix microseconds UTC, durations are seconds, booleans
-- are 0/1, tags are JSON text. NULL means "not set".

CREATE TABLE keys (
    id                        TEXT    NOT NULL PRIMARY KEY,
    description               TEXT    NOT NULL DEFAULT '',
    state                     TEXT    NOT NULL,
    origin                    TEXT    NOT NULL,
    key_spec                  TEXT    NOT NULL,
    key_manager               TEXT    NOT NULL,
    created_at                INTEGER NOT NULL,
    updated_at                INTEGER NOT NULL,
    primary_version           INTEGER NOT NULL DEFAULT 0,
    rotation_enabled          INTEGER NOT NULL DEFAULT 0 CHECK (rotation_enabled IN (0, 1)),
    rotation_interval_seconds INTEGER NOT NULL DEFAULT 0,
    last_rotation             INTEGER,
    next_rotation             INTEGER,
    deletion_date             INTEGER,
    tags                      TEXT    NOT NULL DEFAULT '{}',
    -- The worker lease (ClaimKey): who may rotate or delete this key, until when.
    lease_owner               TEXT,
    lease_until               INTEGER
);

-- DueRotations and DueDeletions scan by state first.
CREATE INDEX keys_due_rotation ON keys (state, rotation_enabled, next_rotation);
CREATE INDEX keys_due_deletion ON keys (state, deletion_date);

-- Versions, aliases and rotations go with their key: DeleteKey (the rollback
-- of a failed creation) is then one atomic statement.
CREATE TABLE key_versions (
    key_id      TEXT    NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    origin      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    destroy_at  INTEGER,
    token_label TEXT    NOT NULL,
    PRIMARY KEY (key_id, version)
);

-- VersionsInState (the reconciler) and DueDestructions.
CREATE INDEX key_versions_state ON key_versions (state, destroy_at);

CREATE TABLE aliases (
    name       TEXT    NOT NULL PRIMARY KEY,
    key_id     TEXT    NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE INDEX aliases_key_id ON aliases (key_id, name);

CREATE TABLE rotations (
    key_id        TEXT    NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    rotated_at    INTEGER NOT NULL,
    rotation_type TEXT    NOT NULL,
    PRIMARY KEY (key_id, version)
);

-- The hash-chained audit log. No foreign key: audit outlives everything.
-- AUTOINCREMENT so that a seq is never reused, even after the last row is
-- deleted; an explicit seq may still be inserted by a serialised writer.
CREATE TABLE audit_events (
    seq         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    request_id  TEXT    NOT NULL DEFAULT '',
    principal   TEXT    NOT NULL DEFAULT '',
    action      TEXT    NOT NULL,
    key_id      TEXT    NOT NULL DEFAULT '',
    key_version INTEGER NOT NULL DEFAULT 0,
    outcome     TEXT    NOT NULL,
    error_code  TEXT    NOT NULL DEFAULT '',
    source      TEXT    NOT NULL DEFAULT '',
    detail      TEXT    NOT NULL DEFAULT '{}',
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);

CREATE INDEX audit_events_key_id ON audit_events (key_id, seq);
CREATE INDEX audit_events_at ON audit_events (at);
