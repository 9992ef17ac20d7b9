package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
)

// ReconcileReport says what one reconciler pass repaired.
type ReconcileReport struct {
	CreatesRolledBack   int      // keys left in Creating by a crash: rows and object removed
	RotationsRolledBack int      // Pending versions left by a crash: object and row removed
	EncryptRevoked      int      // non-primary objects that could still encrypt
	ObjectsDestroyed    int      // objects of destroyed versions or deleted keys, with evidence (evidence.go)
	UnknownObjects      []string // labels of objects of keys this database does not know
	// Kept names the objects the database would have destroyed but which
	// were kept, each with why: an object of a known key without a version
	// row (never a reason to destroy), one of a destroyed version or a
	// deleted key without sealed evidence of a destruction request whose
	// window passed, a Pending version whose completion is on the record.
	Kept               []string
	AttributesRepaired int // attributes of live versions' objects set back to the template
	// OffTemplate names the objects of live versions that differ from a
	// version's template in what cannot be set back (made before this
	// service set CKA_COPYABLE and CKA_ALLOWED_MECHANISMS, or changed by
	// someone with the PIN), or that the token does not attest it
	// generated although the version was generated (a replaced object),
	// each with what differs.
	OffTemplate []string
}

// Reconcile repairs what a crash (or a person with the PIN) left between the
// token and the database:
//   - a key still Creating after the grace period: its creation is rolled back;
//   - a Pending version after the grace period: the rotation is rolled back
//     (the old primary never stopped working; a due automatic rotation is
//     simply redone on the next pass), unless the audit trail records its
//     completion (a database writer who set a live version back to Pending):
//     then it is kept and reported;
//   - an object of a non-primary version that can still encrypt: CKA_ENCRYPT
//     is set to false again;
//   - an object of a Destroyed version or of a Deleted key: destroyed (and
//     audited) only on the sealed evidence of the request that scheduled
//     it, whose window passed (evidence.go); otherwise kept and reported;
//   - an object of a known key but without a version row: kept and
//     reported (log, metric, audit record), never destroyed: deleting a row
//     is not a way to destroy a key;
//   - an object of an unknown key: reported, destroyed only when
//     Config.DestroyUnknownObjects is set and the audit trail knows nothing
//     of the key (it was not created here: a restored older database, a
//     failed creation's object);
//   - an object of a live version whose attributes differ from a
//     version's template (CKA_DERIVE switched on, say): set back where the
//     token allows it, reported (log and metric) where not, and so is an
//     object of a generated version that the token does not attest it
//     generated.
//
// CKA_ENCRYPT is the one attribute that depends on the version's state;
// the others are the same for every version (hsm.ObjectInfo.Drift).
//
// The token inventory is read before the database: an object always gets its
// row before it is generated, so an object seen in the inventory whose row is
// missing afterwards really has none.
func (s *Worker) Reconcile(ctx context.Context) (*ReconcileReport, error) {
	rep := &ReconcileReport{}
	inv, err := s.token.Inventory(ctx)
	if err != nil {
		return nil, s.tokenErr(err)
	}
	present := make(map[hsm.ObjectRef]hsm.ObjectInfo, len(inv))
	for _, o := range inv {
		present[o.Ref] = o
	}
	if err := s.reconcilePending(ctx, present, rep); err != nil {
		return rep, err
	}
	remaining := inv[:0]
	for _, o := range inv {
		if _, ok := present[o.Ref]; ok {
			remaining = append(remaining, o)
		}
	}
	if err := s.reconcileObjects(ctx, remaining, rep); err != nil {
		return rep, err
	}
	s.stats.offTemplate.Store(int64(len(rep.OffTemplate)))
	if len(rep.Kept) > 0 {
		s.log.Error("token objects kept that the database would have destroyed",
			"objects", len(rep.Kept), "first", rep.Kept[0])
	}
	if rep.CreatesRolledBack+rep.RotationsRolledBack+rep.EncryptRevoked+rep.ObjectsDestroyed+len(rep.UnknownObjects)+rep.AttributesRepaired > 0 {
		s.log.Warn("reconciler repaired token/database differences",
			"creates_rolled_back", rep.CreatesRolledBack, "rotations_rolled_back", rep.RotationsRolledBack,
			"encrypt_revoked", rep.EncryptRevoked, "objects_destroyed", rep.ObjectsDestroyed,
			"unknown_objects", len(rep.UnknownObjects), "attributes_repaired", rep.AttributesRepaired)
	}
	if len(rep.OffTemplate) > 0 {
		s.log.Warn("token objects of live versions differ from the template in what cannot be repaired",
			"objects", len(rep.OffTemplate), "first", rep.OffTemplate[0])
	}
	return rep, nil
}

// reconcilePending rolls back abandoned creations and rotations.
func (s *Worker) reconcilePending(ctx context.Context, present map[hsm.ObjectRef]hsm.ObjectInfo, rep *ReconcileReport) error {
	pending, err := s.store.VersionsInState(ctx, VersionPending)
	if err != nil {
		return s.storeErr(err)
	}
	cutoff := s.now().Add(-s.cfg.PendingGrace)
	for _, v := range pending {
		if v.UpdatedAt.After(cutoff) {
			continue // may still be in progress
		}
		if err := s.neverCompleted(ctx, &v); err != nil {
			if !errors.Is(err, errNoEvidence) {
				return err
			}
			rep.Kept = append(rep.Kept, v.TokenLabel+": "+err.Error())
			s.refuse(ctx, "kms:RollBackPendingVersion", v.KeyID, v.Version, v.TokenLabel, err)
			delete(present, refOf(&v))
			continue
		}
		err := s.leases.with(ctx, v.KeyID, func(_ time.Time) error {
			// Rows first, in one transaction that locks the key, as the
			// promotion does: a creation or rotation that finishes after
			// all (its lease expired, it was only slow) either commits
			// before this and is left alone, or finds its row gone and
			// fails. Never the other way round, which would leave a live
			// version without its object.
			creating, finished := false, false
			err := s.tx(ctx, func(q KeysTx) error {
				k, err := q.LockKey(ctx, v.KeyID)
				if errors.Is(err, ErrNotFound) {
					finished = true
					return nil
				}
				if err != nil {
					return err
				}
				cur, err := q.GetVersion(ctx, v.KeyID, v.Version)
				if errors.Is(err, ErrNotFound) || (err == nil && cur.State != VersionPending) {
					finished = true
					return nil
				}
				if err != nil {
					return err
				}
				if k.State == KeyCreating {
					creating = true
					return q.DeleteKey(ctx, v.KeyID)
				}
				return q.DeleteVersion(ctx, v.KeyID, v.Version)
			})
			if err != nil || finished {
				return s.storeErr(err)
			}
			s.keys.cache.invalidateKey(v.KeyID)
			if creating {
				rep.CreatesRolledBack++
			} else {
				rep.RotationsRolledBack++
			}
			// Then the object, if it was made.
			// A shutdown does not cut this short: a creation's object
			// left without its rows would only be reported, never destroyed.
			// Should this fail, the object is one of a known key without a
			// row, which later passes report and keep: it was never a
			// usable version, so keeping it only costs a token slot.
			ref := refOf(&v)
			delete(present, ref)
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := s.token.Destroy(dctx, ref); err != nil {
				return s.tokenErr(err)
			}
			s.auditDestroyed(dctx, "kms:RollBackPendingVersion", v.KeyID, v.Version, ref.Label(), "an unfinished creation or rotation, rolled back")
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// reconcileObjects checks every object of the inventory against its row.
func (s *Worker) reconcileObjects(ctx context.Context, inv []hsm.ObjectInfo, rep *ReconcileReport) error {
	keys := map[string]*Key{}
	versions := map[string]map[int]Version{}
	for _, o := range inv {
		if o.Ref.KeyID == AuditSealKeyID || o.Ref.KeyID == MACKeyID {
			continue // the audit seal and MAC keys have no row, by design; never touch them
		}
		id := o.Ref.KeyID.String()
		k, seen := keys[id]
		if !seen {
			var err error
			k, err = s.store.GetKey(ctx, id)
			if errors.Is(err, ErrNotFound) {
				k = nil
			} else if err != nil {
				return s.storeErr(err)
			}
			keys[id] = k
			if k != nil {
				vs, err := s.store.ListVersions(ctx, id)
				if err != nil {
					return s.storeErr(err)
				}
				versions[id] = make(map[int]Version, len(vs))
				for _, v := range vs {
					versions[id][v.Version] = v
				}
			}
		}
		if k == nil {
			rep.UnknownObjects = append(rep.UnknownObjects, o.Label)
			if s.cfg.DestroyUnknownObjects {
				if err := s.destroyUnknown(ctx, o, rep); err != nil {
					return err
				}
			}
			continue
		}
		row, hasRow := versions[id][o.Ref.Version]
		// A row names its object with the nonce drawn for it: an object
		// under the version's number with another nonce (or none) is not
		// that version's (a failed attempt's, or planted) and has no row.
		hasRow = hasRow && refOf(&row) == o.Ref
		if hasRow && row.State != VersionDestroyed && k.State != KeyDeleted {
			if err := s.checkAttributes(ctx, o, &row, rep); err != nil {
				return err
			}
		}
		if objectRepair(k, row.State, hasRow, o.Encrypt) == repairNone {
			continue
		}
		// What was read above may be stale by now: a version number freed
		// by a rolled-back rotation is made again, an EXTERNAL key's
		// material is imported again. Act only under the key's lease (no
		// rotation, creation or import of it runs meanwhile) and on the
		// rows read again under it; a key whose lease is held is left for
		// the next pass.
		err := s.leases.with(ctx, id, func(time.Time) error {
			return s.repairObject(ctx, o, rep)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

type repair int

const (
	repairNone repair = iota
	repairDestroy
	repairDecryptOnly
	repairOrphan // no row: reported, never destroyed
)

// objectRepair decides what an object of key k needs, given its version's
// row (if any) and whether the object can encrypt.
func objectRepair(k *Key, state VersionState, hasRow, canEncrypt bool) repair {
	switch {
	case !hasRow:
		return repairOrphan
	case state == VersionDestroyed || k.State == KeyDeleted:
		return repairDestroy
	case state != VersionPrimary && state != VersionPending && canEncrypt:
		return repairDecryptOnly
	}
	return repairNone
}

// repairObject reads the object's key and version again and repairs what
// they still call for. The caller holds the key's lease.
func (s *Worker) repairObject(ctx context.Context, o hsm.ObjectInfo, rep *ReconcileReport) error {
	id := o.Ref.KeyID.String()
	k, err := s.store.GetKey(ctx, id)
	if err != nil {
		return s.storeErr(err)
	}
	v, err := s.store.GetVersion(ctx, id, o.Ref.Version)
	hasRow := err == nil && refOf(v) == o.Ref
	if err != nil && !errors.Is(err, ErrNotFound) {
		return s.storeErr(err)
	}
	var state VersionState
	if hasRow {
		state = v.State
	}
	switch objectRepair(k, state, hasRow, o.Encrypt) {
	case repairOrphan:
		why := fmt.Errorf("%w: the database has no row for this object of key %s", errNoEvidence, id)
		rep.Kept = append(rep.Kept, o.Label+": no version row")
		s.refuse(ctx, "kms:ReconcileObject", id, o.Ref.Version, o.Label, why)
	case repairDestroy:
		version := o.Ref.Version
		if k.State == KeyDeleted {
			version = 0
		}
		if err := s.audit.destructionEvidence(ctx, id, version, s.now()); err != nil {
			if !errors.Is(err, errNoEvidence) {
				return err
			}
			rep.Kept = append(rep.Kept, o.Label+": "+err.Error())
			s.refuse(ctx, "kms:DestroyKeyVersion", id, o.Ref.Version, o.Label, err)
			return nil
		}
		if err := s.token.Destroy(ctx, o.Ref); err != nil {
			return s.tokenErr(err)
		}
		rep.ObjectsDestroyed++
		s.auditDestroyed(ctx, "kms:DestroyKeyVersion", id, o.Ref.Version, o.Label, "the object of a destroyed version or deleted key, left by an interrupted destruction")
	case repairDecryptOnly:
		if err := s.token.SetDecryptOnly(ctx, o.Ref); err != nil {
			return s.tokenErr(err)
		}
		rep.EncryptRevoked++
	}
	return nil
}

// checkAttributes repairs and reports how the object o of the live version
// v differs from a version's template. Repair touches no CKA_ENCRYPT and
// no object of another version, so it needs no lease.
func (s *Worker) checkAttributes(ctx context.Context, o hsm.ObjectInfo, v *Version, rep *ReconcileReport) error {
	if v.Origin == OriginHSM && !o.Generated {
		rep.OffTemplate = append(rep.OffTemplate, o.Label+": the token does not attest that it generated this object "+
			"(CKA_LOCAL, CKA_ALWAYS_SENSITIVE or CKA_NEVER_EXTRACTABLE false): it may have been replaced")
	}
	if o.Drift == "" {
		return nil
	}
	fixed, err := s.token.Repair(ctx, o.Ref)
	rep.AttributesRepaired += len(fixed)
	s.stats.attributeRepairs.Add(uint64(len(fixed)))
	for _, f := range fixed {
		s.log.Warn("token object attribute set back to the template", "label", o.Label, "attribute", f)
	}
	switch {
	case errors.Is(err, hsm.ErrAttributeMismatch):
		rep.OffTemplate = append(rep.OffTemplate, o.Label+": "+o.Drift)
	case errors.Is(err, hsm.ErrObjectNotFound):
	case err != nil:
		return s.tokenErr(err)
	}
	return nil
}

// neverCompleted checks, before a Pending version is rolled back, that the
// audit trail does not record its completion: the creation of its key (a
// key still Creating), or the rotation or import that made it. A database
// writer who sets a live version back to Pending gets errNoEvidence.
func (s *Worker) neverCompleted(ctx context.Context, v *Version) error {
	if !s.audit.AuditEnabled() {
		return nil
	}
	recs, err := s.audit.listAll(ctx, AuditFilter{KeyID: v.KeyID, Actions: []string{ActCreateKey, ActRotateKey, ActImportKeyMaterial}})
	if err != nil {
		return err
	}
	for _, e := range recs {
		if e.Outcome == OutcomeAllowed && (e.Action == ActCreateKey && v.Version == 1 || e.KeyVersion == v.Version && e.Action != ActCreateKey) {
			return fmt.Errorf("%w: record %d (%s) completed version %d; it is not an unfinished one", errNoEvidence, e.Seq, e.Action, v.Version)
		}
	}
	return nil
}

// destroyUnknown destroys the object of a key the database does not know
// (Config.DestroyUnknownObjects), unless the audit trail knows the key: a
// key this installation created that lost its row is kept and reported.
func (s *Worker) destroyUnknown(ctx context.Context, o hsm.ObjectInfo, rep *ReconcileReport) error {
	id := o.Ref.KeyID.String()
	if s.audit.AuditEnabled() {
		recs, err := s.audit.listAll(ctx, AuditFilter{KeyID: id, Actions: []string{ActCreateKey}})
		if err != nil {
			return err
		}
		for _, e := range recs {
			if e.Outcome != OutcomeAllowed {
				continue
			}
			why := fmt.Errorf("%w: key %s has no row, but the audit trail records its creation (record %d)", errNoEvidence, id, e.Seq)
			rep.Kept = append(rep.Kept, o.Label+": "+why.Error())
			s.refuse(ctx, "kms:ReconcileObject", id, o.Ref.Version, o.Label, why)
			return nil
		}
	}
	if err := s.token.Destroy(ctx, o.Ref); err != nil {
		return s.tokenErr(err)
	}
	rep.ObjectsDestroyed++
	s.auditDestroyed(ctx, "kms:ReconcileObject", id, o.Ref.Version, o.Label, "an object of a key unknown to this database and its audit trail (DestroyUnknownObjects)")
	return nil
}
