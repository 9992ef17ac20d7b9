package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Migrations are plain SQL files, one directory per dialect, named
// NNNN_description.sql and numbered from 1 without gaps. A file is applied
// once, in one transaction with the row recording it; a published file is
// never edited (add the next number instead), and both dialects get the
// same numbers.
//
//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrationFS embed.FS

// migration is one numbered schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// migrationLockID keys the PostgreSQL advisory lock that serialises the
// migrations of replicas starting at once ("hsmkms" in ASCII).
const migrationLockID int64 = 0x68736d6b6d73

// The bookkeeping table is created outside the numbered files so that the
// current version can be read before anything else runs. The DDL is valid
// in both dialects.
const (
	sqlCreateMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		applied_at BIGINT  NOT NULL)`
	sqlSchemaVersion   = `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`
	sqlInsertMigration = `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`
	sqlAdvisoryLock    = `SELECT pg_advisory_xact_lock(?)`
)

// migrations lists the dialect's migrations in version order.
func migrations(d dialect) ([]migration, error) {
	dir := path.Join("migrations", string(d))
	entries, err := fs.ReadDir(migrationFS, dir) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		num, _, _ := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if err != nil || v != len(ms)+1 {
			return nil, fmt.Errorf("store: migration %s/%s: want number %04d", dir, e.Name(), len(ms)+1)
		}
		b, err := fs.ReadFile(migrationFS, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("store: migrations: %w", err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("store: no migrations in %s", dir)
	}
	return ms, nil
}

// migrate brings the schema to the newest version this binary knows, or
// refuses (ErrSchemaTooNew) if the database is ahead of it.
func migrate(ctx context.Context, db *sqlx.DB, d dialect) error {
	ms, err := migrations(d)
	if err != nil {
		return err
	}
	latest := ms[len(ms)-1].version
	for _, m := range ms {
		if err := withTx(ctx, db, func(tx *sqlx.Tx) error {
			return applyMigration(ctx, tx, d, m, latest)
		}); err != nil {
			return err
		}
	}
	return nil
}

// applyMigration applies m unless the database already has it. The version
// is read inside the transaction, after taking the lock: on PostgreSQL the
// advisory lock makes a second replica wait and then see m applied; on
// SQLite the IMMEDIATE transaction does the same.
func applyMigration(ctx context.Context, tx *sqlx.Tx, d dialect, m migration, latest int) error {
	if d == dialectPostgres {
		if _, err := tx.ExecContext(ctx, tx.Rebind(sqlAdvisoryLock), migrationLockID); err != nil {
			return fmt.Errorf("store: migration lock: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, sqlCreateMigrations); err != nil {
		return fmt.Errorf("store: create schema_migrations: %w", err)
	}
	var current int
	if err := tx.GetContext(ctx, &current, sqlSchemaVersion); err != nil {
		return fmt.Errorf("store: read schema version: %w", err)
	}
	switch {
	case current > latest:
		return fmt.Errorf("store: %w: the database is at version %d, this binary knows up to %d; run a newer binary",
			ErrSchemaTooNew, current, latest)
	case current >= m.version:
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("store: migration %s (%s): %w", m.name, d, err)
	}
	if _, err := tx.ExecContext(ctx, tx.Rebind(sqlInsertMigration), m.version, time.Now().UnixMicro()); err != nil {
		return fmt.Errorf("store: record migration %s: %w", m.name, err)
	}
	return nil
}
