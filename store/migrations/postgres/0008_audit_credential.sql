-- 0008: the credential of each audit record (postgres). Keep it in step with
-- migrations/sqlite/0008_audit_credential.sql: one schema, two dialects.

-- credential: what the request authenticated with, never a secret:
-- "token:<id>", "access_key:<AKIA...>" or "certificate:<subject>"; empty
-- for the system, unauthenticated requests and every older record. A record
-- with a credential is hashed as v2 (service.HashAuditEvent), one without
-- as v1, so the records before this migration verify unchanged.
ALTER TABLE audit_events ADD COLUMN credential TEXT NOT NULL DEFAULT '';
