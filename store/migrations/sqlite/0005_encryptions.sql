-- 0004: GCM invocations per version (SQLite). Keep it in step with
-- migrations/postgres/0004_encryptions.sql: one schema, two dialects.

-- How many AES-GCM encryptions each version has made, added in batches by
-- every replica (service: invocation counting). Random 96-bit IVs are safe
-- for about 2^32 encryptions under one key (NIST SP 800-38D, 8.3).
ALTER TABLE key_versions ADD COLUMN encryptions INTEGER NOT NULL DEFAULT 0;
