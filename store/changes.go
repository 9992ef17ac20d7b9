package store

import (
	"context"
	"database/sql"

	"github.com/hsmkms/hsmkms/service"
)

// The change log of the key ring (migration 0009): triggers append a row
// for every change to keys, key_versions and aliases in the changing
// transaction; the service's key cache reads it.
const (
	sqlKeyChangesAfter = `SELECT seq, key_id, alias, version, encryptions FROM key_changes
		WHERE seq > ? ORDER BY seq LIMIT ?`
	sqlLastKeyChange = `SELECT COALESCE(MAX(seq), 0) FROM key_changes`
	// The newest row always stays, so that the highest seq is never lost
	// (a reader then tells "nothing new" from "pruned").
	sqlPruneKeyChanges = `DELETE FROM key_changes WHERE seq <= (SELECT MAX(seq) FROM key_changes) - ?`
)

type keyChangeRow struct {
	Seq         int64         `db:"seq"`
	KeyID       string        `db:"key_id"`
	Alias       string        `db:"alias"`
	Version     int           `db:"version"`
	Encryptions sql.NullInt64 `db:"encryptions"`
}

// KeyChangesAfter returns up to limit changes with seq > after, in seq
// order.
func (q keyRows) KeyChangesAfter(ctx context.Context, after int64, limit int) ([]service.KeyChange, error) {
	var rows []keyChangeRow
	if err := q.sel(ctx, &rows, sqlKeyChangesAfter, after, limitArg(limit)); err != nil {
		return nil, internal("list", "key changes", err)
	}
	out := make([]service.KeyChange, len(rows))
	for i, r := range rows {
		out[i] = service.KeyChange{Seq: r.Seq, KeyID: r.KeyID, Alias: r.Alias, Version: r.Version,
			Counted: r.Encryptions.Valid, Encryptions: r.Encryptions.Int64}
	}
	return out, nil
}

// LastKeyChange returns the highest seq of the change log (0: none yet).
func (q keyRows) LastKeyChange(ctx context.Context) (int64, error) {
	var n int64
	if err := q.get(ctx, &n, sqlLastKeyChange); err != nil {
		return 0, internal("read", "key changes", err)
	}
	return n, nil
}

// PruneKeyChanges deletes all but the newest keep rows (keep >= 1).
func (q keyRows) PruneKeyChanges(ctx context.Context, keep int64) error {
	if _, err := q.exec(ctx, sqlPruneKeyChanges, max(keep, 1)); err != nil {
		return internal("prune", "key changes", err)
	}
	return nil
}
