package service

import (
	"time"
)

// KeyState is the lifecycle state of a key.
type KeyState string

// Key states, as the API spells them.
const (
	KeyEnabled         KeyState = "Enabled"
	KeyDisabled        KeyState = "Disabled"
	KeyPendingDeletion KeyState = "PendingDeletion"
	KeyPendingImport   KeyState = "PendingImport"
	// KeyDeleted is the tombstone left once the deletion window has passed
	// and the token objects are destroyed.
	KeyDeleted KeyState = "Deleted"
)

// Origin says where a key's material comes from.
type Origin string

// Origins.
const (
	OriginHSM      Origin = "HSM"
	OriginExternal Origin = "EXTERNAL"
)

// KeyManager says who manages a key.
type KeyManager string

// Key managers.
const (
	ManagerCustomer KeyManager = "CUSTOMER"
	ManagerService  KeyManager = "SERVICE"
)

// KeySpecAES256 is the only key spec of a key version.
const KeySpecAES256 = "AES_256"

// VersionState is the state of one key version.
type VersionState string

// Version states. Pending is internal: a version whose token object may or
// may not exist yet (step 1 of the rotation protocol); the API does not show it.
const (
	VersionPending            VersionState = "Pending"
	VersionPrimary            VersionState = "Primary"
	VersionDecryptOnly        VersionState = "DecryptOnly"
	VersionDisabled           VersionState = "Disabled"
	VersionPendingDestruction VersionState = "PendingDestruction"
	VersionDestroyed          VersionState = "Destroyed"
)

// Key is a customer master key: stable id, state and policy. Its material
// lives in its versions' token objects.
type Key struct {
	ID               string        `db:"id"`
	Description      string        `db:"description"`
	State            KeyState      `db:"state"`
	Origin           Origin        `db:"origin"`
	KeySpec          string        `db:"key_spec"`
	Manager          KeyManager    `db:"key_manager"`
	CreatedAt        time.Time     `db:"created_at"`
	UpdatedAt        time.Time     `db:"updated_at"`
	PrimaryVersion   int           `db:"primary_version"` // 0: none yet
	RotationEnabled  bool          `db:"rotation_enabled"`
	RotationInterval time.Duration `db:"rotation_interval"`
	LastRotation     *time.Time    `db:"last_rotation"`
	NextRotation     *time.Time    `db:"next_rotation"`
	DeletionDate     *time.Time    `db:"deletion_date"`
	// RotationAnchor is the last automatic rotation, or when automatic
	// rotation was turned on: NextRotation = anchor + interval. On-demand
	// rotations move neither (AWS KMS semantics).
	RotationAnchor *time.Time `db:"rotation_anchor"`
	// OnDemandRotations counts the key's on-demand rotations, for the
	// lifetime quota (Config.MaxOnDemandRotations).
	OnDemandRotations int `db:"on_demand_rotations"`
	// RotationFailure is the last failed automatic rotation; nil once a
	// rotation succeeds.
	RotationFailure *RotationFailure  `db:"-"`
	Tags            map[string]string `db:"-"`
	// Aliases is filled by DescribeKey/ListKeys; it is not a column.
	Aliases []string `db:"-"`
}

// RotationFailure is a failed automatic rotation as clients see it: when,
// and a message without internals.
type RotationFailure struct {
	At      time.Time
	Message string
}

// MaxVersion is the highest version number: versions are 32-bit signed
// integers in the database and in the ciphertext header.
const MaxVersion = 1<<31 - 1

// Version is one independently generated key object in the token.
type Version struct {
	KeyID      string       `db:"key_id"`
	Version    int          `db:"version"`
	State      VersionState `db:"state"`
	Origin     Origin       `db:"origin"`
	CreatedAt  time.Time    `db:"created_at"`
	UpdatedAt  time.Time    `db:"updated_at"`
	DestroyAt  *time.Time   `db:"destroy_at"`
	TokenLabel string       `db:"token_label"`
	// Encryptions is how many AES-GCM encryptions the version has made, as
	// far as every replica has reported (batched: invocations.go).
	Encryptions int64 `db:"encryptions"`
}

// EncryptionCount is a batch of one version's encryptions for
// Store.AddEncryptions; Total is the version's count after the addition.
type EncryptionCount struct {
	KeyID   string
	Version int
	Count   int64
	Total   int64
}

// KeyChange is one row of the key ring's change log (KeyQueries): a
// change to key KeyID, to the binding of Alias, or, when Counted, only the
// count of encryptions of one Version, now Encryptions.
type KeyChange struct {
	Seq         int64
	KeyID       string
	Alias       string
	Version     int
	Counted     bool
	Encryptions int64
}

// Alias binds alias/NAME to one key.
type Alias struct {
	Name      string    `db:"name"` // with the "alias/" prefix
	KeyID     string    `db:"key_id"`
	CreatedAt time.Time `db:"created_at"`
	UpdatedAt time.Time `db:"updated_at"`
}

// RotationType says why a version was made.
type RotationType string

// Rotation types.
const (
	RotationAutomatic RotationType = "AUTOMATIC"
	RotationOnDemand  RotationType = "ON_DEMAND"
)

// Rotation records one rotation: the version it made primary.
type Rotation struct {
	KeyID   string       `db:"key_id"`
	Version int          `db:"version"`
	At      time.Time    `db:"rotated_at"`
	Type    RotationType `db:"rotation_type"`
}

// Page asks for one page of a list: items after the cursor, at most Limit.
type Page struct {
	After string
	Limit int
}
