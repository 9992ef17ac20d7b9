-- 0007: bearer token expiry and last use (PostgreSQL). Keep it in step with
-- migrations/sqlite/0007_token_expiry.sql: one schema, two dialects.

-- expires_at: when the token stops working (NULL: never); it is part of
-- what the stored MAC covers, so the database cannot extend it.
-- last_used_at: the last successful authentication, written at most about
-- once a minute per token (never once per request).
-- From this version on, hash holds "hmac:" and HMAC-SHA256 (hex), under a
-- key in the token, of the token's id, principal, expiry and SHA-256; the
-- service converts the SHA-256 rows it finds once, when it makes that key.
ALTER TABLE bearer_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE bearer_tokens ADD COLUMN last_used_at BIGINT;
