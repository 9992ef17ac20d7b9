package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

// Bring your own key: import parameters (only the hash of an import token
// is kept) and what is known of imported material (its key check value).

const (
	importColumns      = `token_hash, key_id, wrapping_id, algorithm, created_at, expires_at, used_at`
	sqlInsertImport    = `INSERT INTO import_params (` + importColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlGetImport       = `SELECT ` + importColumns + ` FROM import_params WHERE token_hash = ?`
	sqlUseImport       = `UPDATE import_params SET used_at = ? WHERE token_hash = ? AND used_at IS NULL`
	sqlExpiredImports  = `SELECT ` + importColumns + ` FROM import_params WHERE expires_at <= ? ORDER BY expires_at LIMIT ?`
	sqlDeleteImport    = `DELETE FROM import_params WHERE token_hash = ?`
	materialColumns    = `key_id, kcv, imported_at, valid_to`
	sqlGetMaterial     = `SELECT ` + materialColumns + ` FROM key_material WHERE key_id = ?`
	sqlPutMaterial     = `INSERT INTO key_material (` + materialColumns + `) VALUES (?, ?, ?, ?) ON CONFLICT (key_id) DO UPDATE SET kcv = excluded.kcv, imported_at = excluded.imported_at, valid_to = excluded.valid_to`
	sqlExpiredMaterial = `SELECT m.key_id FROM key_material m JOIN keys k ON k.id = m.key_id
		WHERE m.valid_to IS NOT NULL AND m.valid_to <= ? AND k.state IN ('Enabled', 'Disabled') ORDER BY m.valid_to LIMIT ?`
)

type importRow struct {
	TokenHash  string        `db:"token_hash"`
	KeyID      string        `db:"key_id"`
	WrappingID string        `db:"wrapping_id"`
	Algorithm  string        `db:"algorithm"`
	CreatedAt  int64         `db:"created_at"`
	ExpiresAt  int64         `db:"expires_at"`
	UsedAt     sql.NullInt64 `db:"used_at"`
}

func (r *importRow) params() service.ImportParams {
	return service.ImportParams{TokenHash: r.TokenHash, KeyID: r.KeyID, WrappingID: r.WrappingID, Algorithm: r.Algorithm,
		CreatedAt: fromMicros(r.CreatedAt), ExpiresAt: fromMicros(r.ExpiresAt), UsedAt: fromNullMicros(r.UsedAt)}
}

func importEntity() string { return "import parameters" }

// InsertImportParams adds p; ErrNotFound if its key does not exist.
func (q importRows) InsertImportParams(ctx context.Context, p *service.ImportParams) error {
	_, err := q.exec(ctx, sqlInsertImport, p.TokenHash, p.KeyID, p.WrappingID, p.Algorithm,
		micros(p.CreatedAt), micros(p.ExpiresAt), nullMicros(p.UsedAt))
	return refErr(err, "insert", importEntity(), keyEntity(p.KeyID))
}

// GetImportParams reads parameters by token hash; ErrNotFound if none.
func (q importRows) GetImportParams(ctx context.Context, tokenHash string) (*service.ImportParams, error) {
	var row importRow
	if err := q.get(ctx, &row, sqlGetImport, tokenHash); err != nil {
		return nil, dbErr(err, "get", importEntity(), "")
	}
	p := row.params()
	return &p, nil
}

// UseImportParams marks parameters used, once.
func (q importRows) UseImportParams(ctx context.Context, tokenHash string, at time.Time) error {
	res, err := q.exec(ctx, sqlUseImport, micros(at), tokenHash)
	if err != nil {
		return dbErr(err, "use", importEntity(), "")
	}
	if n, err := res.RowsAffected(); err != nil {
		return internal("use", importEntity(), err)
	} else if n == 0 {
		return invalidState("the import token was used already")
	}
	return nil
}

// ExpiredImportParams lists parameters that expired at now.
func (q importRows) ExpiredImportParams(ctx context.Context, now time.Time, limit int) ([]service.ImportParams, error) {
	var rows []importRow
	if err := q.sel(ctx, &rows, sqlExpiredImports, micros(now), limitArg(limit)); err != nil {
		return nil, internal("list", importEntity(), err)
	}
	out := make([]service.ImportParams, len(rows))
	for i := range rows {
		out[i] = rows[i].params()
	}
	return out, nil
}

// DeleteImportParams removes parameters (missing is not an error).
func (q importRows) DeleteImportParams(ctx context.Context, tokenHash string) error {
	_, err := q.exec(ctx, sqlDeleteImport, tokenHash)
	return dbErr(err, "delete", importEntity(), "")
}

type materialRow struct {
	KeyID      string        `db:"key_id"`
	KCV        string        `db:"kcv"`
	ImportedAt int64         `db:"imported_at"`
	ValidTo    sql.NullInt64 `db:"valid_to"`
}

// GetKeyMaterial reads a key's material record; ErrNotFound if none.
func (q importRows) GetKeyMaterial(ctx context.Context, keyID string) (*service.KeyMaterial, error) {
	var row materialRow
	if err := q.get(ctx, &row, sqlGetMaterial, keyID); err != nil {
		return nil, dbErr(err, "get", "key material of "+keyEntity(keyID), keyID)
	}
	return &service.KeyMaterial{KeyID: row.KeyID, KCV: row.KCV, ImportedAt: fromMicros(row.ImportedAt),
		ValidTo: fromNullMicros(row.ValidTo)}, nil
}

// PutKeyMaterial inserts or replaces a key's material record.
func (q importRows) PutKeyMaterial(ctx context.Context, m *service.KeyMaterial) error {
	_, err := q.exec(ctx, sqlPutMaterial, m.KeyID, m.KCV, micros(m.ImportedAt), nullMicros(m.ValidTo))
	return refErr(err, "put", "key material", keyEntity(m.KeyID))
}

// ExpiredMaterial lists keys whose imported material has expired.
func (q importRows) ExpiredMaterial(ctx context.Context, now time.Time, limit int) ([]string, error) {
	var ids []string
	if err := q.sel(ctx, &ids, sqlExpiredMaterial, micros(now), limitArg(limit)); err != nil {
		return nil, internal("list", "expired key material", err)
	}
	return ids, nil
}
