-- 0002: access control (principals, policies, bearer tokens) and the head of
-- the audit chain (PostgreSQL). Keep it in step with
-- migrations/sqlite/0002_access.sql: one schema, two dialects.
--
-- Text keys use COLLATE "C", as in 0001. Constraint names are the defaults
-- (TABLE_pkey for a primary key): the store tells a duplicate name from a
-- duplicate in another unique column by them.

-- A caller of the API. cert_subject maps a TLS client certificate subject to
-- it; NULL (never '') when none is mapped, so that any number of principals
-- may have none while a subject names at most one principal.
CREATE TABLE principals (
    name         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    created_at   BIGINT NOT NULL,
    cert_subject TEXT COLLATE "C" UNIQUE CHECK (cert_subject <> '')
);

-- A named policy document (policy.Document JSON).
CREATE TABLE policies (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    document   TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Attachments go with their principal, but hold their policy: a policy in
-- use cannot be deleted (DeletePolicy checks first and says so; the foreign
-- key stops a concurrent attach slipping between the check and the delete).
CREATE TABLE principal_policies (
    principal TEXT COLLATE "C" NOT NULL REFERENCES principals (name) ON DELETE CASCADE,
    policy    TEXT COLLATE "C" NOT NULL REFERENCES policies (name),
    PRIMARY KEY (principal, policy)
);

-- DeletePolicy's check, and the foreign key check of a policy delete.
CREATE INDEX principal_policies_policy ON principal_policies (policy);

-- Only the SHA-256 (hex) of a token's secret is kept.
CREATE TABLE bearer_tokens (
    id          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    principal   TEXT COLLATE "C" NOT NULL REFERENCES principals (name) ON DELETE CASCADE,
    hash        TEXT   NOT NULL UNIQUE,
    description TEXT   NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

-- ListTokens, and the cascade of a principal delete.
CREATE INDEX bearer_tokens_principal ON bearer_tokens (principal, created_at);

-- The head of the audit chain: the last seq and its hash, in one row that
-- AppendAudit locks (SELECT ... FOR UPDATE), so that appends from every
-- replica are serial and the chain has no gap or fork. An empty chain is
-- seq 0 with the genesis hash (service.AuditGenesisHash).
CREATE TABLE audit_head (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL,
    hash TEXT    NOT NULL
);

INSERT INTO audit_head (id, seq, hash)
    VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- A database that already holds audit rows continues from its last one
-- rather than colliding with seq 1.
UPDATE audit_head SET
    seq  = (SELECT seq FROM audit_events ORDER BY seq DESC LIMIT 1),
    hash = (SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1)
WHERE id = 1 AND EXISTS (SELECT 1 FROM audit_events);

-- ListAudit by principal.
CREATE INDEX audit_events_principal ON audit_events (principal, seq);
