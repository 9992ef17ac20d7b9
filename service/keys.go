package service

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/policy"
)

// Keys is the key ring: keys, versions, aliases, their lifecycle, and the
// resolution and authorisation of a key reference (access). The other
// parts of the keys side (Crypto, Import, Worker) are given it.
type Keys struct {
	base
	store  KeyQueries
	tx     Tx[KeysTx]
	token  hsm.Token
	cfg    Config
	cache  *keyCache
	audit  *Audit
	leases *leases
}

// KeysTx is what the key ring's transactions read and write: its queries
// and the audit record that commits with each change.
type KeysTx interface {
	KeyQueries
	AuditAppender
}

// CreateKeyInput is the request of CreateKey. Zero values take defaults.
type CreateKeyInput struct {
	Description       string
	Alias             string // optional alias/NAME bound in the same step
	Origin            Origin // HSM (default) or EXTERNAL
	KeySpec           string // AES_256 (default)
	AutomaticRotation bool
	RotationInterval  time.Duration // 0: the default interval
	Tags              map[string]string

	// managed marks the default key of an alias/managed/ name, which only
	// the service creates (createManaged).
	managed bool
}

// CreateKey makes a key. For HSM origin its first version is generated in
// the token before the key becomes visible: the rows are written first as
// Creating/Pending (so a crash leaves something the reconciler can find),
// then the token object, then one transaction makes the key Enabled.
func (s *Keys) CreateKey(ctx context.Context, in CreateKeyInput) (*Key, error) {
	if err := allow(ctx, ActCreateKey, policy.Resource{Alias: in.Alias}); err != nil {
		return nil, err
	}
	if in.Alias != "" {
		// Binding the alias is a CreateAlias of its own (aliases.go): the
		// right to create keys is not the right to claim any alias name.
		if err := allowAliasName(ctx, ActCreateAlias, in.Alias); err != nil {
			return nil, err
		}
	}
	if err := s.validateCreate(&in); err != nil {
		return nil, err
	}
	if in.Alias != "" {
		if _, err := s.store.GetAlias(ctx, in.Alias); err == nil {
			return nil, errorf(ErrAlreadyExists, "alias %q already exists", in.Alias)
		} else if !errors.Is(err, ErrNotFound) {
			return nil, s.storeErr(err)
		}
	}
	now := s.now()
	k := &Key{
		ID: uuid.NewString(), Description: in.Description, Origin: in.Origin, KeySpec: in.KeySpec,
		Manager: ManagerCustomer, CreatedAt: now, UpdatedAt: now, Tags: in.Tags,
		RotationEnabled: in.AutomaticRotation, RotationInterval: in.RotationInterval,
	}
	if k.Tags == nil {
		k.Tags = map[string]string{}
	}
	if in.managed {
		k.Manager = ManagerService
	}
	if in.Origin == OriginExternal {
		k.State = KeyPendingImport
		note(ctx, k.ID, 0)
		err := commit(ctx, s.audit, s.tx, func(q KeysTx) error {
			if err := q.InsertKey(ctx, k); err != nil {
				return err
			}
			return s.bindNewAlias(ctx, q, in.Alias, k.ID, now)
		})
		if err != nil {
			return nil, s.storeErr(err)
		}
		return s.describe(ctx, k.ID)
	}

	k.State = KeyCreating
	ref, err := newVersionRef(k.ID, 1)
	if err != nil {
		return nil, err
	}
	v := &Version{KeyID: k.ID, Version: 1, State: VersionPending, Origin: OriginHSM,
		CreatedAt: now, UpdatedAt: now, TokenLabel: ref.Label()}
	err = s.tx(ctx, func(q KeysTx) error {
		if err := q.InsertKey(ctx, k); err != nil {
			return err
		}
		return q.InsertVersion(ctx, v)
	})
	if err != nil {
		return nil, s.storeErr(err)
	}
	// Hold the new key's lease while the object is made, as a rotation
	// does: the reconciler rolls back an abandoned creation only once the
	// lease has expired, never one still in progress.
	release, err := s.leases.hold(ctx, k.ID)
	if err != nil {
		s.abandonCreate(k.ID, nil)
		return nil, err
	}
	defer release()
	if err := s.token.GenerateKey(ctx, ref); err != nil {
		// A failed call may still have made the object (an error after
		// C_GenerateKey): destroy it too, or it outlives its rows.
		s.abandonCreate(k.ID, &ref)
		return nil, s.tokenErr(err)
	}
	note(ctx, k.ID, 1)
	err = commit(ctx, s.audit, s.tx, func(q KeysTx) error {
		k.State, k.PrimaryVersion, k.UpdatedAt = KeyEnabled, 1, now
		if k.RotationEnabled {
			next := policy.NextRotation(now, k.RotationInterval)
			k.RotationAnchor, k.NextRotation = &now, &next
		}
		if err := q.UpdateKey(ctx, k); err != nil {
			return err
		}
		v.State = VersionPrimary
		if err := q.UpdateVersion(ctx, v); err != nil {
			return err
		}
		return s.bindNewAlias(ctx, q, in.Alias, k.ID, now)
	})
	if err != nil {
		s.abandonCreate(k.ID, &ref)
		return nil, s.storeErr(err)
	}
	return s.describe(ctx, k.ID)
}

// abandonCreate rolls back a key whose creation failed: destroys the token
// object made (if made) and deletes the rows. If this fails too, the
// reconciler finds the Creating key after the grace period and finishes
// the job.
func (s *Keys) abandonCreate(keyID string, made *hsm.ObjectRef) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if made != nil {
		if err := s.token.Destroy(ctx, *made); err != nil {
			s.log.Error("roll back key creation: destroy token object", "key_id", keyID, "err", err)
			return
		}
	}
	if err := s.store.DeleteKey(ctx, keyID); err != nil {
		s.log.Error("roll back key creation: delete rows", "key_id", keyID, "err", err)
	}
}

func (s *Keys) bindNewAlias(ctx context.Context, q KeyQueries, name, keyID string, now time.Time) error {
	if name == "" {
		return nil
	}
	err := q.InsertAlias(ctx, &Alias{Name: name, KeyID: keyID, CreatedAt: now, UpdatedAt: now})
	if errors.Is(err, ErrAlreadyExists) {
		return errorf(ErrAlreadyExists, "alias %q already exists", name)
	}
	return err
}

func (s *Keys) validateCreate(in *CreateKeyInput) error {
	if err := validateDescription(in.Description); err != nil {
		return err
	}
	if err := validateTags(in.Tags); err != nil {
		return err
	}
	if in.Alias != "" {
		if err := validateAliasName(in.Alias); err != nil {
			return err
		}
		if !in.managed {
			if err := checkCustomerAlias(in.Alias); err != nil {
				return err
			}
		}
	}
	switch in.Origin {
	case "":
		in.Origin = OriginHSM
	case OriginHSM, OriginExternal:
	default:
		return Validationf("origin must be HSM or EXTERNAL")
	}
	switch in.KeySpec {
	case "":
		in.KeySpec = KeySpecAES256
	case KeySpecAES256:
	default:
		return Validationf("key_spec must be AES_256")
	}
	if in.Origin == OriginExternal && in.AutomaticRotation {
		return errorf(ErrInvalidState, "keys with imported (EXTERNAL) material cannot rotate automatically")
	}
	if in.managed {
		return nil // its fixed policy is the service's, not bounded by configuration
	}
	return s.validateInterval(&in.RotationInterval)
}

// validateInterval applies the default and checks the configured bounds.
func (s *Keys) validateInterval(d *time.Duration) error {
	if *d == 0 {
		*d = s.cfg.DefaultRotationInterval
		return nil
	}
	if *d < s.cfg.MinRotationInterval || *d > s.cfg.MaxRotationInterval {
		return Validationf("rotation_interval must be between %s and %s",
			FormatDuration(s.cfg.MinRotationInterval), FormatDuration(s.cfg.MaxRotationInterval))
	}
	return nil
}

// DescribeKey returns a key with its aliases.
func (s *Keys) DescribeKey(ctx context.Context, ref string) (*Key, error) {
	return s.describeAs(ctx, ActDescribeKey, ref)
}

// describeAs authorises action on ref and describes the key.
func (s *Keys) describeAs(ctx context.Context, action, ref string) (*Key, error) {
	v, err := s.access(ctx, action, ref)
	if err != nil {
		return nil, err
	}
	return s.describe(ctx, v.key.ID)
}

// describe reads a key (not from the cache) with its aliases.
func (s *Keys) describe(ctx context.Context, id string) (*Key, error) {
	k, err := s.loadKey(ctx, s.store, id)
	if err != nil {
		return nil, err
	}
	return k, s.attachAliases(ctx, k)
}

func (s *Keys) attachAliases(ctx context.Context, keys ...*Key) error {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	names, err := s.store.AliasNames(ctx, ids)
	if err != nil {
		return s.storeErr(err)
	}
	for _, k := range keys {
		k.Aliases = names[k.ID]
		if k.Aliases == nil {
			k.Aliases = []string{}
		}
	}
	return nil
}

// ListKeys returns one page of keys and the token of the next page ("" at the end).
func (s *Keys) ListKeys(ctx context.Context, limit int, nextToken string) ([]*Key, string, error) {
	if err := allow(ctx, ActListKeys, noResource); err != nil {
		return nil, "", err
	}
	rows, next, err := paged(limit, nextToken, func(p Page) ([]Key, error) {
		return s.store.ListKeys(ctx, p)
	}, func(k *Key) string { return k.ID })
	if err != nil {
		return nil, "", s.storeErr(err)
	}
	keys := make([]*Key, 0, len(rows))
	for i := range rows {
		if rows[i].State != KeyCreating {
			keys = append(keys, &rows[i])
		}
	}
	return keys, next, s.attachAliases(ctx, keys...)
}

// UpdateKeyInput changes a key's description and/or tags; nil leaves a field alone.
type UpdateKeyInput struct {
	Description *string
	Tags        map[string]string // replaces all tags when not nil
}

// UpdateKey changes description and tags.
func (s *Keys) UpdateKey(ctx context.Context, ref string, in UpdateKeyInput) (*Key, error) {
	if in.Description != nil {
		if err := validateDescription(*in.Description); err != nil {
			return nil, err
		}
	}
	if in.Tags != nil {
		if err := validateTags(in.Tags); err != nil {
			return nil, err
		}
	}
	return s.changeKey(ctx, ActUpdateKey, ref, policy.OpUpdate, func(k *Key, _ time.Time) {
		if in.Description != nil {
			k.Description = *in.Description
		}
		if in.Tags != nil {
			k.Tags = maps.Clone(in.Tags)
		}
	})
}

// EnableKey makes a Disabled key usable again; automatic rotation resumes
// from now, without a burst of missed rotations.
func (s *Keys) EnableKey(ctx context.Context, ref string) (*Key, error) {
	return s.changeKey(ctx, ActEnableKey, ref, policy.OpEnable, func(k *Key, now time.Time) {
		if k.State == KeyEnabled {
			return
		}
		k.State = KeyEnabled
		if k.RotationEnabled && k.NextRotation != nil {
			next := policy.ResumedNextRotation(rotationAnchor(k), now, k.RotationInterval)
			k.NextRotation = &next
		}
	})
}

// DisableKey refuses every cryptographic use of the key until it is enabled.
func (s *Keys) DisableKey(ctx context.Context, ref string) (*Key, error) {
	return s.changeKey(ctx, ActDisableKey, ref, policy.OpDisable, func(k *Key, _ time.Time) {
		k.State = KeyDisabled
	})
}

// changeKey is the shape of every simple management change: read the key in
// a transaction, check the state policy, apply, write, invalidate the cache.
func (s *Keys) changeKey(ctx context.Context, action, ref string, op policy.Op, apply func(k *Key, now time.Time)) (*Key, error) {
	return s.tryChangeKey(ctx, action, ref, op, func(_ KeysTx, k *Key, now time.Time) error {
		apply(k, now)
		return nil
	})
}

// tryChangeKey is changeKey with a change that may refuse: its error rolls
// the transaction back.
func (s *Keys) tryChangeKey(ctx context.Context, action, ref string, op policy.Op, apply func(q KeysTx, k *Key, now time.Time) error) (*Key, error) {
	v, err := s.access(ctx, action, ref)
	if err != nil {
		return nil, err
	}
	id := v.key.ID
	var out *Key
	err = commit(ctx, s.audit, s.tx, func(q KeysTx) error {
		k, err := s.lockKey(ctx, q, id)
		if err != nil {
			return err
		}
		if err := checkKey(k, op); err != nil {
			return err
		}
		now := s.now()
		if err := apply(q, k, now); err != nil {
			return err
		}
		k.UpdatedAt = now
		if err := q.UpdateKey(ctx, k); err != nil {
			return err
		}
		out = k
		return nil
	})
	if err != nil {
		return nil, s.storeErr(err)
	}
	s.cache.invalidateKey(out.ID)
	return out, s.attachAliases(ctx, out)
}

// versionRef names version n of key id in the token as versions were
// named before their names had a nonce.
func versionRef(keyID string, n int) hsm.ObjectRef {
	return hsm.ObjectRef{KeyID: uuid.MustParse(keyID), Version: n}
}

// newVersionRef draws the token name of a new version of key id: with a
// random nonce, recorded in the version's row (its label) before the
// object is made, so that only the object this service makes for it can
// ever be its object (issue 16: a PIN holder cannot prepare one).
func newVersionRef(keyID string, n int) (hsm.ObjectRef, error) {
	return hsm.NewRef(uuid.MustParse(keyID), n)
}

// refOf is the token name a version row records in its label (a row made
// before nonces has a label without one and keeps its name).
func refOf(v *Version) hsm.ObjectRef {
	if r, err := hsm.ParseLabel(v.TokenLabel); err == nil && r.KeyID.String() == v.KeyID && r.Version == v.Version {
		return r
	}
	return versionRef(v.KeyID, v.Version)
}
