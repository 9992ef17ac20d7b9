package service

import (
	"context"
	"errors"
	"time"

	"github.com/hsmkms/hsmkms/policy"
)

// Pending windows of key deletion and version destruction, in days.
const (
	MinPendingWindowDays     = 7
	MaxPendingWindowDays     = 30
	DefaultPendingWindowDays = 30
)

// pendingWindow is the window of a deletion or destruction asked for in
// days (0: the default). Config.DevPendingWindow, set only in development,
// replaces it after the days are checked.
func (s *Keys) pendingWindow(days int) (time.Duration, error) {
	if days == 0 {
		days = DefaultPendingWindowDays
	}
	if days < MinPendingWindowDays || days > MaxPendingWindowDays {
		return 0, Validationf("pending_window_days must be %d to %d", MinPendingWindowDays, MaxPendingWindowDays)
	}
	if s.cfg.DevPendingWindow > 0 {
		return s.cfg.DevPendingWindow, nil
	}
	return time.Duration(days) * 24 * time.Hour, nil
}

// ScheduleKeyDeletion puts a key in PendingDeletion: every cryptographic use
// is refused and, when the window passes, the deletion worker destroys its
// token objects and leaves a tombstone. CancelKeyDeletion undoes it.
func (s *Keys) ScheduleKeyDeletion(ctx context.Context, ref string, days int) (*Key, error) {
	window, err := s.pendingWindow(days)
	if err != nil {
		return nil, err
	}
	ctx = s.withRecord(ctx, ActScheduleDeletion)
	return s.changeKey(ctx, ActScheduleDeletion, ref, policy.OpScheduleDeletion, func(k *Key, now time.Time) {
		at := now.Add(window)
		k.State, k.DeletionDate = KeyPendingDeletion, &at
		noteSchedule(ctx, window, at) // the evidence the worker needs (evidence.go)
	})
}

// CancelKeyDeletion returns a PendingDeletion key to Disabled, or, for an
// EXTERNAL key without live key material, to PendingImport: enabling a key
// with nothing to encrypt with would only move the failure to encrypt.
func (s *Keys) CancelKeyDeletion(ctx context.Context, ref string) (*Key, error) {
	ctx = s.withRecord(ctx, ActCancelDeletion)
	return s.tryChangeKey(ctx, ActCancelDeletion, ref, policy.OpCancelDeletion, func(q KeysTx, k *Key, _ time.Time) error {
		k.State, k.DeletionDate = KeyDisabled, nil
		if k.Origin != OriginExternal {
			return nil
		}
		vs, err := q.ListVersions(ctx, k.ID)
		if err != nil {
			return err
		}
		for _, v := range vs {
			if v.State != VersionDestroyed && v.State != VersionPending {
				return nil
			}
		}
		k.State = KeyPendingImport
		return nil
	})
}

// RotationPolicyInput sets automatic rotation; a zero interval keeps the
// key's interval.
type RotationPolicyInput struct {
	AutomaticRotation bool
	RotationInterval  time.Duration
}

// PutRotationPolicy turns automatic rotation on or off and sets its interval.
// next = last automatic rotation (or when rotation was turned on) +
// interval; if that is already past (a shortened interval), the worker
// rotates at once. On-demand rotations do not move it.
func (s *Keys) PutRotationPolicy(ctx context.Context, ref string, in RotationPolicyInput) (*Key, error) {
	if in.RotationInterval != 0 {
		if err := s.validateInterval(&in.RotationInterval); err != nil {
			return nil, err
		}
	}
	return s.tryChangeKey(ctx, ActPutRotationPolicy, ref, policy.OpUpdate, func(_ KeysTx, k *Key, now time.Time) error {
		if in.AutomaticRotation && k.Origin == OriginExternal {
			return errorf(ErrInvalidState, "key %s has imported (EXTERNAL) material and cannot rotate", k.ID)
		}
		if in.RotationInterval != 0 {
			k.RotationInterval = in.RotationInterval
		}
		if in.AutomaticRotation && (!k.RotationEnabled || k.RotationAnchor == nil) {
			k.RotationAnchor = &now // turned on: the schedule starts now
		}
		k.RotationEnabled = in.AutomaticRotation
		k.NextRotation = nil
		if k.RotationEnabled {
			next := policy.NextRotation(*k.RotationAnchor, k.RotationInterval)
			k.NextRotation = &next
		}
		return nil
	})
}

// RotationStatus is GET .../rotation-status.
type RotationStatus struct {
	KeyID            string
	Status           string // Enabled, Disabled, Suspended
	RotationInterval time.Duration
	LastRotation     *time.Time
	NextRotation     *time.Time
	// OnDemandRemaining is nil when on-demand rotations are unlimited.
	OnDemandRemaining *int
	// LastFailure is the last failed automatic rotation, until one succeeds.
	LastFailure *RotationFailure
}

// GetRotationStatus reports a key's rotation policy and dates.
func (s *Keys) GetRotationStatus(ctx context.Context, ref string) (*RotationStatus, error) {
	k, err := s.describeAs(ctx, ActGetRotationStatus, ref)
	if err != nil {
		return nil, err
	}
	st := &RotationStatus{KeyID: k.ID, RotationInterval: k.RotationInterval, LastRotation: k.LastRotation,
		OnDemandRemaining: s.OnDemandRotationsRemaining(k), LastFailure: k.RotationFailure,
		Status: policy.RotationStatus(k.RotationEnabled, string(k.State), string(k.Origin))}
	if st.Status == policy.RotationStatusEnabled {
		st.NextRotation = k.NextRotation
	}
	return st, nil
}

// ListKeyRotations lists a key's rotations (its first version is not one).
func (s *Keys) ListKeyRotations(ctx context.Context, ref string, limit int, nextToken string) ([]Rotation, string, error) {
	limit, err := pageLimit(limit)
	if err != nil {
		return nil, "", err
	}
	after, err := decodeVersionToken(nextToken)
	if err != nil {
		return nil, "", err
	}
	k, err := s.describeAs(ctx, ActListKeyRotations, ref)
	if err != nil {
		return nil, "", err
	}
	rows, err := s.store.ListRotations(ctx, k.ID, after, limit+1)
	if err != nil {
		return nil, "", s.storeErr(err)
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = encodePageToken(itoa(rows[limit-1].Version))
	}
	return rows, next, nil
}

// ListVersions lists a key's versions, oldest first, without Pending ones.
func (s *Keys) ListVersions(ctx context.Context, ref string) ([]Version, error) {
	k, err := s.describeAs(ctx, ActListKeyVersions, ref)
	if err != nil {
		return nil, err
	}
	vs, err := s.store.ListVersions(ctx, k.ID)
	if err != nil {
		return nil, s.storeErr(err)
	}
	out := vs[:0]
	for _, v := range vs {
		if v.State != VersionPending {
			out = append(out, v)
		}
	}
	return out, nil
}

// VersionAction is a change to one non-primary version.
type VersionAction int

// Version actions.
const (
	DisableVersion VersionAction = iota
	EnableVersion
	ScheduleVersionDestruction
	CancelVersionDestruction
)

// ChangeVersion disables, re-enables, schedules the destruction of, or
// cancels the destruction of one version. The primary version cannot be
// changed (rotate first); a destroyed version stays destroyed.
func (s *Keys) ChangeVersion(ctx context.Context, ref string, version int, action VersionAction, days int) (*Version, error) {
	if version < 1 || version > MaxVersion {
		return nil, Validationf("version must be an integer from 1 to %d", MaxVersion)
	}
	window, err := s.pendingWindow(days)
	if err != nil && action == ScheduleVersionDestruction {
		return nil, err
	}
	if action == ScheduleVersionDestruction || action == CancelVersionDestruction {
		ctx = s.withRecord(ctx, ActUpdateKeyVersion)
	}
	kv, err := s.access(ctx, ActUpdateKeyVersion, ref)
	if err != nil {
		return nil, err
	}
	id := kv.key.ID
	note(ctx, id, version)
	var out *Version
	err = commit(ctx, s.audit, s.tx, func(q KeysTx) error {
		k, err := s.lockKey(ctx, q, id)
		if err != nil {
			return err
		}
		if k.State == KeyDeleted || k.Manager == ManagerService {
			return checkKey(k, policy.OpUpdate)
		}
		v, err := q.GetVersion(ctx, id, version)
		if errors.Is(err, ErrNotFound) || (err == nil && v.State == VersionPending) {
			return errorf(ErrNotFound, "version %d of key %s not found", version, id)
		}
		if err != nil {
			return err
		}
		if v.State == VersionPrimary {
			return errorf(ErrInvalidState, "version %d is the primary version of key %s; rotate the key first", version, id)
		}
		now := s.now()
		next, err := nextVersionState(v, action, now.Add(window))
		if err != nil {
			return err
		}
		*v = *next
		v.UpdatedAt = now
		out = v
		switch action {
		case ScheduleVersionDestruction:
			noteDetail(ctx, detailVersionAction, versionScheduleDest)
			noteSchedule(ctx, window, *v.DestroyAt)
		case CancelVersionDestruction:
			noteDetail(ctx, detailVersionAction, versionCancelDest)
		}
		return q.UpdateVersion(ctx, v)
	})
	if err != nil {
		return nil, s.storeErr(err)
	}
	s.cache.invalidateKey(id)
	return out, nil
}

// nextVersionState applies a version action or says why it is not allowed.
func nextVersionState(v *Version, action VersionAction, destroyAt time.Time) (*Version, error) {
	out := *v
	bad := func() (*Version, error) {
		return nil, errorf(ErrInvalidState, "version %d of key %s is %s; not allowed", v.Version, v.KeyID, v.State)
	}
	switch action {
	case DisableVersion:
		if v.State != VersionDecryptOnly && v.State != VersionDisabled {
			return bad()
		}
		out.State = VersionDisabled
	case EnableVersion:
		if v.State != VersionDecryptOnly && v.State != VersionDisabled {
			return bad()
		}
		out.State = VersionDecryptOnly
	case ScheduleVersionDestruction:
		if v.State != VersionDecryptOnly && v.State != VersionDisabled {
			return bad()
		}
		out.State, out.DestroyAt = VersionPendingDestruction, &destroyAt
	case CancelVersionDestruction:
		if v.State != VersionPendingDestruction {
			return bad()
		}
		out.State, out.DestroyAt = VersionDisabled, nil
	}
	return &out, nil
}
