package service

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/hsmkms/hsmkms/policy"
)

// checkCustomerAlias refuses names reserved for keys the service manages:
// a name rule, so a ValidationException like alias/aws/.
func checkCustomerAlias(name string) error {
	if strings.HasPrefix(name, managedAliasPrefix) {
		return Validationf("alias name %q uses a reserved prefix (alias/managed/ is for service-managed keys)", name)
	}
	return nil
}

// Alias changes are authorised as AWS authorises them, on every resource
// they touch, each on its own: the alias name itself (statements on
// alias/<pattern>), the key it leaves (UpdateAlias, DeleteAlias) and the
// key it joins (CreateAlias, UpdateAlias). The alias being changed never
// counts as a right on either key: being allowed on alias/app-* must not
// let a caller move alias/payments-main off a key that merely also carries
// alias/app-shared, and being allowed on a key must not let it claim any
// alias name for that key.

// allowAliasName authorises action on the alias name alone.
func allowAliasName(ctx context.Context, action, name string) error {
	return allow(ctx, action, policy.Resource{Alias: name})
}

// resolveTarget resolves target_key_id (before any transaction begins) and
// authorises action on that key, by its id and its other aliases (the
// alias being changed, name, grants nothing here).
func (s *Keys) resolveTarget(ctx context.Context, action, name, ref string) (string, error) {
	if ref == "" {
		return "", Validationf("target_key_id is required")
	}
	v, err := s.accessExcept(ctx, action, ref, name)
	if err != nil {
		return "", err
	}
	return v.key.ID, nil
}

// aliasTarget reads the key an alias is to point at and checks it may be one.
func (s *Keys) aliasTarget(ctx context.Context, q KeyQueries, id string) (*Key, error) {
	k, err := s.lockKey(ctx, q, id)
	if err != nil {
		return nil, err
	}
	return k, checkKey(k, policy.OpAliasTarget)
}

// aliasOwner authorises action on the alias name, then reads the key the
// alias names (fresh, not cached) and authorises action on that key too:
// moving or deleting an alias needs the right on the key it leaves. A
// caller not allowed on the name learns nothing of whether it exists; a
// refusal on the key does not name it (the caller may not know the target).
func (s *Keys) aliasOwner(ctx context.Context, action, name string) (string, error) {
	if err := allowAliasName(ctx, action, name); err != nil {
		return "", err
	}
	a, err := s.store.GetAlias(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return "", errorf(ErrNotFound, "alias %q not found", name)
	}
	if err != nil {
		return "", s.storeErr(err)
	}
	v, err := s.viewByID(ctx, a.KeyID)
	var aliases []string
	if err == nil {
		aliases = without(v.aliases, name)
	}
	if err := allow(ctx, action, policy.Resource{KeyID: a.KeyID, Aliases: aliases}); err != nil {
		return "", errorf(ErrAccessDenied, "%s on %s also needs the right on the key it names now, which the caller does not have",
			action, name)
	}
	return a.KeyID, nil
}

// customerAlias checks a name a customer may bind, move or delete.
func customerAlias(name string) error {
	if err := validateAliasName(name); err != nil {
		return err
	}
	return checkCustomerAlias(name)
}

// boundAlias reads an alias inside the transaction that changes it and
// makes sure it still names the key the caller was authorised on. It locks
// the keys first (keyID and the others given, in one order so that two
// moves in opposite directions cannot deadlock): every change of an alias
// locks the key it leaves, so a change that was authorised on the old
// binding waits for a concurrent move and then sees it, rather than
// overwriting it (PostgreSQL reads committed data per statement).
func boundAlias(ctx context.Context, q KeyQueries, name, keyID string, alsoLock ...string) (*Alias, error) {
	ids := append([]string{keyID}, alsoLock...)
	slices.Sort(ids)
	for _, id := range slices.Compact(ids) {
		if _, err := q.LockKey(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	a, err := q.GetAlias(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil, errorf(ErrNotFound, "alias %q not found", name)
	}
	if err != nil {
		return nil, err
	}
	if a.KeyID != keyID {
		return nil, errorf(ErrConflict, "alias %q changed while this request ran; retry", name)
	}
	return a, nil
}

// CreateAlias binds a new alias to a key.
func (s *Keys) CreateAlias(ctx context.Context, name, targetRef string) (*Alias, error) {
	if err := customerAlias(name); err != nil {
		return nil, err
	}
	noteDetail(ctx, "alias", name)
	if err := allowAliasName(ctx, ActCreateAlias, name); err != nil {
		return nil, err
	}
	targetID, err := s.resolveTarget(ctx, ActCreateAlias, name, targetRef)
	if err != nil {
		return nil, err
	}
	var out *Alias
	err = commit(ctx, s.audit, s.tx, func(q KeysTx) error {
		k, err := s.aliasTarget(ctx, q, targetID)
		if err != nil {
			return err
		}
		now := s.now()
		out = &Alias{Name: name, KeyID: k.ID, CreatedAt: now, UpdatedAt: now}
		return s.bindNewAlias(ctx, q, name, k.ID, now)
	})
	if err != nil {
		return nil, s.storeErr(err)
	}
	s.cache.invalidateAlias(name)
	s.cache.invalidateKey(targetID)
	return out, nil
}

// UpdateAlias re-binds an existing alias to another key: the manual way to
// rotate (applications keep using the alias).
func (s *Keys) UpdateAlias(ctx context.Context, name, targetRef string) (*Alias, error) {
	if err := customerAlias(name); err != nil {
		return nil, err
	}
	noteDetail(ctx, "alias", name)
	oldID, err := s.aliasOwner(ctx, ActUpdateAlias, name)
	if err != nil {
		return nil, err
	}
	targetID, err := s.resolveTarget(ctx, ActUpdateAlias, name, targetRef)
	if err != nil {
		return nil, err
	}
	var out *Alias
	err = commit(ctx, s.audit, s.tx, func(q KeysTx) error {
		a, err := boundAlias(ctx, q, name, oldID, targetID)
		if err != nil {
			return err
		}
		k, err := s.aliasTarget(ctx, q, targetID)
		if err != nil {
			return err
		}
		a.KeyID, a.UpdatedAt = k.ID, s.now()
		out = a
		return q.UpdateAlias(ctx, a)
	})
	if err != nil {
		return nil, s.storeErr(err)
	}
	s.cache.invalidateAlias(name)
	s.cache.invalidateKey(oldID)
	s.cache.invalidateKey(targetID)
	return out, nil
}

// DeleteAlias removes an alias; the key is untouched.
func (s *Keys) DeleteAlias(ctx context.Context, name string) error {
	if err := customerAlias(name); err != nil {
		return err
	}
	noteDetail(ctx, "alias", name)
	keyID, err := s.aliasOwner(ctx, ActDeleteAlias, name)
	if err != nil {
		return err
	}
	err = commit(ctx, s.audit, s.tx, func(q KeysTx) error {
		if _, err := boundAlias(ctx, q, name, keyID); err != nil {
			return err
		}
		return q.DeleteAlias(ctx, name)
	})
	if err != nil {
		return s.storeErr(err)
	}
	s.cache.invalidateAlias(name)
	s.cache.invalidateKey(keyID)
	return nil
}

// ListAliases lists aliases, all or those of one key (id or alias).
func (s *Keys) ListAliases(ctx context.Context, keyRef string, limit int, nextToken string) ([]Alias, string, error) {
	keyID := ""
	if keyRef != "" {
		v, err := s.access(ctx, ActListAliases, keyRef)
		if err != nil {
			return nil, "", err
		}
		keyID = v.key.ID
	} else if err := allow(ctx, ActListAliases, noResource); err != nil {
		return nil, "", err
	}
	rows, next, err := paged(limit, nextToken, func(p Page) ([]Alias, error) {
		return s.store.ListAliases(ctx, keyID, p)
	}, func(a *Alias) string { return a.Name })
	return rows, next, s.storeErr(err)
}
