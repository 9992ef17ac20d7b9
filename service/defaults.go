package service

import "time"

// Defaults of the service, in one place: Config and WorkerConfig apply them
// to zero fields, and kmsd's flag help texts print them.
const (
	DefaultCacheTTL = 500 * time.Millisecond
	// MaxKeyViewAge bounds how long a cached key view or alias lives
	// without a change seen for it: every MaxKeyViewAge the key cache drops
	// all and reads the change log's head again. Changes arrive through
	// the log within CacheTTL; this bounds what a log that lost rows
	// already read (a PostgreSQL failover to a standby behind the primary)
	// could hide, where the log alone would hide it until the key's next
	// change.
	MaxKeyViewAge            = 5 * time.Minute
	DefaultAuthCacheTTL      = 500 * time.Millisecond
	DefaultMaxVersionsPerKey = 100
	// DefaultMaxOnDemandRotations is each key's lifetime quota of
	// on-demand rotations (AWS KMS's is 10 too).
	DefaultMaxOnDemandRotations = 10
	DefaultMinRotationInterval  = 7 * 24 * time.Hour
	DefaultMaxRotationInterval  = 2560 * 24 * time.Hour
	DefaultRotationInterval     = 365 * 24 * time.Hour
	DefaultPendingGrace         = 5 * time.Minute
	DefaultLeaseDuration        = time.Minute
	DefaultWorkerTick           = 10 * time.Second
	DefaultReconcileEvery       = 5 * time.Minute
	DefaultSealEvery            = time.Second
	// DefaultDBTimeout bounds one database step of a request (a cache
	// load, a management transaction, an audit group commit): a database
	// that hangs (a SIGSTOPped PostgreSQL answers neither with data nor
	// with an error) then costs a request a few of these at most,
	// answered KeyUnavailableException, never a wait without end
	// (docs/operations.md, "Faults").
	DefaultDBTimeout = 5 * time.Second
	// DefaultRotateAfterEncryptions and DefaultMaxEncryptions bound the
	// AES-GCM encryptions under one version (invocations.go).
	DefaultRotateAfterEncryptions = 1 << 30 // a quarter of 2^32
	DefaultMaxEncryptions         = 1 << 31 // half of 2^32
	// rotationFinishTimeout bounds how long a rotation that has inserted
	// its Pending row may outlive its caller's context to finish.
	rotationFinishTimeout = 30 * time.Second
)
