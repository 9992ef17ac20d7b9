package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

// Bearer tokens. Only a MAC of a secret, made in the token, is stored; the
// secret itself never reaches the store.

const (
	tokenColumns   = `id, principal, hash, description, created_at, revoked_at, expires_at, last_used_at`
	sqlInsertToken = `INSERT INTO bearer_tokens (` + tokenColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	sqlGetToken    = `SELECT ` + tokenColumns + ` FROM bearer_tokens WHERE id = ?`
	sqlListTokens  = `SELECT ` + tokenColumns + ` FROM bearer_tokens
		WHERE principal = ? ORDER BY created_at, id`
	// The first revocation stands: revoking again changes nothing.
	sqlRevokeToken = `UPDATE bearer_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`
	sqlTouchToken  = `UPDATE bearer_tokens SET last_used_at = ?
		WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`
	sqlRekeyToken = `UPDATE bearer_tokens SET hash = ? WHERE id = ? AND hash = ?`
)

// tokenRow is a bearer_tokens row as stored.
type tokenRow struct {
	ID          string        `db:"id"`
	Principal   string        `db:"principal"`
	Hash        string        `db:"hash"`
	Description string        `db:"description"`
	CreatedAt   int64         `db:"created_at"`
	RevokedAt   sql.NullInt64 `db:"revoked_at"`
	ExpiresAt   sql.NullInt64 `db:"expires_at"`
	LastUsedAt  sql.NullInt64 `db:"last_used_at"`
}

func (r *tokenRow) token() service.BearerToken {
	return service.BearerToken{ID: r.ID, Principal: r.Principal, Hash: r.Hash,
		Description: r.Description, CreatedAt: fromMicros(r.CreatedAt),
		RevokedAt: fromNullMicros(r.RevokedAt), ExpiresAt: fromNullMicros(r.ExpiresAt),
		LastUsedAt: fromNullMicros(r.LastUsedAt)}
}

// InsertToken adds t. ErrAlreadyExists if its id is taken, or if another
// token has the same hash (the same secret); ErrNotFound if its principal
// does not exist.
func (q accessRows) InsertToken(ctx context.Context, t *service.BearerToken) error {
	_, err := q.exec(ctx, sqlInsertToken, t.ID, t.Principal, t.Hash, t.Description,
		micros(t.CreatedAt), nullMicros(t.RevokedAt), nullMicros(t.ExpiresAt), nullMicros(t.LastUsedAt))
	if violationOf(err) == uniqueViolation && !onPrimaryKey(err) {
		// The message must not quote the hash.
		return alreadyExists("bearer token with the same secret")
	}
	return refErr(err, "insert", tokenEntity(t.ID), principalEntity(t.Principal))
}

// GetToken reads one token, revoked or not; ErrNotFound if there is none
// with that id.
func (q accessRows) GetToken(ctx context.Context, id string) (*service.BearerToken, error) {
	var row tokenRow
	if err := q.get(ctx, &row, sqlGetToken, id); err != nil {
		return nil, dbErr(err, "get", tokenEntity(id), "")
	}
	t := row.token()
	return &t, nil
}

// ListTokens lists a principal's tokens, revoked ones too, oldest first (by
// id among tokens created in the same microsecond); none for an unknown
// principal.
func (q accessRows) ListTokens(ctx context.Context, principal string) ([]service.BearerToken, error) {
	var rows []tokenRow
	if err := q.sel(ctx, &rows, sqlListTokens, principal); err != nil {
		return nil, internal("list tokens of", principalEntity(principal), err)
	}
	ts := make([]service.BearerToken, len(rows))
	for i := range rows {
		ts[i] = rows[i].token()
	}
	return ts, nil
}

// RevokeToken marks a token revoked at `at`. Revoking a revoked token keeps
// the first time and is not an error; ErrNotFound if there is no such token.
func (q accessRows) RevokeToken(ctx context.Context, id string, at time.Time) error {
	res, err := q.exec(ctx, sqlRevokeToken, micros(at), id)
	return affectedOne(res, err, "revoke", tokenEntity(id), "")
}

// TouchToken implements service.AccessQueries. A token that is gone or was
// touched recently is not an error.
func (q accessRows) TouchToken(ctx context.Context, id string, at, notAfter time.Time) error {
	if _, err := q.exec(ctx, sqlTouchToken, micros(at), id, micros(notAfter)); err != nil {
		return internal("touch", tokenEntity(id), err)
	}
	return nil
}

// RekeyToken implements service.AccessQueries.
func (q accessRows) RekeyToken(ctx context.Context, id, oldHash, newHash string) error {
	res, err := q.exec(ctx, sqlRekeyToken, newHash, id, oldHash)
	return affectedOne(res, err, "rekey", tokenEntity(id), "")
}
