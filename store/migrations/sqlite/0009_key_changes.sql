-- 0009: the change log of the key ring (SQLite). Keep it in step with
-- migrations/postgres/0009_key_changes.sql: one schema, two dialects.
--
-- Every change to a key, a version or an alias appends a row here in the
-- transaction that makes it (triggers, so no code path can forget it).
-- Each process keeps its cached key views until it reads a change for
-- them (service: the key cache polls rows with seq > its last one at most
-- twice per CacheTTL). seq is dense and in commit order: it is the counter
-- row key_change_counter (as on PostgreSQL), and SQLite has one writer at a
-- time. A reader that finds a gap (pruned rows) drops all.
--
-- A row is one of:
--   key_id only:              the key, a version or their columns changed;
--   alias (and its key_id):   the alias was bound, rebound or removed;
--   encryptions not NULL:     only version's count of GCM encryptions
--                             changed, to that total (every flush).
-- A new column of keys or key_versions that the cached view uses must be
-- added to the UPDATE OF lists below (the lease columns are left out:
-- claiming a key changes nothing a request sees).
CREATE TABLE key_changes (
    seq         INTEGER NOT NULL PRIMARY KEY,
    key_id      TEXT    NOT NULL DEFAULT '',
    alias       TEXT    NOT NULL DEFAULT '',
    version     INTEGER NOT NULL DEFAULT 0,
    encryptions INTEGER
);

CREATE TABLE key_change_counter (
    id  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO key_change_counter (id, seq) VALUES (1, 0);

-- Each INSERT INTO key_changes below is preceded by the counter's step and
-- takes its seq from it.
CREATE TRIGGER keys_inserted AFTER INSERT ON keys
BEGIN
    UPDATE key_change_counter SET seq = seq + 1;
    INSERT INTO key_changes (seq, key_id) SELECT seq, NEW.id FROM key_change_counter;
END;
CREATE TRIGGER keys_updated AFTER UPDATE OF id, description, state, origin, key_spec, key_manager,
    created_at, updated_at, primary_version, rotation_enabled, rotation_interval_seconds,
    last_rotation, next_rotation, deletion_date, tags, rotation_anchor, on_demand_rotations,
    rotation_failure_at, rotation_failure_message ON keys
BEGIN
    UPDATE key_change_counter SET seq = seq + 1;
    INSERT INTO key_changes (seq, key_id) SELECT seq, OLD.id FROM key_change_counter;
    UPDATE key_change_counter SET seq = seq + 1 WHERE NEW.id IS NOT OLD.id;
    INSERT INTO key_changes (seq, key_id) SELECT seq, NEW.id FROM key_change_counter WHERE NEW.id IS NOT OLD.id;
END;
CREATE TRIGGER keys_deleted AFTER DELETE ON keys
BEGIN
    UPDATE key_change_counter SET seq = seq + 1;
    INSERT INTO key_changes (seq, key_id) SELECT seq, OLD.id FROM key_change_counter;
END;

CREATE TRIGGER key_versions_inserted AFTER INSERT ON key_versions
BEGIN
    UPDATE key_change_counter SET seq = seq + 1;
    INSERT INTO key_changes (seq, key_id) SELECT seq, NEW.key_id FROM key_change_counter;
END;
CREATE TRIGGER key_versions_updated AFTER UPDATE OF key_id, version, state, origin, created_at,
    updated_at, destroy_at, token_label ON key_versions
BEGIN
    UPDATE key_change_counter SET seq = seq + 1;
    INSERT INTO key_changes (seq, key_id) SELECT seq, OLD.key_id FROM key_change_counter;
    UPDATE key_change_counter SET seq = seq + 1 WHERE NEW.key_id IS NOT OLD.key_id;
    INSERT INTO key_changes (seq, key_id) SELECT seq, NEW.key_id FROM key_change_counter WHERE NEW.key_id IS NOT OLD.key_id;
END;
CREATE TRIGGER key_versions_counted AFTER UPDATE OF encryptions ON key_versions
BEGIN
    UPDATE key_change_counter SET seq = seq + 1;
    INSERT INTO key_changes (seq, key_id, version, encryptions) SELECT seq, NEW.key_id, NEW.version, NEW.encryptions FROM key_change_counter;
END;
CREATE TRIGGER key_versions_deleted AFTER DELETE ON key_versions
BEGIN
    UPDATE key_change_counter SET seq = seq + 1;
    INSERT INTO key_changes (seq, key_id) SELECT seq, OLD.key_id FROM key_change_counter;
END;

CREATE TRIGGER aliases_inserted AFTER INSERT ON aliases
BEGIN
    UPDATE key_change_counter SET seq = seq + 1;
    INSERT INTO key_changes (seq, key_id, alias) SELECT seq, NEW.key_id, NEW.name FROM key_change_counter;
END;
CREATE TRIGGER aliases_updated AFTER UPDATE ON aliases
BEGIN
    UPDATE key_change_counter SET seq = seq + 1;
    INSERT INTO key_changes (seq, key_id, alias) SELECT seq, OLD.key_id, OLD.name FROM key_change_counter;
    UPDATE key_change_counter SET seq = seq + 1;
    INSERT INTO key_changes (seq, key_id, alias) SELECT seq, NEW.key_id, NEW.name FROM key_change_counter;
END;
CREATE TRIGGER aliases_deleted AFTER DELETE ON aliases
BEGIN
    UPDATE key_change_counter SET seq = seq + 1;
    INSERT INTO key_changes (seq, key_id, alias) SELECT seq, OLD.key_id, OLD.name FROM key_change_counter;
END;
