package service

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ProvisionKey is one key a deployment wants to exist, named by its alias.
type ProvisionKey struct {
	Alias             string
	Description       string
	AutomaticRotation bool
	RotationInterval  time.Duration // 0: the default
	Tags              map[string]string
	// ExtraAliases are further aliases of the same key.
	ExtraAliases []string
}

// ProvisionResult says what provisioning did for one alias.
type ProvisionResult struct {
	Alias   string
	KeyID   string
	Created bool // false: it existed already and was left as it is
}

// Provision makes sure every key of spec exists, idempotently: a key whose
// alias exists is left as it is (whatever its rotation policy became since;
// provisioning never overrides an operator's later change); a missing one is
// created with its policy, and missing extra aliases are bound to it. An
// extra alias that names another key is an error: provisioning does not
// move aliases. Replicas provisioning the same file at once create each key
// once. It runs as the system and each change is audited as such.
func (s *Service) Provision(ctx context.Context, spec []ProvisionKey) ([]ProvisionResult, error) {
	ctx = AsSystem(ctx)
	seen := map[string]bool{}
	for i, k := range spec {
		for _, a := range append([]string{k.Alias}, k.ExtraAliases...) {
			if err := customerAlias(a); err != nil {
				return nil, fmt.Errorf("key %d: %w", i+1, err)
			}
			if seen[a] {
				return nil, fmt.Errorf("key %d: alias %s is listed twice", i+1, a)
			}
			seen[a] = true
		}
	}
	// Everything that can be checked is checked before anything is made:
	// a file that fails half-way would leave keys behind and fail again at
	// every start.
	for i, k := range spec {
		in := CreateKeyInput{Alias: k.Alias, Description: k.Description, AutomaticRotation: k.AutomaticRotation,
			RotationInterval: k.RotationInterval, Tags: k.Tags}
		if err := s.Keys.validateCreate(&in); err != nil {
			return nil, fmt.Errorf("key %d (%s): %w", i+1, k.Alias, err)
		}
		if err := s.checkProvisionAliases(ctx, k); err != nil {
			return nil, fmt.Errorf("key %d (%s): %w", i+1, k.Alias, err)
		}
	}
	out := make([]ProvisionResult, 0, len(spec))
	for _, k := range spec {
		r, err := s.provisionOne(ctx, k)
		if err != nil {
			return out, fmt.Errorf("%s: %w", k.Alias, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// checkProvisionAliases refuses a key whose extra aliases name another key
// than the one its alias names (or any key, when its alias is still free).
// The extra aliases are read before the alias: a provisioner binds the
// alias first, so an extra alias bound by a concurrent one is read with
// the alias it was bound after, never as foreign.
func (s *Service) checkProvisionAliases(ctx context.Context, k ProvisionKey) error {
	bound := make(map[string]string, len(k.ExtraAliases)) // extra alias -> key id
	for _, extra := range k.ExtraAliases {
		a, err := s.store.GetAlias(ctx, extra)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return s.storeErr(err)
		}
		bound[extra] = a.KeyID
	}
	if len(bound) == 0 {
		return nil
	}
	owner := ""
	if a, err := s.store.GetAlias(ctx, k.Alias); err == nil {
		owner = a.KeyID
	} else if !errors.Is(err, ErrNotFound) {
		return s.storeErr(err)
	}
	for _, extra := range k.ExtraAliases {
		if id, ok := bound[extra]; ok && id != owner {
			return errorf(ErrAlreadyExists, "alias %s names another key (%s); provisioning does not move aliases", extra, id)
		}
	}
	return nil
}

func (s *Service) provisionOne(ctx context.Context, k ProvisionKey) (ProvisionResult, error) {
	r := ProvisionResult{Alias: k.Alias}
	a, err := s.store.GetAlias(ctx, k.Alias)
	switch {
	case err == nil:
		r.KeyID = a.KeyID
	case errors.Is(err, ErrNotFound):
		created, err := s.Keys.CreateKey(withActivity(ctx, systemActivity(ActCreateKey, "", "alias", k.Alias, "provisioned", "true")),
			CreateKeyInput{Alias: k.Alias, Description: k.Description, AutomaticRotation: k.AutomaticRotation,
				RotationInterval: k.RotationInterval, Tags: k.Tags})
		if errors.Is(err, ErrAlreadyExists) {
			// Another replica provisioned it at the same moment.
			a, err := s.store.GetAlias(ctx, k.Alias)
			if err != nil {
				return r, s.storeErr(err)
			}
			r.KeyID = a.KeyID
			break
		}
		if err != nil {
			return r, err
		}
		r.KeyID, r.Created = created.ID, true
	default:
		return r, s.storeErr(err)
	}
	for _, extra := range k.ExtraAliases {
		a, err := s.store.GetAlias(ctx, extra)
		if err == nil {
			if a.KeyID != r.KeyID {
				return r, errorf(ErrAlreadyExists, "alias %s names another key (%s); provisioning does not move aliases", extra, a.KeyID)
			}
			continue
		}
		if !errors.Is(err, ErrNotFound) {
			return r, s.storeErr(err)
		}
		_, err = s.Keys.CreateAlias(withActivity(ctx, systemActivity(ActCreateAlias, r.KeyID, "alias", extra, "provisioned", "true")), extra, r.KeyID)
		if err != nil && !errors.Is(err, ErrAlreadyExists) {
			return r, err
		}
	}
	return r, nil
}
