package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/hsmkms/hsmkms/service"
)

const (
	sqlInsertVersion = `INSERT INTO key_versions (` + versionColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlGetVersion = `SELECT ` + versionColumns + ` FROM key_versions
		WHERE key_id = ? AND version = ?`
	sqlListVersions = `SELECT ` + versionColumns + ` FROM key_versions
		WHERE key_id = ? ORDER BY version`
	sqlUpdateVersion = `UPDATE key_versions SET state = ?, destroy_at = ?, updated_at = ?
		WHERE key_id = ? AND version = ?`
	// Expanded by sqlx.In to one placeholder per state.
	sqlVersionsInState = `SELECT ` + versionColumns + ` FROM key_versions
		WHERE state IN (?) ORDER BY key_id, version`
	sqlMaxVersion    = `SELECT COALESCE(MAX(version), 0) FROM key_versions WHERE key_id = ?`
	sqlDeleteVersion = `DELETE FROM key_versions WHERE key_id = ? AND version = ?`
)

// InsertVersion adds v; ErrAlreadyExists if the key already has that
// version number, ErrNotFound if the key does not exist.
func (q keyRows) InsertVersion(ctx context.Context, v *service.Version) error {
	_, err := q.exec(ctx, sqlInsertVersion,
		v.KeyID, v.Version, string(v.State), string(v.Origin),
		micros(v.CreatedAt), micros(v.UpdatedAt), nullMicros(v.DestroyAt), v.TokenLabel, v.Encryptions)
	return dbErr(err, "insert", versionEntity(v.KeyID, v.Version), v.KeyID)
}

// sqlAddEncryptions adds to a version's count of GCM encryptions and
// returns the new count (RETURNING: SQLite 3.35+, PostgreSQL).
const sqlAddEncryptions = `UPDATE key_versions SET encryptions = encryptions + ?
	WHERE key_id = ? AND version = ? RETURNING encryptions`

// AddEncryptions adds n[i].Count to each version's count of encryptions
// and sets each n[i].Total to the new count. A version that no longer
// exists is skipped (Total stays 0). Call it in a transaction, for one
// round of statements that commits at once.
func (q keyRows) AddEncryptions(ctx context.Context, n []service.EncryptionCount) error {
	for i := range n {
		var total int64
		err := sqlx.GetContext(ctx, q.w, &total, q.w.Rebind(sqlAddEncryptions), n[i].Count, n[i].KeyID, n[i].Version)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return internal("count encryptions of", versionEntity(n[i].KeyID, n[i].Version), err)
		}
		n[i].Total = total
	}
	return nil
}

// GetVersion reads one version; ErrNotFound if the key has no such version.
func (q keyRows) GetVersion(ctx context.Context, keyID string, version int) (*service.Version, error) {
	var row versionRow
	if err := q.get(ctx, &row, sqlGetVersion, keyID, version); err != nil {
		return nil, dbErr(err, "get", versionEntity(keyID, version), keyID)
	}
	v := row.version()
	return &v, nil
}

// ListVersions returns a key's versions in ascending order; an unknown key
// has none (not an error: GetKey tells whether a key exists).
func (q keyRows) ListVersions(ctx context.Context, keyID string) ([]service.Version, error) {
	var rows []versionRow
	if err := q.sel(ctx, &rows, sqlListVersions, keyID); err != nil {
		return nil, internal("list versions of", keyEntity(keyID), err)
	}
	return versionsOf(rows), nil
}

// UpdateVersion writes v's state, destroy_at and updated_at; ErrNotFound if
// the key has no such version.
func (q keyRows) UpdateVersion(ctx context.Context, v *service.Version) error {
	res, err := q.exec(ctx, sqlUpdateVersion,
		string(v.State), nullMicros(v.DestroyAt), micros(v.UpdatedAt), v.KeyID, v.Version)
	return affectedOne(res, err, "update", versionEntity(v.KeyID, v.Version), v.KeyID)
}

// VersionsInState lists the versions of every key that are in one of states,
// ordered by key id and version. No states: no versions.
func (q keyRows) VersionsInState(ctx context.Context, states ...service.VersionState) ([]service.Version, error) {
	if len(states) == 0 {
		return []service.Version{}, nil
	}
	args := make([]string, len(states))
	for i, s := range states {
		args[i] = string(s)
	}
	query, qargs, err := sqlx.In(sqlVersionsInState, args)
	if err != nil {
		return nil, fmt.Errorf("store: versions in state: %w", err)
	}
	var rows []versionRow
	if err := q.sel(ctx, &rows, query, qargs...); err != nil {
		return nil, internal("list", fmt.Sprintf("versions in %v", states), err)
	}
	return versionsOf(rows), nil
}

// MaxVersion is the highest version number the key has (0: none, or no such
// key). Versions are never deleted except a Pending one being rolled back,
// whose number may then be reused: its token object, if any, has the same
// CKA_ID and is adopted by the retry (docs/architecture.md, "Rotation").
func (q keyRows) MaxVersion(ctx context.Context, keyID string) (int, error) {
	var n int
	if err := q.get(ctx, &n, sqlMaxVersion, keyID); err != nil {
		return 0, internal("max version of", keyEntity(keyID), err)
	}
	return n, nil
}

// DeleteVersion removes one version row; ErrNotFound if there is none.
func (q keyRows) DeleteVersion(ctx context.Context, keyID string, version int) error {
	res, err := q.exec(ctx, sqlDeleteVersion, keyID, version)
	return affectedOne(res, err, "delete", versionEntity(keyID, version), keyID)
}
