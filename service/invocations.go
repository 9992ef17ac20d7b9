package service

import (
	"context"
	"sync"
	"sync/atomic"
)

// The GCM invocation limit. With a random 96-bit IV per encryption, NIST SP
// 800-38D (8.3) allows at most 2^32 encryptions under one key: beyond that
// the chance that two IVs collide, which reveals the GCM hash key and the
// XOR of two plaintexts, exceeds 2^-32. The service counts encryptions per
// version in memory (one atomic add on the request path, no database
// write, in Crypto), adds the counts to the version rows in batches
// (Worker.FlushEncryptions, every worker tick and at Close), rotates a key automatically when its
// primary version passes Config.RotateAfterEncryptions, and refuses to
// encrypt under a version at Config.MaxEncryptions. Counts of several
// replicas add up in the database; what a replica has not flushed yet
// (at most one tick's worth, lost if it crashes) is far below the margin
// between the defaults and 2^32.

type versionKey struct {
	keyID   string
	version int
}

// invocations counts this process's encryptions per version not yet added
// to the store.
type invocations struct {
	m sync.Map // versionKey -> *atomic.Int64
}

func (iv *invocations) counter(keyID string, version int) *atomic.Int64 {
	k := versionKey{keyID, version}
	if c, ok := iv.m.Load(k); ok {
		return c.(*atomic.Int64)
	}
	c, _ := iv.m.LoadOrStore(k, new(atomic.Int64))
	return c.(*atomic.Int64)
}

// pending is what this process counted for the version and not flushed.
func (iv *invocations) pending(keyID string, version int) int64 {
	if c, ok := iv.m.Load(versionKey{keyID, version}); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

// take empties the counters into a batch.
func (iv *invocations) take() []EncryptionCount {
	var out []EncryptionCount
	iv.m.Range(func(k, c any) bool {
		if n := c.(*atomic.Int64).Swap(0); n > 0 {
			vk := k.(versionKey)
			out = append(out, EncryptionCount{KeyID: vk.keyID, Version: vk.version, Count: n})
		}
		return true
	})
	return out
}

// giveBack returns a batch that could not be written.
func (iv *invocations) giveBack(batch []EncryptionCount) {
	for _, b := range batch {
		iv.counter(b.KeyID, b.Version).Add(b.Count)
	}
}

// checkInvocations refuses an encryption under version n of v's key once
// the version has made Config.MaxEncryptions: the store's count as the view
// knows it (loaded, then raised by this process's flushes at once and by
// other replicas' through the key cache's change log, within CacheTTL),
// plus this process's since its last flush.
func (s *Crypto) checkInvocations(v *keyView, n int) error {
	used := v.encryptions[n] + s.invocations.pending(v.key.ID, n)
	if used >= s.maxEncryptions {
		return errorf(ErrLimitExceeded, "version %d of key %s has made %d encryptions, the most this service makes under one AES-GCM key "+
			"with random IVs (NIST SP 800-38D): rotate the key (or, for imported material, import into a new key)", n, v.key.ID, used)
	}
	return nil
}

// FlushEncryptions adds this process's counts of encryptions to the store
// and rotates the keys whose primary version passed
// Config.RotateAfterEncryptions. The worker calls it every tick, Close once
// more; it is exported for tests and for a clean shutdown.
func (s *Worker) FlushEncryptions(ctx context.Context) error {
	batch := s.invocations.take()
	if len(batch) == 0 {
		return nil
	}
	if err := s.countTx(ctx, func(q EncryptionQueries) error { return q.AddEncryptions(ctx, batch) }); err != nil {
		s.invocations.giveBack(batch)
		return s.storeErr(err)
	}
	for _, b := range batch {
		if b.Total > 0 {
			s.keys.cache.counted(b.KeyID, b.Version, b.Total)
		}
		s.stats.encryptions.Add(uint64(b.Count))
		for {
			max := s.stats.maxEncryptions.Load()
			if b.Total <= max || s.stats.maxEncryptions.CompareAndSwap(max, b.Total) {
				break
			}
		}
		if b.Total < s.cfg.RotateAfterEncryptions {
			continue
		}
		if err := s.rotateAtLimit(ctx, b); err != nil {
			s.log.Error("rotation at the GCM invocation limit", "key_id", b.KeyID, "version", b.Version, "encryptions", b.Total, "err", err)
		}
	}
	return nil
}

// rotateAtLimit rotates b's key when b's version is still its primary one.
func (s *Worker) rotateAtLimit(ctx context.Context, b EncryptionCount) error {
	k, err := s.store.GetKey(ctx, b.KeyID)
	if err != nil {
		return s.storeErr(err)
	}
	if k.PrimaryVersion != b.Version {
		return nil // rotated already
	}
	if k.Origin == OriginExternal {
		s.log.Warn("an imported key's version passed the GCM rotation threshold; EXTERNAL keys do not rotate: import into a new key and move the alias",
			"key_id", b.KeyID, "version", b.Version, "encryptions", b.Total, "limit", s.cfg.MaxEncryptions)
		return nil
	}
	_, err = s.rotate(ctx, b.KeyID, RotationAutomatic)
	return err
}

// overInvocations says whether k's primary version passed
// Config.RotateAfterEncryptions, as the store counts: an automatic rotation
// is then due whatever the schedule says.
func (s *Worker) overInvocations(ctx context.Context, k *Key) (bool, error) {
	if k.PrimaryVersion == 0 {
		return false, nil
	}
	v, err := s.store.GetVersion(ctx, k.ID, k.PrimaryVersion)
	if err != nil {
		return false, s.storeErr(err)
	}
	return v.Encryptions >= s.cfg.RotateAfterEncryptions, nil
}
