-- 0004: AWS access keys (SQLite). Keep it in step with
-- migrations/postgres/0004_access_keys.sql: one schema, two dialects.

-- An access key of a principal, for AWS Signature Version 4. The secret is
-- not stored in any form: it is HMAC-SHA256, under a key that never leaves
-- the token, of the id and the random nonce. The database alone cannot
-- give it back, and neither can a copy of it.
CREATE TABLE access_keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    principal    TEXT    NOT NULL REFERENCES principals (name) ON DELETE CASCADE,
    nonce        TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);

CREATE INDEX access_keys_principal ON access_keys (principal);
