package service

import (
	"context"
	"errors"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
)

// Worker is the background side of the keys: rotation (on demand too),
// due deletions and destructions, the reconciler, and the counters of
// what it did.
type Worker struct {
	base
	store   WorkerStore
	tx      Tx[KeysTx]
	keys    *Keys
	imports *Import
	audit   *Audit
	token   hsm.Token
	cfg     Config
	hooks   hooks
	leases  *leases
	stats   counters // what Stats reports (stats.go)
	refused refusals // destructions refused for want of evidence (evidence.go)
	// invocations are Crypto's counts of encryptions, which the worker
	// adds to the store (FlushEncryptions).
	invocations *invocations
	countTx     Tx[EncryptionQueries]
}

// WorkerStore is what the worker reads outside transactions.
type WorkerStore interface {
	KeyQueries
	ScheduleQueries
	EncryptionQueries
}

// batch is how many due items one pass takes of each kind.
const batch = 100

// WorkerConfig sets the background worker's timers; zero fields take the
// defaults (defaults.go).
type WorkerConfig struct {
	Tick           time.Duration // due rotations, deletions, destructions (default 10s)
	ReconcileEvery time.Duration // reconciler (default 5m); it also runs at start
	SealEvery      time.Duration // audit seals (default 1s)
}

// RunWorker runs the background work until ctx ends: the reconciler at once
// and then every ReconcileEvery, and a pass over due work every Tick.
func (s *Worker) RunWorker(ctx context.Context, cfg WorkerConfig) {
	if cfg.Tick == 0 {
		cfg.Tick = DefaultWorkerTick
	}
	if cfg.ReconcileEvery == 0 {
		cfg.ReconcileEvery = DefaultReconcileEvery
	}
	if cfg.SealEvery == 0 {
		cfg.SealEvery = DefaultSealEvery
	}
	sealDone := make(chan struct{})
	go func() {
		defer close(sealDone)
		s.runSealer(ctx, cfg.SealEvery)
	}()
	defer func() { <-sealDone }()
	if _, err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("reconcile", "err", err)
	}
	tick := time.NewTicker(cfg.Tick)
	defer tick.Stop()
	rec := time.NewTicker(cfg.ReconcileEvery)
	defer rec.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := s.FlushEncryptions(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("count of encryptions", "err", err)
			}
			if err := s.RunDue(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("worker pass", "err", err)
			}
			if err := s.store.PruneKeyChanges(ctx, keyChangesKept); err != nil && ctx.Err() == nil {
				s.log.Error("prune the key change log", "err", err)
			}
		case <-rec.C:
			if _, err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("reconcile", "err", err)
			}
		}
	}
}

// runSealer seals the audit chain's head every interval (real time: seals
// are about the wall clock, not the domain's clock).
func (s *Worker) runSealer(ctx context.Context, every time.Duration) {
	if !s.audit.AuditEnabled() {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.audit.SealAudit(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("audit seal", "err", err)
			}
		}
	}
}

// RunDue does one pass of due work at the clock's now: automatic rotations,
// key deletions whose window passed, version destructions whose window
// passed. Each item is claimed with the key's lease, so several workers
// (goroutines or replicas) never do one item twice. It returns the first
// store error; errors of single items are logged and retried next pass.
func (s *Worker) RunDue(ctx context.Context) error {
	now := s.now()
	ids, err := s.store.DueRotations(ctx, now, batch)
	if err != nil {
		return s.storeErr(err)
	}
	for _, id := range ids {
		if _, err := s.rotate(ctx, id, RotationAutomatic); err != nil {
			s.log.Error("automatic rotation", "key_id", id, "err", err)
			s.stats.rotationFailed(err)
			s.postponeRotation(ctx, id, now, err)
		}
	}
	ids, err = s.store.DueDeletions(ctx, now, batch)
	if err != nil {
		return s.storeErr(err)
	}
	for _, id := range ids {
		if err := s.deleteKey(ctx, id); err != nil {
			s.log.Error("key deletion", "key_id", id, "err", err)
		}
	}
	vs, err := s.store.DueDestructions(ctx, now, batch)
	if err != nil {
		return s.storeErr(err)
	}
	for _, v := range vs {
		if err := s.destroyVersion(ctx, v.KeyID, v.Version); err != nil {
			s.log.Error("version destruction", "key_id", v.KeyID, "version", v.Version, "err", err)
		}
	}
	return s.imports.expireImports(ctx)
}

// deleteKey turns a key whose deletion window passed into a tombstone: one
// transaction marks it Deleted, its versions Destroyed and removes its
// aliases; then its token objects are destroyed. A crash in between leaves
// objects of a Deleted key, which the reconciler destroys.
//
// The database's word is not enough (issue 16): the sealed audit record of
// the ScheduleKeyDeletion request must show a window that has passed
// (destructionEvidence); otherwise nothing changes, and the refusal is
// reported.
func (s *Worker) deleteKey(ctx context.Context, id string) error {
	return s.leases.with(ctx, id, func(now time.Time) error {
		if err := s.audit.destructionEvidence(ctx, id, 0, now); err != nil {
			if errors.Is(err, errNoEvidence) {
				s.refuse(ctx, "kms:DeleteKey", id, 0, "", err)
				return nil
			}
			return err
		}
		var versions []Version
		err := s.tx(ctx, func(q KeysTx) error {
			k, err := q.LockKey(ctx, id)
			if err != nil {
				return err
			}
			if k.State != KeyPendingDeletion || k.DeletionDate == nil || k.DeletionDate.After(now) {
				return nil // cancelled or not yet due
			}
			k.State, k.UpdatedAt, k.NextRotation = KeyDeleted, now, nil
			if err := q.UpdateKey(ctx, k); err != nil {
				return err
			}
			if versions, err = q.ListVersions(ctx, id); err != nil {
				return err
			}
			for i := range versions {
				versions[i].State, versions[i].UpdatedAt = VersionDestroyed, now
				if err := q.UpdateVersion(ctx, &versions[i]); err != nil {
					return err
				}
			}
			if err := q.DeleteAliasesOfKey(ctx, id); err != nil {
				return err
			}
			return s.audit.system(ctx, q, systemActivity("kms:DeleteKey", id))
		})
		if err != nil {
			return s.storeErr(err)
		}
		s.keys.cache.invalidateKey(id)
		s.keys.cache.invalidateAllAliases()
		for _, v := range versions {
			if err := s.token.Destroy(ctx, refOf(&v)); err != nil {
				return s.tokenErr(err)
			}
		}
		if versions != nil {
			s.log.Info("key deleted", "key_id", id, "versions_destroyed", len(versions))
		}
		return nil
	})
}

// destroyVersion destroys one version whose destruction window passed:
// the row becomes Destroyed first, then the token object goes. As for a
// key, the sealed record of the ScheduleVersionDestruction request must
// show it (destructionEvidence).
func (s *Worker) destroyVersion(ctx context.Context, id string, version int) error {
	return s.leases.with(ctx, id, func(now time.Time) error {
		if err := s.audit.destructionEvidence(ctx, id, version, now); err != nil {
			if errors.Is(err, errNoEvidence) {
				s.refuse(ctx, "kms:DestroyKeyVersion", id, version, "", err)
				return nil
			}
			return err
		}
		destroy := false
		var ref hsm.ObjectRef
		err := s.tx(ctx, func(q KeysTx) error {
			// The key's row lock orders this with a concurrent
			// CancelVersionDestruction, which takes it too: without it, on
			// PostgreSQL, a cancel that committed after the read below would
			// be overwritten and the version destroyed.
			if _, err := q.LockKey(ctx, id); err != nil {
				return err
			}
			v, err := q.GetVersion(ctx, id, version)
			if err != nil {
				return err
			}
			if v.State != VersionPendingDestruction || v.DestroyAt == nil || v.DestroyAt.After(now) {
				return nil
			}
			s.hooks.after(StepDestructionChecked)
			v.State, v.UpdatedAt, destroy, ref = VersionDestroyed, now, true, refOf(v)
			if err := q.UpdateVersion(ctx, v); err != nil {
				return err
			}
			a := systemActivity("kms:DestroyKeyVersion", id)
			a.keyVersion = version
			return s.audit.system(ctx, q, a)
		})
		if err != nil {
			return s.storeErr(err)
		}
		s.keys.cache.invalidateKey(id)
		if !destroy {
			return nil
		}
		s.log.Info("key version destroyed", "key_id", id, "version", version)
		return s.tokenErr(s.token.Destroy(ctx, ref))
	})
}

// rotationRetryDelay is how long an automatic rotation that failed for a
// reason a retry will not cure (the key at MaxVersionsPerKey, say) waits
// before the next attempt.
const rotationRetryDelay = time.Hour

// postponeRotation moves a failed automatic rotation's due date forward by
// rotationRetryDelay, so that keys that keep failing do not fill every
// batch of due rotations and starve the others. Unavailability (token or
// database) is retried at the next tick instead.
func (s *Worker) postponeRotation(ctx context.Context, id string, now time.Time, cause error) {
	if errors.Is(cause, ErrUnavailable) || ctx.Err() != nil {
		return
	}
	err := s.tx(ctx, func(q KeysTx) error {
		k, err := q.LockKey(ctx, id)
		if err != nil {
			return err
		}
		if k.NextRotation == nil || k.NextRotation.After(now) {
			return nil // rotated or rescheduled meanwhile
		}
		next := now.Add(rotationRetryDelay)
		k.NextRotation = &next
		k.RotationFailure = &RotationFailure{At: now, Message: failureMessage(cause)}
		return q.UpdateKey(ctx, k)
	})
	if err != nil {
		s.log.Error("postpone a failed automatic rotation", "key_id", id, "err", err)
		return
	}
	s.keys.cache.invalidateKey(id)
	s.log.Warn("automatic rotation postponed", "key_id", id, "retry_after", rotationRetryDelay.String())
}
