package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

// AWS access keys. Only the id and a random nonce are stored; the secret is
// derived from them in the token and never reaches the store.

const (
	accessKeyColumns   = `id, principal, nonce, created_at, last_used_at`
	sqlInsertAccessKey = `INSERT INTO access_keys (` + accessKeyColumns + `) VALUES (?, ?, ?, ?, ?)`
	sqlGetAccessKey    = `SELECT ` + accessKeyColumns + ` FROM access_keys WHERE id = ?`
	sqlListAccessKeys  = `SELECT ` + accessKeyColumns + ` FROM access_keys
		WHERE principal = ? ORDER BY created_at, id`
	sqlDeleteAccessKey = `DELETE FROM access_keys WHERE id = ?`
	sqlTouchAccessKey  = `UPDATE access_keys SET last_used_at = ?
		WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`
)

type accessKeyRow struct {
	ID         string        `db:"id"`
	Principal  string        `db:"principal"`
	Nonce      string        `db:"nonce"`
	CreatedAt  int64         `db:"created_at"`
	LastUsedAt sql.NullInt64 `db:"last_used_at"`
}

func (r *accessKeyRow) accessKey() service.AccessKey {
	return service.AccessKey{ID: r.ID, Principal: r.Principal, Nonce: r.Nonce,
		CreatedAt: fromMicros(r.CreatedAt), LastUsedAt: fromNullMicros(r.LastUsedAt)}
}

func accessKeyEntity(id string) string { return fmt.Sprintf("access key %q", id) }

// InsertAccessKey implements service.AccessKeyQueries.
func (q accessRows) InsertAccessKey(ctx context.Context, k *service.AccessKey) error {
	_, err := q.exec(ctx, sqlInsertAccessKey, k.ID, k.Principal, k.Nonce, micros(k.CreatedAt), nullMicros(k.LastUsedAt))
	return refErr(err, "insert", accessKeyEntity(k.ID), principalEntity(k.Principal))
}

// GetAccessKey implements service.AccessKeyQueries.
func (q accessRows) GetAccessKey(ctx context.Context, id string) (*service.AccessKey, error) {
	var row accessKeyRow
	if err := q.get(ctx, &row, sqlGetAccessKey, id); err != nil {
		return nil, refErr(err, "get", accessKeyEntity(id), "")
	}
	k := row.accessKey()
	return &k, nil
}

// ListAccessKeys implements service.AccessKeyQueries; none for an unknown
// principal.
func (q accessRows) ListAccessKeys(ctx context.Context, principal string) ([]service.AccessKey, error) {
	var rows []accessKeyRow
	if err := q.sel(ctx, &rows, sqlListAccessKeys, principal); err != nil {
		return nil, internal("list access keys of", principalEntity(principal), err)
	}
	out := make([]service.AccessKey, len(rows))
	for i := range rows {
		out[i] = rows[i].accessKey()
	}
	return out, nil
}

// DeleteAccessKey implements service.AccessKeyQueries.
func (q accessRows) DeleteAccessKey(ctx context.Context, id string) error {
	res, err := q.exec(ctx, sqlDeleteAccessKey, id)
	return affectedOne(res, err, "delete", accessKeyEntity(id), "")
}

// TouchAccessKey implements service.AccessKeyQueries. A key that is gone
// or was touched recently is not an error.
func (q accessRows) TouchAccessKey(ctx context.Context, id string, at, notAfter time.Time) error {
	_, err := q.exec(ctx, sqlTouchAccessKey, micros(at), id, micros(notAfter))
	if err != nil {
		return internal("touch", accessKeyEntity(id), err)
	}
	return nil
}
