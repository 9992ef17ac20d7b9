package service

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Managed default keys. alias/managed/<service> names a key that hsmkms
// creates the first time a principal allowed to use that alias uses it:
// automatic rotation every 365 days, not configurable; it cannot be
// disabled, deleted, re-aliased or imported into; DescribeKey shows
// key_manager SERVICE.

// ManagedRotationInterval is the fixed rotation interval of managed keys.
const ManagedRotationInterval = 365 * 24 * time.Hour

// createsManaged are the uses that create a missing managed key.
var createsManaged = map[string]bool{
	ActEncrypt: true, ActGenerateDataKey: true, ActGenerateDataKeyNoP: true, ActReEncryptTo: true,
}

func isManagedAlias(ref string) bool { return strings.HasPrefix(ref, managedAliasPrefix) }

// createManaged creates the default key of a managed alias, as the system
// (the caller was authorised for its use, not for CreateKey), and returns
// its id. Concurrent first uses create it once: the losers find the
// winner's alias.
func (s *Keys) createManaged(ctx context.Context, alias string) (string, error) {
	name := strings.TrimPrefix(alias, managedAliasPrefix)
	if name == "" || strings.Contains(name, "/") {
		return "", Validationf("a managed alias is alias/managed/<service>, one name without /")
	}
	sys := withActivity(AsSystem(ctx), systemActivity(ActCreateKey, "", "alias", alias, "key_manager", string(ManagerService)))
	k, err := s.CreateKey(sys, CreateKeyInput{Alias: alias, managed: true, AutomaticRotation: true,
		RotationInterval: ManagedRotationInterval, Description: "default key of " + name + ", managed by hsmkms"})
	if errors.Is(err, ErrAlreadyExists) {
		s.cache.invalidateAlias(alias)
		return s.resolveID(ctx, alias)
	}
	if err != nil {
		return "", err
	}
	s.log.Info("created a managed default key", "alias", alias, "key_id", k.ID)
	return k.ID, nil
}
