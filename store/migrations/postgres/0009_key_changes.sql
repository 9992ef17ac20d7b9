-- 0009: the change log of the key ring (PostgreSQL). Keep it in step with
-- migrations/sqlite/0009_key_changes.sql: one schema, two dialects.
--
-- Every change to a key, a version or an alias appends a row here in the
-- transaction that makes it (triggers, so no code path can forget it).
-- Each process keeps its cached key views until it reads a change for
-- them (service: the key cache polls rows with seq > its last one at most
-- twice per CacheTTL). A reader must never see seq n+1 committed while n
-- is still to come, or it would skip n for good: so seq is not a
-- sequence (whose numbers commit in any order) but taken under the lock
-- of the counter row key_change_counter, which deferred triggers take at
-- COMMIT and hold until the transaction ends (log_key_change). Transactions that change keys therefore commit in
-- seq order, and seq is dense. The lock is taken last, when the
-- transaction waits for nothing else, so it cannot deadlock with the key
-- rows' locks (LockKey) or the audit head. A reader that finds a gap
-- (pruned rows) drops all.
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
    seq         BIGINT  NOT NULL PRIMARY KEY,
    key_id      TEXT COLLATE "C" NOT NULL DEFAULT '',
    alias       TEXT COLLATE "C" NOT NULL DEFAULT '',
    version     INTEGER NOT NULL DEFAULT 0,
    encryptions BIGINT
);

CREATE TABLE key_change_counter (
    id  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq BIGINT  NOT NULL
);
INSERT INTO key_change_counter (id, seq) VALUES (1, 0);

-- The counter row is locked, not updated, for each row logged: one
-- transaction logs a row per version it counts (the worker's flush: one
-- per version used since the last), and updating one row N times in a
-- transaction keeps N versions of it, each update slower than the last
-- (measured: 20,000 rows 3.8 s, past KMS_DB_TIMEOUT). Under the lock,
-- which the next writer waits for until this transaction ends, MAX(seq)
-- of the log is the last number given (the newest row is never pruned),
-- so seq stays dense and in commit order. The counter's own seq column is
-- therefore not kept on PostgreSQL (it is on SQLite).
CREATE FUNCTION log_key_change(p_key_id TEXT, p_alias TEXT, p_version INTEGER, p_encryptions BIGINT)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM key_change_counter WHERE id = 1 FOR UPDATE;
    INSERT INTO key_changes (seq, key_id, alias, version, encryptions)
    SELECT COALESCE(MAX(seq), 0) + 1, p_key_id, p_alias, p_version, p_encryptions FROM key_changes;
END $$;

CREATE FUNCTION keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN PERFORM log_key_change(OLD.id, '', 0, NULL); END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.id IS DISTINCT FROM OLD.id) THEN
        PERFORM log_key_change(NEW.id, '', 0, NULL);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION key_versions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN PERFORM log_key_change(OLD.key_id, '', 0, NULL); END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.key_id IS DISTINCT FROM OLD.key_id) THEN
        PERFORM log_key_change(NEW.key_id, '', 0, NULL);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION key_versions_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM log_key_change(NEW.key_id, '', NEW.version, NEW.encryptions);
    RETURN NULL;
END $$;

CREATE FUNCTION aliases_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN PERFORM log_key_change(OLD.key_id, OLD.name, 0, NULL); END IF;
    IF TG_OP <> 'DELETE' THEN PERFORM log_key_change(NEW.key_id, NEW.name, 0, NULL); END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER keys_changed
    AFTER INSERT OR DELETE OR UPDATE OF id, description, state, origin, key_spec, key_manager,
        created_at, updated_at, primary_version, rotation_enabled, rotation_interval_seconds,
        last_rotation, next_rotation, deletion_date, tags, rotation_anchor, on_demand_rotations,
        rotation_failure_at, rotation_failure_message
    ON keys DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keys_changed();
CREATE CONSTRAINT TRIGGER key_versions_changed
    AFTER INSERT OR DELETE OR UPDATE OF key_id, version, state, origin, created_at, updated_at,
        destroy_at, token_label
    ON key_versions DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION key_versions_changed();
CREATE CONSTRAINT TRIGGER key_versions_counted
    AFTER UPDATE OF encryptions
    ON key_versions DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION key_versions_counted();
CREATE CONSTRAINT TRIGGER aliases_changed
    AFTER INSERT OR UPDATE OR DELETE
    ON aliases DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION aliases_changed();
