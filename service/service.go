// Package service holds the use cases of hsmkms in parts: Audit, Access,
// and on the keys side Keys (the key ring), Crypto, Import and Worker
// (docs/architecture.md maps them). It knows no HTTP and no SQL: it talks
// to the token through hsm.Token and to the metadata through each part's
// narrow store interface.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/hsm"
)

// Config tunes the service. Zero values take the defaults (defaults.go).
type Config struct {
	// Clock is the time source (default: the system clock in UTC).
	Clock Clock
	// CacheTTL bounds how long a replica may use a key's cached state after
	// another replica changed it (default 500ms: "within a second", with
	// room for the request itself): each process reads the store's change
	// log at most twice per CacheTTL while it serves (cache.go). Changes
	// made by this process invalidate its cache at once; a key nobody
	// changes stays cached.
	CacheTTL time.Duration
	// MaxVersionsPerKey caps versions (token objects) per key (default 100).
	MaxVersionsPerKey int
	// MaxOnDemandRotations is each key's lifetime quota of on-demand
	// rotations, as in AWS KMS (default DefaultMaxOnDemandRotations;
	// negative: unlimited). Automatic rotations do not count.
	MaxOnDemandRotations int
	// DevPendingWindow, when set, replaces the 7 to 30 days of every key
	// deletion and version destruction, so that a test can watch the
	// worker destroy token objects. Development only: kmsd refuses it
	// without KMS_DEV_MODE=true.
	DevPendingWindow time.Duration
	// MinRotationInterval and MaxRotationInterval bound rotation_interval
	// (defaults 7 days and 2560 days).
	MinRotationInterval time.Duration
	MaxRotationInterval time.Duration
	// DefaultRotationInterval applies when rotation is enabled without an
	// interval (default 365 days).
	DefaultRotationInterval time.Duration
	// PendingGrace is how old a Creating key or Pending version must be
	// before the reconciler treats it as abandoned (default 5 minutes).
	PendingGrace time.Duration
	// RotateAfterEncryptions: a key whose primary version has made this
	// many AES-GCM encryptions is rotated automatically (default 2^30);
	// MaxEncryptions: no version encrypts more (default 2^31). NIST SP
	// 800-38D allows 2^32 with random IVs (invocations.go).
	RotateAfterEncryptions int64
	MaxEncryptions         int64
	// Logger receives operational events; never plaintext or key material.
	Logger *slog.Logger
	// StepHook, when set, is called after each step of the rotation
	// protocol with the step's name. Crash tests use it to stop a rotation
	// between two steps; it is nil in production.
	StepHook func(step string)
	// DestroyUnknownObjects lets the reconciler destroy token objects whose
	// key this database does not know. Off by default: a token shared with
	// another deployment must not lose that deployment's keys; such objects
	// are reported instead.
	DestroyUnknownObjects bool
	// LeaseDuration bounds how long a crashed worker's claim on a key
	// blocks others (default 1 minute; a rotation takes milliseconds).
	LeaseDuration time.Duration
	// DisableAudit turns the audit log off. Only for measuring what
	// auditing costs (make bench): a deployment must keep it on.
	DisableAudit bool
	// AuditExport, when set, is told of every audit record this process
	// commits and asked for room before each request's (KMS_AUDIT_SINK).
	AuditExport AuditExport
	// DBTimeout bounds one database step of a request: a cache load, a
	// management transaction, an audit group commit (default
	// DefaultDBTimeout).
	DBTimeout time.Duration
	// AuthCacheTTL bounds how long a revoked token or a changed policy may
	// still be honoured by another replica (default 500ms). Changes made by
	// this process apply at once.
	AuthCacheTTL time.Duration
}

func (c *Config) setDefaults() {
	if c.Clock == nil {
		c.Clock = SystemClock{}
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.MaxVersionsPerKey == 0 {
		c.MaxVersionsPerKey = DefaultMaxVersionsPerKey
	}
	if c.MaxOnDemandRotations == 0 {
		c.MaxOnDemandRotations = DefaultMaxOnDemandRotations
	}
	if c.MinRotationInterval == 0 {
		c.MinRotationInterval = DefaultMinRotationInterval
	}
	if c.MaxRotationInterval == 0 {
		c.MaxRotationInterval = DefaultMaxRotationInterval
	}
	if c.DefaultRotationInterval == 0 {
		c.DefaultRotationInterval = DefaultRotationInterval
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.DBTimeout == 0 {
		c.DBTimeout = DefaultDBTimeout
	}
	if c.AuthCacheTTL == 0 {
		c.AuthCacheTTL = DefaultAuthCacheTTL
	}
	if c.PendingGrace == 0 {
		c.PendingGrace = DefaultPendingGrace
	}
	if c.RotateAfterEncryptions == 0 {
		c.RotateAfterEncryptions = DefaultRotateAfterEncryptions
	}
	if c.MaxEncryptions == 0 {
		c.MaxEncryptions = DefaultMaxEncryptions
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// base is what every part of the service shares: the clock, the log, the
// database timeout and the translation of token and store errors into
// domain errors.
type base struct {
	clock Clock
	log   *slog.Logger
	// dbTimeout bounds one database step of a request (Config.DBTimeout).
	dbTimeout time.Duration
}

// Service implements the KMS use cases.
type Service struct {
	base
	Audit  *Audit
	Access *Access
	Keys   *Keys
	Crypto *Crypto
	Import *Import
	Worker *Worker
	store  Store
	token  hsm.Token
	ready  readiness // Ready's cache (ready.go)
}

// Rotation protocol steps, as StepHook names them.
const (
	StepPendingInserted = "pending-inserted"
	StepObjectGenerated = "object-generated"
	StepPromoted        = "promoted"
	// StepDestructionChecked: the worker found a version due for
	// destruction, inside the transaction that marks it Destroyed.
	StepDestructionChecked = "destruction-checked"
)

type hooks struct{ fn func(string) }

func (h hooks) after(step string) {
	if h.fn != nil {
		h.fn(step)
	}
}

// New returns a service on an opened store and token.
func New(store Store, token hsm.Token, cfg Config) *Service {
	cfg.setDefaults()
	b := base{clock: cfg.Clock, log: cfg.Logger, dbTimeout: cfg.DBTimeout}
	ls := &leases{base: b, store: store, duration: cfg.LeaseDuration, instance: uuid.NewString()}
	audit := newAudit(b, store, token, !cfg.DisableAudit, cfg.AuditExport)
	keys := &Keys{base: b, store: store, tx: narrow(store, func(q Queries) KeysTx { return q }), token: token,
		cfg: cfg, cache: newKeyCache(store, cfg.Clock, cfg.CacheTTL, cfg.DBTimeout), audit: audit, leases: ls}
	imports := &Import{base: b, store: store, tx: narrow(store, func(q Queries) ImportTx { return q }),
		keys: keys, token: token, audit: audit, leases: ls}
	counts := &invocations{}
	return &Service{base: b, store: store, token: token,
		Audit:  audit,
		Access: newAccess(b, store, token, audit, cfg.AuthCacheTTL),
		Keys:   keys,
		Crypto: &Crypto{base: b, keys: keys, token: token, invocations: counts, maxEncryptions: cfg.MaxEncryptions},
		Import: imports,
		Worker: &Worker{base: b, store: store, tx: keys.tx, keys: keys, imports: imports, audit: audit,
			token: token, cfg: cfg, hooks: hooks{cfg.StepHook}, leases: ls, invocations: counts,
			countTx: narrow(store, func(q Queries) EncryptionQueries { return q })},
	}
}

// Close writes every queued audit record and stops taking new ones. The
// token and the store belong to the caller, who closes them afterwards.
func (s *Service) Close() {
	if s.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Worker.FlushEncryptions(ctx); err != nil {
			s.log.Warn("final count of encryptions", "err", err)
		}
	}
	s.Audit.close()
}

// Stats, KeysByState and AuditQueueDepth are what the metrics read of the
// whole service (metrics.ServiceSource).
func (s *Service) Stats() Stats { return s.Worker.Stats() }

// KeysByState counts keys per state (Worker.KeysByState).
func (s *Service) KeysByState(ctx context.Context) (map[KeyState]int, error) {
	return s.Worker.KeysByState(ctx)
}

// AuditQueueDepth is Audit.AuditQueueDepth.
func (s *Service) AuditQueueDepth() int { return s.Audit.AuditQueueDepth() }

// now is the clock's time truncated to microseconds, the store's precision,
// so that what is returned equals what is read back later.
func (s base) now() time.Time {
	return s.clock.Now().UTC().Truncate(time.Microsecond)
}

// tokenErr translates an hsm error into a domain error. Unknown errors are
// returned as they are: the API logs them and answers 500 without details.
func (s base) tokenErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, hsm.ErrDecryptFailed):
		return ErrInvalidCiphertext
	case errors.Is(err, hsm.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		s.log.Warn("token unavailable", "err", err)
		return errorf(ErrUnavailable, "the key store (HSM) is unavailable; retry later")
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, hsm.ErrObjectNotFound):
		// The store says the version exists; the token does not show it.
		s.log.Error("token object missing for a version the store knows; the reconciler reports it", "err", err)
		return errorf(ErrUnavailable, "the key's token object cannot be found; retry later")
	}
	return fmt.Errorf("token: %w", err)
}

// tokenRetry runs a token call again, a few times with growing pauses,
// while the token says the object is missing: the store says it exists,
// so another replica made it and this process's view of the token has not
// caught up yet (SoftHSM's file store shows another process's new object
// only after it re-reads the token directory: pitfalls item 27; seen in
// the two-replica test under load).
func tokenRetry(ctx context.Context, call func() error) error {
	err := call()
	for _, pause := range []time.Duration{5 * time.Millisecond, 20 * time.Millisecond, 80 * time.Millisecond, 320 * time.Millisecond} {
		if !errors.Is(err, hsm.ErrObjectNotFound) {
			return err
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return err
		}
		err = call()
	}
	return err
}

// storeErr passes domain errors through and turns a database the store
// found unavailable (it alone classifies database errors: it wraps
// ErrUnavailable around them) into a client-safe ErrUnavailable; anything
// else stays internal.
func (s base) storeErr(err error) error {
	var dErr *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &dErr), errors.Is(err, ErrNotFound), errors.Is(err, ErrAlreadyExists):
		return err
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		s.log.Warn("database unavailable", "err", err)
		return errorf(ErrUnavailable, "the metadata database is unavailable; retry later")
	}
	return fmt.Errorf("store: %w", err)
}
