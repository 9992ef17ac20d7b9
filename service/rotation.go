package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hsmkms/hsmkms/policy"
)

// RotateKey makes a new primary version (RotateKeyOnDemand). It follows the
// four-step protocol (docs/architecture.md, "Rotation"):
//  1. DB: insert version n+1 as Pending;
//  2. token: generate its object (idempotent by CKA_ID);
//  3. DB, one transaction: n+1 Primary, n DecryptOnly, rotation record, dates;
//  4. token: CKA_ENCRYPT=false on version n.
//
// A crash between any two steps leaves a state the reconciler finishes. A
// lease on the key makes concurrent rotations of one key (several workers,
// several replicas) produce exactly one version each.
func (s *Worker) RotateKey(ctx context.Context, ref string) (*Version, error) {
	v, err := s.keys.access(ctx, ActRotateKey, ref)
	if err != nil {
		return nil, err
	}
	if v.key.Manager == ManagerService {
		return nil, errorf(ErrInvalidState, "key %s is managed by hsmkms and rotates on its own schedule", v.key.ID)
	}
	return s.rotate(ctx, v.key.ID, RotationOnDemand)
}

// rotate runs the protocol under the key's lease. For AUTOMATIC rotations it
// re-checks, under the lease, that the key is still due; if another worker
// already rotated it, it returns (nil, nil).
func (s *Worker) rotate(ctx context.Context, keyID string, typ RotationType) (*Version, error) {
	if typ == RotationAutomatic {
		// The worker's rotations are audited as the system's.
		ctx = withActivity(ctx, systemActivity(ActRotateKey, keyID, "rotation_type", string(typ)))
	}
	le, now, err := s.leases.claim(ctx, keyID)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, errorf(ErrNotFound, "key %s not found", keyID)
		}
		return nil, s.storeErr(err)
	}
	if le == nil {
		if typ == RotationAutomatic {
			return nil, nil // another worker has it
		}
		return nil, errorf(ErrConflict, "key %s is being rotated by another request; retry", keyID)
	}
	defer le.release()

	k, err := s.keys.loadKey(ctx, s.store, keyID)
	if err != nil {
		return nil, err
	}
	if typ == RotationAutomatic && !s.due(k, now) {
		// Not due by the schedule; due all the same at the GCM invocation
		// limit (invocations.go), re-checked here under the lease.
		over, err := s.overInvocations(ctx, k)
		if err != nil || !over {
			return nil, err
		}
	}
	if err := checkKey(k, policy.OpRotate); err != nil {
		return nil, err
	}
	if typ == RotationOnDemand {
		if err := s.keys.checkOnDemandQuota(k); err != nil {
			return nil, err
		}
	}
	versions, err := s.store.ListVersions(ctx, keyID)
	if err != nil {
		return nil, s.storeErr(err)
	}
	live := 0
	for _, v := range versions {
		if v.State != VersionDestroyed {
			live++
		}
	}
	if live >= s.cfg.MaxVersionsPerKey {
		return nil, errorf(ErrLimitExceeded, "key %s has %d versions, the most allowed; schedule old versions for destruction first", keyID, live)
	}
	n := 1
	if len(versions) > 0 {
		n = versions[len(versions)-1].Version + 1
	}

	// Step 1: the row, with the new version's nonce in its label.
	ref, err := newVersionRef(keyID, n)
	if err != nil {
		return nil, err
	}
	v := &Version{KeyID: keyID, Version: n, State: VersionPending, Origin: k.Origin,
		CreatedAt: now, UpdatedAt: now, TokenLabel: ref.Label()}
	if err := s.store.InsertVersion(ctx, v); err != nil {
		return nil, s.storeErr(err)
	}
	s.hooks.after(StepPendingInserted)
	// Once the Pending row exists the rotation is finished even when its
	// caller goes away (a shutdown cancels the worker mid-pass): steps 2 to
	// 4 take milliseconds, and a rotation cut between them would leave a
	// Pending row and an object for the reconciler's grace period. The
	// database steps keep their own timeout (KMS_DB_TIMEOUT).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rotationFinishTimeout)
	defer cancel()
	// Step 2.
	if err := s.token.GenerateKey(ctx, ref); err != nil {
		if derr := s.store.DeleteVersion(context.WithoutCancel(ctx), keyID, n); derr != nil {
			s.log.Error("roll back pending version", "key_id", keyID, "version", n, "err", derr)
		}
		return nil, s.tokenErr(err)
	}
	s.hooks.after(StepObjectGenerated)
	// Step 3.
	old, err := s.promote(ctx, keyID, n, typ, now)
	if err != nil {
		return nil, err
	}
	s.stats.rotated(typ)
	s.hooks.after(StepPromoted)
	// Step 4.
	if old > 0 {
		if err := s.decryptOnly(ctx, keyID, old); err != nil {
			s.log.Warn("set previous version decrypt-only in the token; the reconciler retries",
				"key_id", keyID, "version", old, "err", err)
		}
	}
	s.log.Info("key rotated", "key_id", keyID, "version", n, "type", string(typ))
	v.State = VersionPrimary
	return v, nil
}

// promote is step 3: one transaction makes version n primary and the old
// primary decrypt-only, and records the rotation. It returns the old primary.
func (s *Worker) promote(ctx context.Context, keyID string, n int, typ RotationType, now time.Time) (int, error) {
	old := 0
	note(ctx, keyID, n)
	err := commit(ctx, s.audit, s.tx, func(q KeysTx) error {
		k, err := q.LockKey(ctx, keyID)
		if err != nil {
			return err
		}
		v, err := q.GetVersion(ctx, keyID, n)
		if err != nil {
			return err
		}
		if v.State != VersionPending {
			return fmt.Errorf("version %d of key %s is %s, not Pending", n, keyID, v.State)
		}
		old = k.PrimaryVersion
		if old > n {
			// Another rotation made and promoted a later version while this
			// one was slow (its lease ran out): promoting n now would leave
			// two primaries. The Pending row is rolled back by the reconciler.
			return errorf(ErrConflict, "key %s was rotated to version %d by another request meanwhile; version %d is abandoned", keyID, old, n)
		}
		if old > 0 && old < n {
			prev, err := q.GetVersion(ctx, keyID, old)
			if err != nil {
				return err
			}
			prev.State, prev.UpdatedAt = VersionDecryptOnly, now
			if err := q.UpdateVersion(ctx, prev); err != nil {
				return err
			}
		}
		v.State, v.UpdatedAt = VersionPrimary, now
		if err := q.UpdateVersion(ctx, v); err != nil {
			return err
		}
		k.PrimaryVersion, k.UpdatedAt = n, now
		if n > 1 {
			k.LastRotation = &now
			if err := q.InsertRotation(ctx, &Rotation{KeyID: keyID, Version: n, At: now, Type: typ}); err != nil {
				return err
			}
		}
		scheduleAfterRotation(k, typ, now)
		return q.UpdateKey(ctx, k)
	})
	s.keys.cache.invalidateKey(keyID)
	if err != nil {
		return 0, s.storeErr(err)
	}
	return old, nil
}

// due says whether an automatic rotation of k is due at now.
func (s *Worker) due(k *Key, now time.Time) bool {
	return k.RotationEnabled && k.State == KeyEnabled && k.Origin == OriginHSM &&
		k.NextRotation != nil && !k.NextRotation.After(now)
}

// decryptOnly is step 4: CKA_ENCRYPT=false on the object of version n.
func (s *Worker) decryptOnly(ctx context.Context, keyID string, n int) error {
	v, err := s.store.GetVersion(ctx, keyID, n)
	if err != nil {
		return s.storeErr(err)
	}
	return s.token.SetDecryptOnly(ctx, refOf(v))
}
