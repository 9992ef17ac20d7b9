package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

const (
	sqlInsertKey = `INSERT INTO keys (` + keyColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlGetKey   = `SELECT ` + keyColumns + ` FROM keys WHERE id = ?`
	sqlListKeys = `SELECT ` + keyColumns + ` FROM keys WHERE id > ? ORDER BY id LIMIT ?`
	// Versions, aliases and rotations go too: ON DELETE CASCADE.
	sqlDeleteKey = `DELETE FROM keys WHERE id = ?`
	sqlUpdateKey = `UPDATE keys SET description = ?, state = ?, tags = ?,
		primary_version = ?, rotation_enabled = ?, rotation_interval_seconds = ?,
		last_rotation = ?, next_rotation = ?, deletion_date = ?, updated_at = ?,
		rotation_anchor = ?, on_demand_rotations = ?, rotation_failure_at = ?,
		rotation_failure_message = ?
		WHERE id = ?`
)

// InsertKey adds k; ErrAlreadyExists if its id is taken. The lease starts
// empty.
func (q keyRows) InsertKey(ctx context.Context, k *service.Key) error {
	tags, err := encodeTags(k.Tags)
	if err != nil {
		return err
	}
	failureAt, failureMessage := failureColumns(k.RotationFailure)
	_, err = q.exec(ctx, sqlInsertKey,
		k.ID, k.Description, string(k.State), string(k.Origin), k.KeySpec, string(k.Manager),
		micros(k.CreatedAt), micros(k.UpdatedAt), k.PrimaryVersion, k.RotationEnabled,
		seconds(k), nullMicros(k.LastRotation), nullMicros(k.NextRotation),
		nullMicros(k.DeletionDate), tags,
		nullMicros(k.RotationAnchor), k.OnDemandRotations, failureAt, failureMessage)
	return dbErr(err, "insert", keyEntity(k.ID), k.ID)
}

// seconds is the stored rotation interval: whole seconds, the precision the
// policy works in.
func seconds(k *service.Key) int64 { return int64(k.RotationInterval / time.Second) }

// failureColumns are the stored form of a key's last rotation failure.
func failureColumns(f *service.RotationFailure) (sql.NullInt64, string) {
	if f == nil {
		return sql.NullInt64{}, ""
	}
	return nullMicros(&f.At), f.Message
}

// GetKey reads one key; ErrNotFound if there is none with that id. Aliases
// stays nil: it is not a column (see AliasNames).
func (q keyRows) GetKey(ctx context.Context, id string) (*service.Key, error) {
	var row keyRow
	if err := q.get(ctx, &row, sqlGetKey, id); err != nil {
		return nil, dbErr(err, "get", keyEntity(id), id)
	}
	return row.key()
}

// ListKeys returns up to p.Limit keys (all if p.Limit <= 0) ordered by id,
// with id > p.After. The next page starts after the last id returned.
func (q keyRows) ListKeys(ctx context.Context, p service.Page) ([]service.Key, error) {
	var rows []keyRow
	if err := q.sel(ctx, &rows, sqlListKeys, p.After, limitArg(p.Limit)); err != nil {
		return nil, internal("list", "keys", err)
	}
	keys := make([]service.Key, len(rows))
	for i := range rows {
		k, err := rows[i].key()
		if err != nil {
			return nil, err
		}
		keys[i] = *k
	}
	return keys, nil
}

// DeleteKey removes a key with its versions, rotations and aliases in one
// statement; ErrNotFound if there is no such key.
func (q keyRows) DeleteKey(ctx context.Context, id string) error {
	res, err := q.exec(ctx, sqlDeleteKey, id)
	return affectedOne(res, err, "delete", keyEntity(id), id)
}

// UpdateKey writes the mutable columns of k (not id, origin, key spec,
// manager, created_at, nor the lease); ErrNotFound if there is no such key.
func (q keyRows) UpdateKey(ctx context.Context, k *service.Key) error {
	tags, err := encodeTags(k.Tags)
	if err != nil {
		return err
	}
	failureAt, failureMessage := failureColumns(k.RotationFailure)
	res, err := q.exec(ctx, sqlUpdateKey,
		k.Description, string(k.State), tags, k.PrimaryVersion, k.RotationEnabled, seconds(k),
		nullMicros(k.LastRotation), nullMicros(k.NextRotation), nullMicros(k.DeletionDate),
		micros(k.UpdatedAt), nullMicros(k.RotationAnchor), k.OnDemandRotations, failureAt, failureMessage,
		k.ID)
	return affectedOne(res, err, "update", keyEntity(k.ID), k.ID)
}

// LockKey reads a key and, on PostgreSQL, locks its row until the
// transaction ends (SELECT ... FOR UPDATE), so that two replicas changing one
// key serialise instead of overwriting each other. SQLite write transactions
// are already serialised (BEGIN IMMEDIATE), so there it is a plain read.
func (q keyRows) LockKey(ctx context.Context, id string) (*service.Key, error) {
	query := sqlGetKey
	if q.w.DriverName() == "pgx" {
		query += " FOR UPDATE"
	}
	var row keyRow
	if err := q.getW(ctx, &row, query, id); err != nil {
		return nil, dbErr(err, "get", keyEntity(id), id)
	}
	return row.key()
}
