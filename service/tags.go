package service

import (
	"context"
	"maps"
	"time"

	"github.com/hsmkms/hsmkms/policy"
)

// TagKey sets the tags of set (adding or replacing) and removes the keys of
// remove, in one transaction under the key's lock, so that concurrent tag
// changes of one key never lose each other's (AWS TagResource and
// UntagResource; UpdateKey replaces the whole set). It is authorised as
// kms:UpdateKey, and the result obeys the limits UpdateKey checks.
func (s *Keys) TagKey(ctx context.Context, ref string, set map[string]string, remove []string) (*Key, error) {
	if err := validateTags(set); err != nil {
		return nil, err
	}
	return s.tryChangeKey(ctx, ActUpdateKey, ref, policy.OpUpdate, func(_ KeysTx, k *Key, _ time.Time) error {
		tags := maps.Clone(k.Tags)
		if tags == nil {
			tags = map[string]string{}
		}
		maps.Copy(tags, set)
		for _, r := range remove {
			delete(tags, r)
		}
		if err := validateTags(tags); err != nil {
			return err
		}
		k.Tags = tags
		return nil
	})
}
