package store

import (
	"context"
	"fmt"
	"slices"

	"github.com/jmoiron/sqlx"

	"github.com/hsmkms/hsmkms/service"
)

const (
	aliasColumns   = `name, key_id, created_at, updated_at`
	sqlInsertAlias = `INSERT INTO aliases (` + aliasColumns + `) VALUES (?, ?, ?, ?)`
	sqlGetAlias    = `SELECT ` + aliasColumns + ` FROM aliases WHERE name = ?`
	sqlUpdateAlias = `UPDATE aliases SET key_id = ?, updated_at = ? WHERE name = ?`
	sqlDeleteAlias = `DELETE FROM aliases WHERE name = ?`
	sqlListAliases = `SELECT ` + aliasColumns + ` FROM aliases
		WHERE name > ? ORDER BY name LIMIT ?`
	// A second query rather than "(? = '' OR key_id = ?)": a cached
	// PostgreSQL plan for the combined form could not use the key_id index.
	sqlListAliasesOfKey = `SELECT ` + aliasColumns + ` FROM aliases
		WHERE key_id = ? AND name > ? ORDER BY name LIMIT ?`
	// Expanded by sqlx.In to one placeholder per key id.
	sqlAliasNames = `SELECT key_id, name FROM aliases
		WHERE key_id IN (?) ORDER BY key_id, name`
	sqlDeleteAliasesOfKey = `DELETE FROM aliases WHERE key_id = ?`
)

// aliasNamesBatch bounds the ids per IN list, far below the parameter limits
// (32766 in SQLite, 65535 in PostgreSQL).
const aliasNamesBatch = 500

// aliasRow is an aliases row as stored.
type aliasRow struct {
	Name      string `db:"name"`
	KeyID     string `db:"key_id"`
	CreatedAt int64  `db:"created_at"`
	UpdatedAt int64  `db:"updated_at"`
}

func (r *aliasRow) alias() service.Alias {
	return service.Alias{Name: r.Name, KeyID: r.KeyID,
		CreatedAt: fromMicros(r.CreatedAt), UpdatedAt: fromMicros(r.UpdatedAt)}
}

// InsertAlias adds a; ErrAlreadyExists if the name is taken, ErrNotFound if
// a.KeyID does not exist.
func (q keyRows) InsertAlias(ctx context.Context, a *service.Alias) error {
	_, err := q.exec(ctx, sqlInsertAlias, a.Name, a.KeyID, micros(a.CreatedAt), micros(a.UpdatedAt))
	return dbErr(err, "insert", aliasEntity(a.Name), a.KeyID)
}

// GetAlias reads one alias; ErrNotFound if there is none by that name.
func (q keyRows) GetAlias(ctx context.Context, name string) (*service.Alias, error) {
	var row aliasRow
	if err := q.get(ctx, &row, sqlGetAlias, name); err != nil {
		return nil, dbErr(err, "get", aliasEntity(name), "")
	}
	a := row.alias()
	return &a, nil
}

// UpdateAlias rebinds a.Name to a.KeyID and sets updated_at (created_at is
// kept); ErrNotFound if the alias or the key does not exist.
func (q keyRows) UpdateAlias(ctx context.Context, a *service.Alias) error {
	res, err := q.exec(ctx, sqlUpdateAlias, a.KeyID, micros(a.UpdatedAt), a.Name)
	return affectedOne(res, err, "update", aliasEntity(a.Name), a.KeyID)
}

// DeleteAlias removes one alias; ErrNotFound if there is none by that name.
func (q keyRows) DeleteAlias(ctx context.Context, name string) error {
	res, err := q.exec(ctx, sqlDeleteAlias, name)
	return affectedOne(res, err, "delete", aliasEntity(name), "")
}

// ListAliases returns up to p.Limit aliases (all if p.Limit <= 0) ordered by
// name with name > p.After, only those of keyID when it is not empty.
func (q keyRows) ListAliases(ctx context.Context, keyID string, p service.Page) ([]service.Alias, error) {
	var rows []aliasRow
	var err error
	if keyID == "" {
		err = q.sel(ctx, &rows, sqlListAliases, p.After, limitArg(p.Limit))
	} else {
		err = q.sel(ctx, &rows, sqlListAliasesOfKey, keyID, p.After, limitArg(p.Limit))
	}
	if err != nil {
		return nil, internal("list", "aliases", err)
	}
	as := make([]service.Alias, len(rows))
	for i := range rows {
		as[i] = rows[i].alias()
	}
	return as, nil
}

// AliasNames maps each of keyIDs that has aliases to its alias names, sorted
// bytewise; a key without aliases is absent from the map (its entry reads
// as a nil slice). The map is never nil.
func (q keyRows) AliasNames(ctx context.Context, keyIDs []string) (map[string][]string, error) {
	names := make(map[string][]string)
	for batch := range slices.Chunk(keyIDs, aliasNamesBatch) {
		query, args, err := sqlx.In(sqlAliasNames, batch)
		if err != nil {
			return nil, fmt.Errorf("store: alias names: %w", err)
		}
		var rows []struct {
			KeyID string `db:"key_id"`
			Name  string `db:"name"`
		}
		if err := q.sel(ctx, &rows, query, args...); err != nil {
			return nil, internal("list", "alias names", err)
		}
		for _, r := range rows {
			names[r.KeyID] = append(names[r.KeyID], r.Name)
		}
	}
	return names, nil
}

// DeleteAliasesOfKey removes every alias of keyID; none is not an error.
func (q keyRows) DeleteAliasesOfKey(ctx context.Context, keyID string) error {
	if _, err := q.exec(ctx, sqlDeleteAliasesOfKey, keyID); err != nil {
		return internal("delete aliases of", keyEntity(keyID), err)
	}
	return nil
}
