package store

import (
	"context"
	"path/filepath"
)

// Identity implements service.Store: where this database is, which SQL
// cannot change (the SQLite file's absolute path; PostgreSQL's database
// and schema). The service names the token's audit anchor after it, so
// that installations sharing a token keep apart, and a database emptied by
// SQL is still the installation whose anchor it must match.
func (d *DB) Identity(ctx context.Context) (string, error) {
	if d.dialect == dialectSQLite {
		var seq int
		var name, file string
		if err := d.r.QueryRowContext(ctx, `PRAGMA database_list`).Scan(&seq, &name, &file); err != nil {
			return "", err
		}
		abs, err := filepath.Abs(file)
		if err != nil {
			return "", err
		}
		return "sqlite:" + abs, nil
	}
	var db, schema string
	if err := d.r.QueryRowContext(ctx, `SELECT current_database(), current_schema()`).Scan(&db, &schema); err != nil {
		return "", err
	}
	return "postgres:" + db + "/" + schema, nil
}
