-- 0006: the automatic rotation schedule, the on-demand quota and the last
-- failed automatic rotation (sqlite). Keep it in step with
-- migrations/postgres/0006_rotation_schedule.sql: one schema, two dialects.

-- rotation_anchor: the last automatic rotation, or when automatic rotation
-- was enabled (or the key created with it). next_rotation = anchor +
-- interval; on-demand rotations leave both alone, as in AWS KMS. Existing
-- keys start from their last automatic rotation, else their creation.
ALTER TABLE keys ADD COLUMN rotation_anchor INTEGER;
UPDATE keys SET rotation_anchor = COALESCE(
    (SELECT MAX(r.rotated_at) FROM rotations r
      WHERE r.key_id = keys.id AND r.rotation_type = 'AUTOMATIC'),
    created_at);

-- on_demand_rotations: how many on-demand rotations the key has had in its
-- life, for KMS_MAX_ON_DEMAND_ROTATIONS (automatic ones do not count).
ALTER TABLE keys ADD COLUMN on_demand_rotations INTEGER NOT NULL DEFAULT 0;
UPDATE keys SET on_demand_rotations =
    (SELECT COUNT(*) FROM rotations r
      WHERE r.key_id = keys.id AND r.rotation_type = 'ON_DEMAND');

-- The last failed automatic rotation, shown until the next rotation that
-- succeeds: when, and a message fit for clients (no internals).
ALTER TABLE keys ADD COLUMN rotation_failure_at INTEGER;
ALTER TABLE keys ADD COLUMN rotation_failure_message TEXT NOT NULL DEFAULT '';
