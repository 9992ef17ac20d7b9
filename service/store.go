package service

import (
	"context"
	"time"
)

// Store is the metadata the service keeps beside the token: keys, versions,
// aliases, rotations. The store package implements it on SQLite and
// PostgreSQL. Every method returns ErrNotFound when a named row is missing
// and ErrAlreadyExists on a unique violation.
type Store interface {
	Queries
	// InTx runs fn in one transaction. An error from fn, or a panic, rolls
	// back; otherwise it commits. fn must not call the token: token calls
	// are slow and happen outside transactions.
	InTx(ctx context.Context, fn func(q Queries) error) error
	// WithLock runs fn under a named lock that every replica sharing the
	// database respects, outside any transaction (fn may call the token).
	WithLock(ctx context.Context, name string, fn func() error) error
	// Ping proves the database answers.
	Ping(ctx context.Context) error
	// Identity names where the database is, in a way its contents cannot
	// change (a file's path, a database's name): the audit anchor's name.
	Identity(ctx context.Context) (string, error)
	Close() error
}

// Queries are the reads and writes, usable inside and outside a
// transaction: every part's queries together.
type Queries interface {
	KeyQueries
	ScheduleQueries
	AccessQueries
	AuditQueries
	AccessKeyQueries
	ImportQueries
	LeaseQueries
	EncryptionQueries
	// MaxVersion is the highest version number a key has ever had (0: none).
	MaxVersion(ctx context.Context, keyID string) (int, error)
}

// KeyQueries are the reads and writes of the key ring: keys, versions,
// aliases and rotations.
type KeyQueries interface {
	InsertKey(ctx context.Context, k *Key) error
	GetKey(ctx context.Context, id string) (*Key, error)
	// LockKey is GetKey that, inside a transaction, locks the key's row
	// until the transaction ends: read-modify-write of a key must use it, so
	// replicas changing one key never lose each other's updates.
	LockKey(ctx context.Context, id string) (*Key, error)
	// ListKeys returns keys ordered by id, with id > p.After.
	ListKeys(ctx context.Context, p Page) ([]Key, error)
	// DeleteKey removes a key row and its versions, rotations and aliases.
	// Only for rolling back a key whose creation failed (state Creating);
	// deleted keys otherwise stay as tombstones.
	DeleteKey(ctx context.Context, id string) error
	// UpdateKey writes every mutable column of k (description, state, tags,
	// primary version, rotation fields, deletion date, updated_at).
	UpdateKey(ctx context.Context, k *Key) error

	InsertVersion(ctx context.Context, v *Version) error
	GetVersion(ctx context.Context, keyID string, version int) (*Version, error)
	// ListVersions returns a key's versions in ascending order.
	ListVersions(ctx context.Context, keyID string) ([]Version, error)
	// UpdateVersion writes state, destroy_at and updated_at.
	UpdateVersion(ctx context.Context, v *Version) error
	// DeleteVersion removes a version row (only for rolling back a Pending row).
	DeleteVersion(ctx context.Context, keyID string, version int) error

	InsertAlias(ctx context.Context, a *Alias) error
	GetAlias(ctx context.Context, name string) (*Alias, error)
	// UpdateAlias rebinds a.Name to a.KeyID and sets updated_at.
	UpdateAlias(ctx context.Context, a *Alias) error
	DeleteAlias(ctx context.Context, name string) error
	// ListAliases returns aliases ordered by name with name > p.After, only
	// those of keyID when it is not empty.
	ListAliases(ctx context.Context, keyID string, p Page) ([]Alias, error)
	// AliasNames maps each of keyIDs to its alias names, sorted.
	AliasNames(ctx context.Context, keyIDs []string) (map[string][]string, error)
	// DeleteAliasesOfKey removes every alias of a key (the key was deleted).
	DeleteAliasesOfKey(ctx context.Context, keyID string) error

	// KeyChangesAfter returns up to limit rows of the change log with seq
	// > after, in seq order. Every change to a key, version or alias adds
	// rows in its transaction; seq is dense and in commit order: a reader
	// that has seen seq n has seen every change before it.
	KeyChangesAfter(ctx context.Context, after int64, limit int) ([]KeyChange, error)
	// LastKeyChange is the highest seq of the change log (0: none).
	LastKeyChange(ctx context.Context) (int64, error)
	// PruneKeyChanges deletes all but the newest keep rows of the log.
	PruneKeyChanges(ctx context.Context, keep int64) error

	InsertRotation(ctx context.Context, r *Rotation) error
	// ListRotations returns a key's rotations ordered by version, with
	// version > afterVersion.
	ListRotations(ctx context.Context, keyID string, afterVersion, limit int) ([]Rotation, error)
}

// ScheduleQueries find the work of the worker and the reconciler, and count
// keys for metrics.
type ScheduleQueries interface {
	// VersionsInState lists versions of any key in one of the states
	// (the reconciler's view), ordered by key id and version.
	VersionsInState(ctx context.Context, states ...VersionState) ([]Version, error)
	// DueRotations lists ids of Enabled, HSM-origin keys with automatic
	// rotation on and next_rotation <= now.
	DueRotations(ctx context.Context, now time.Time, limit int) ([]string, error)
	// DueDeletions lists ids of PendingDeletion keys with deletion_date <= now.
	DueDeletions(ctx context.Context, now time.Time, limit int) ([]string, error)
	// DueDestructions lists versions in PendingDestruction with destroy_at <= now.
	DueDestructions(ctx context.Context, now time.Time, limit int) ([]Version, error)
	// CountKeysByState counts keys per state (metrics); absent states have none.
	CountKeysByState(ctx context.Context) (map[KeyState]int, error)
}

// EncryptionQueries add up the versions' counts of AES-GCM encryptions
// (the worker's flush, invocations.go).
type EncryptionQueries interface {
	// AddEncryptions adds each count to its version's count of AES-GCM
	// encryptions and sets Total to the new count (0: no such version).
	AddEncryptions(ctx context.Context, n []EncryptionCount) error
}

// Clock is the time source; tests inject a fake one to move time instead of
// sleeping.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real clock, in UTC.
type SystemClock struct{}

// Now returns the current time in UTC.
func (SystemClock) Now() time.Time { return time.Now().UTC() }
