package service

import (
	"context"
	"errors"
	"strings"

	"github.com/hsmkms/hsmkms/policy"
)

// KeyCreating is the internal state of a key whose first version is being
// made; the API never shows it (the key does not exist yet for clients).
const KeyCreating KeyState = "Creating"

// resolveID turns a key id or alias/NAME into a canonical key id.
func (s *Keys) resolveID(ctx context.Context, ref string) (string, error) {
	if ref == "" {
		return "", Validationf("key_id is required (a key id or alias/NAME)")
	}
	if strings.HasPrefix(ref, AliasPrefix) {
		if err := validateAliasName(ref); err != nil {
			return "", err
		}
		id, err := s.cache.alias(ctx, ref)
		if errors.Is(err, ErrNotFound) {
			return "", errorf(ErrNotFound, "alias %q not found", ref)
		}
		return id, s.storeErr(err)
	}
	id, err := parseKeyID(ref)
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// viewByID returns the cached view of key id. Keys still being
// created are not found.
func (s *Keys) viewByID(ctx context.Context, id string) (*keyView, error) {
	v, err := s.cache.key(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && v.key.State == KeyCreating) {
		return nil, errorf(ErrNotFound, "key %s not found", id)
	}
	if err != nil {
		return nil, s.storeErr(err)
	}
	return v, nil
}

// loadKey reads a key by id, bypassing the cache. Resolve aliases before a
// transaction begins (resolveID), not inside it.
func (s *Keys) loadKey(ctx context.Context, q KeyQueries, id string) (*Key, error) {
	k, err := q.GetKey(ctx, id)
	return s.existing(id, k, err)
}

// lockKey reads a key inside a transaction for a change (LockKey).
func (s *Keys) lockKey(ctx context.Context, q KeyQueries, id string) (*Key, error) {
	k, err := q.LockKey(ctx, id)
	return s.existing(id, k, err)
}

// existing hides keys that are still being created.
func (s *Keys) existing(id string, k *Key, err error) (*Key, error) {
	if errors.Is(err, ErrNotFound) || (err == nil && k.State == KeyCreating) {
		return nil, errorf(ErrNotFound, "key %s not found", id)
	}
	return k, s.storeErr(err)
}

// checkKey turns a policy verdict on k into the domain error.
func checkKey(k *Key, op policy.Op) error {
	if k.Manager == ManagerService && !policy.ManagedKeyAllows(op) {
		return errorf(ErrInvalidState, "key %s is managed by hsmkms (its alias is under alias/managed/): it can be used, not changed", k.ID)
	}
	switch policy.KeyOperation(string(k.State), string(k.Origin), op) {
	case policy.Allow:
		return nil
	case policy.Disabled:
		return errorf(ErrDisabled, "key %s is disabled", k.ID)
	case policy.Unknown:
		return errorf(ErrNotFound, "key %s not found", k.ID)
	}
	switch {
	case k.State == KeyDeleted:
		return errorf(ErrInvalidState, "key %s was deleted", k.ID)
	case k.State == KeyPendingImport && (op == policy.OpEncrypt || op == policy.OpDecrypt):
		return errorf(ErrInvalidState, "key %s has no key material (PendingImport): import its material (the same as before, for old blobs) to use it", k.ID)
	case op == policy.OpRotate && k.Origin == OriginExternal:
		return errorf(ErrInvalidState, "key %s has imported (EXTERNAL) material and cannot be rotated", k.ID)
	}
	return errorf(ErrInvalidState, "key %s is %s; this operation is not allowed in that state", k.ID, k.State)
}
