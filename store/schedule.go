package store

import (
	"context"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

// Rotation history, and the background workers' queries: what is due, and
// the lease that makes one worker, across replicas, do each due job.

const (
	sqlDueRotations = `SELECT id FROM keys
		WHERE state = ? AND rotation_enabled = ? AND origin = ? AND next_rotation <= ?
		ORDER BY next_rotation, id LIMIT ?`
	sqlDueDeletions = `SELECT id FROM keys
		WHERE state = ? AND deletion_date <= ?
		ORDER BY deletion_date, id LIMIT ?`
	sqlDueDestructions = `SELECT ` + versionColumns + ` FROM key_versions
		WHERE state = ? AND destroy_at <= ?
		ORDER BY destroy_at, key_id, version LIMIT ?`
	// One statement decides the claim: the database's row lock makes
	// concurrent claims serial, and PostgreSQL (READ COMMITTED) re-checks
	// the WHERE clause on the row a winning claim left, so a loser matches
	// no row. SQLite runs one writer at a time.
	sqlClaimKey = `UPDATE keys SET lease_owner = ?, lease_until = ?
		WHERE id = ? AND (lease_until IS NULL OR lease_until <= ? OR lease_owner = ?)`
	sqlKeyExists  = `SELECT COUNT(*) FROM keys WHERE id = ?`
	sqlReleaseKey = `UPDATE keys SET lease_owner = NULL, lease_until = NULL
		WHERE id = ? AND lease_owner = ?`
)

// DueRotations lists up to limit (all if limit <= 0) ids of Enabled,
// HSM-origin keys with automatic rotation on and next_rotation <= now, the
// most overdue first. Times compare at microsecond precision.
func (q scheduleRows) DueRotations(ctx context.Context, now time.Time, limit int) ([]string, error) {
	ids := []string{}
	if err := q.sel(ctx, &ids, sqlDueRotations, string(service.KeyEnabled), true,
		string(service.OriginHSM), micros(now), limitArg(limit)); err != nil {
		return nil, internal("list", "due rotations", err)
	}
	return ids, nil
}

// DueDeletions lists up to limit (all if limit <= 0) ids of PendingDeletion
// keys with deletion_date <= now, the most overdue first.
func (q scheduleRows) DueDeletions(ctx context.Context, now time.Time, limit int) ([]string, error) {
	ids := []string{}
	if err := q.sel(ctx, &ids, sqlDueDeletions, string(service.KeyPendingDeletion),
		micros(now), limitArg(limit)); err != nil {
		return nil, internal("list", "due deletions", err)
	}
	return ids, nil
}

// DueDestructions lists up to limit (all if limit <= 0) versions in
// PendingDestruction with destroy_at <= now, the most overdue first.
func (q scheduleRows) DueDestructions(ctx context.Context, now time.Time, limit int) ([]service.Version, error) {
	var rows []versionRow
	if err := q.sel(ctx, &rows, sqlDueDestructions, string(service.VersionPendingDestruction),
		micros(now), limitArg(limit)); err != nil {
		return nil, internal("list", "due destructions", err)
	}
	return versionsOf(rows), nil
}

// ClaimKey takes the key's lease for owner until `until`, in one atomic
// UPDATE. It reports true when the key had no lease, the lease expired
// (lease_until <= now) or owner held it already (the lease is then
// extended); false when another owner holds an unexpired lease; and
// ErrNotFound when there is no such key. now and until are compared at
// microsecond precision; all replicas should use the same clock source.
func (q scheduleRows) ClaimKey(ctx context.Context, keyID, owner string, now, until time.Time) (bool, error) {
	res, err := q.exec(ctx, sqlClaimKey, owner, micros(until), keyID, micros(now), owner)
	if err != nil {
		return false, internal("claim", keyEntity(keyID), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, internal("claim", keyEntity(keyID), err)
	}
	if n == 1 {
		return true, nil
	}
	// Lost, or no such key: only the error differs, so a second look is
	// enough; it cannot turn a loss into a win.
	var count int
	if err := q.get(ctx, &count, sqlKeyExists, keyID); err != nil {
		return false, internal("claim", keyEntity(keyID), err)
	}
	if count == 0 {
		return false, notFound(keyEntity(keyID))
	}
	return false, nil
}

// ReleaseKey drops owner's lease on the key. It is a no-op when owner does
// not hold the lease (another worker took it over after it expired) or the
// key does not exist: a release must never take a lease from its new owner.
func (q scheduleRows) ReleaseKey(ctx context.Context, keyID, owner string) error {
	if _, err := q.exec(ctx, sqlReleaseKey, keyID, owner); err != nil {
		return internal("release", keyEntity(keyID), err)
	}
	return nil
}

// Rotation history: one row per version made primary.

const (
	sqlInsertRotation = `INSERT INTO rotations (key_id, version, rotated_at, rotation_type)
		VALUES (?, ?, ?, ?)`
	sqlListRotations = `SELECT key_id, version, rotated_at, rotation_type FROM rotations
		WHERE key_id = ? AND version > ? ORDER BY version LIMIT ?`
)

// rotationRow is a rotations row as stored.
type rotationRow struct {
	KeyID   string `db:"key_id"`
	Version int    `db:"version"`
	At      int64  `db:"rotated_at"`
	Type    string `db:"rotation_type"`
}

// InsertRotation records that r.Version became primary; ErrAlreadyExists if
// that version was recorded already, ErrNotFound if the key does not exist.
func (q scheduleRows) InsertRotation(ctx context.Context, r *service.Rotation) error {
	_, err := q.exec(ctx, sqlInsertRotation, r.KeyID, r.Version, micros(r.At), string(r.Type))
	return dbErr(err, "insert", rotationEntity(r.KeyID, r.Version), r.KeyID)
}

// ListRotations returns up to limit (all if limit <= 0) of a key's
// rotations ordered by version, with version > afterVersion. An unknown key
// has none.
func (q scheduleRows) ListRotations(ctx context.Context, keyID string, afterVersion, limit int) ([]service.Rotation, error) {
	var rows []rotationRow
	if err := q.sel(ctx, &rows, sqlListRotations, keyID, afterVersion, limitArg(limit)); err != nil {
		return nil, internal("list rotations of", keyEntity(keyID), err)
	}
	rs := make([]service.Rotation, len(rows))
	for i, r := range rows {
		rs[i] = service.Rotation{KeyID: r.KeyID, Version: r.Version,
			At: fromMicros(r.At), Type: service.RotationType(r.Type)}
	}
	return rs, nil
}
