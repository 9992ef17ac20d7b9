package service

import "time"

// Defaults of the service, in one place: Config and WorkerConfig apply them
// to zero fields, and kmsd's flag help texts print them.
const (
	DefaultCacheTTL          = 500 * time.Millisecond
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
