-- 0003: bring your own key (PostgreSQL). Keep it in step with
-- migrations/sqlite/0003_import.sql: one schema, two dialects.

-- One import's parameters: the wrapping key pair made in the token for it
-- and the import token, of which only the SHA-256 is kept. A token is good
-- for one import, until expires_at.
CREATE TABLE import_params (
    token_hash  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    key_id      TEXT COLLATE "C" NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    wrapping_id TEXT    NOT NULL,
    algorithm   TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    used_at     BIGINT 
);

-- The worker's sweep of spent and expired wrapping keys.
CREATE INDEX import_params_expires ON import_params (expires_at);

-- What is known of a key's imported material without holding it: the key
-- check value of the first import (a re-import must match it) and when
-- the material expires (NULL: never).
CREATE TABLE key_material (
    key_id      TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES keys (id) ON DELETE CASCADE,
    kcv         TEXT    NOT NULL,
    imported_at BIGINT  NOT NULL,
    valid_to    BIGINT 
);

CREATE INDEX key_material_valid_to ON key_material (valid_to);
