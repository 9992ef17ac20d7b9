package service

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"
)

// LeaseQueries take and drop a key's lease: the claim that makes one
// change of a key (a rotation, a deletion, an import) happen once, even
// across replicas.
type LeaseQueries interface {
	// ClaimKey takes a lease on a key for owner until `until`, atomically:
	// it succeeds when the key has no lease, the lease expired (lease_until
	// <= now) or owner already holds it. One due rotation is therefore done
	// by exactly one worker even across replicas.
	ClaimKey(ctx context.Context, keyID, owner string, now, until time.Time) (bool, error)
	// ReleaseKey drops owner's lease on the key (no-op if owner does not hold it).
	ReleaseKey(ctx context.Context, keyID, owner string) error
}

// leases is the one lease helper: every claim of a key's lease by this
// process goes through it.
type leases struct {
	base
	store    LeaseQueries
	duration time.Duration // how long a crashed holder blocks others
	instance string        // identifies this process in key leases
	n        atomic.Uint64 // makes every lease owner unique
}

// lease is one claim that succeeded; release drops it.
type lease struct {
	l     *leases
	keyID string
	owner string
}

// claim takes id's lease at now (the clock's time, returned too). It
// returns a nil lease, without error, when someone else holds it; errors
// are the store's, untranslated, so that the caller can tell a missing key.
func (l *leases) claim(ctx context.Context, id string) (*lease, time.Time, error) {
	// A fresh owner per claim: two goroutines of one process never share
	// a lease.
	owner := l.instance + "/" + strconv.FormatUint(l.n.Add(1), 10)
	now := l.now()
	ok, err := l.store.ClaimKey(ctx, id, owner, now, now.Add(l.duration))
	if err != nil || !ok {
		return nil, now, err
	}
	return &lease{l: l, keyID: id, owner: owner}, now, nil
}

// release drops the lease; if the store cannot be reached, it expires by
// itself.
func (le *lease) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := le.l.store.ReleaseKey(ctx, le.keyID, le.owner); err != nil {
		le.l.log.Warn("release key lease; it expires by itself", "key_id", le.keyID, "err", err)
	}
}

// hold takes the key's lease for a request: held by someone else, it is
// Conflict (retry). Call release when done.
func (l *leases) hold(ctx context.Context, id string) (release func(), err error) {
	le, _, err := l.claim(ctx, id)
	if err == nil && le == nil {
		err = errorf(ErrConflict, "key %s is busy; retry", id)
	}
	if err != nil {
		return nil, l.storeErr(err)
	}
	return le.release, nil
}

// with runs fn while holding the key's lease; if another worker holds it,
// fn is skipped (the item stays due and is retried next pass).
func (l *leases) with(ctx context.Context, id string, fn func(now time.Time) error) error {
	le, now, err := l.claim(ctx, id)
	if err != nil || le == nil {
		return l.storeErr(err)
	}
	defer le.release()
	return fn(now)
}
