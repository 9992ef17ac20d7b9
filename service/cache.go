package service

import (
	"context"
	"sync"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"golang.org/x/sync/singleflight"
)

// keyView is what the request path needs of a key: its row and the state of
// each version. It is immutable once built; changes replace it.
type keyView struct {
	key      Key
	versions map[int]VersionState
	refs     map[int]hsm.ObjectRef // each version's token name (refOf)
	// encryptions is each version's count of encryptions in the store
	// when the view was loaded (invocations.go).
	encryptions map[int]int64
	aliases     []string // the key's aliases, for policies on alias/<pattern>
	loadedAt    time.Time
}

// keyCache keeps keyViews and alias bindings in memory so that a warm
// encrypt or decrypt makes no database round trip. Entries live for ttl (so
// another replica's change is seen within ttl) and are dropped at once when
// this process changes them. N concurrent misses on one key cause one load.
type keyCache struct {
	store KeyQueries
	clock Clock
	ttl   time.Duration
	// dbTimeout bounds one load (sharedLoad).
	dbTimeout time.Duration

	mu      sync.RWMutex
	keys    map[string]*keyView
	aliases map[string]aliasEntry
	loads   singleflight.Group
	// gen counts invalidations; a load that started before one does not
	// store its (possibly stale) result.
	gen uint64
}

type aliasEntry struct {
	keyID    string
	loadedAt time.Time
}

func newKeyCache(store KeyQueries, clock Clock, ttl, dbTimeout time.Duration) *keyCache {
	return &keyCache{store: store, clock: clock, ttl: ttl, dbTimeout: dbTimeout,
		keys: map[string]*keyView{}, aliases: map[string]aliasEntry{}}
}

func (c *keyCache) fresh(loadedAt time.Time) bool {
	return c.clock.Now().Sub(loadedAt) < c.ttl
}

// key returns the view of key id, loading it on a miss or when stale.
func (c *keyCache) key(ctx context.Context, id string) (*keyView, error) {
	c.mu.RLock()
	v, ok := c.keys[id]
	c.mu.RUnlock()
	if ok && c.fresh(v.loadedAt) {
		return v, nil
	}
	r, err := sharedLoad(ctx, &c.loads, "k/"+id, c.dbTimeout, func(ctx context.Context) (any, error) {
		return c.loadKey(ctx, id)
	})
	if err != nil {
		return nil, err
	}
	return r.(*keyView), nil
}

func (c *keyCache) loadKey(ctx context.Context, id string) (*keyView, error) {
	c.mu.RLock()
	gen := c.gen
	c.mu.RUnlock()
	// The view is as old as its first read: a change committed on another
	// replica just after it is seen within the TTL, however slow the reads.
	loadedAt := c.clock.Now()
	// The key row and its versions are two reads: a rotation committed
	// between them (here or on another replica) shows a primary version
	// that is not Primary. Read again until both agree.
	var k *Key
	var vs []Version
	for attempt := 0; ; attempt++ {
		var err error
		if k, err = c.store.GetKey(ctx, id); err != nil {
			return nil, err
		}
		if vs, err = c.store.ListVersions(ctx, id); err != nil {
			return nil, err
		}
		if k.PrimaryVersion == 0 || attempt == 4 || primaryIs(vs, k.PrimaryVersion) {
			break
		}
	}
	names, err := c.store.AliasNames(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	v := &keyView{key: *k, versions: make(map[int]VersionState, len(vs)), refs: make(map[int]hsm.ObjectRef, len(vs)),
		encryptions: make(map[int]int64, len(vs)), aliases: names[id], loadedAt: loadedAt}
	for i, ver := range vs {
		v.versions[ver.Version] = ver.State
		v.refs[ver.Version] = refOf(&vs[i])
		v.encryptions[ver.Version] = ver.Encryptions
	}
	c.mu.Lock()
	if c.gen == gen {
		c.keys[id] = v
	}
	c.mu.Unlock()
	return v, nil
}

// primaryIs says whether version n is the Primary one of vs.
func primaryIs(vs []Version, n int) bool {
	for _, v := range vs {
		if v.Version == n {
			return v.State == VersionPrimary
		}
	}
	return false
}

// alias returns the key id an alias names.
func (c *keyCache) alias(ctx context.Context, name string) (string, error) {
	c.mu.RLock()
	e, ok := c.aliases[name]
	c.mu.RUnlock()
	if ok && c.fresh(e.loadedAt) {
		return e.keyID, nil
	}
	r, err := sharedLoad(ctx, &c.loads, "a/"+name, c.dbTimeout, func(ctx context.Context) (any, error) {
		c.mu.RLock()
		gen := c.gen
		c.mu.RUnlock()
		loadedAt := c.clock.Now()
		a, err := c.store.GetAlias(ctx, name)
		if err != nil {
			return "", err
		}
		c.mu.Lock()
		if c.gen == gen {
			c.aliases[name] = aliasEntry{keyID: a.KeyID, loadedAt: loadedAt}
		}
		c.mu.Unlock()
		return a.KeyID, nil
	})
	if err != nil {
		return "", err
	}
	return r.(string), nil
}

// invalidateKey drops a key's view after this process changed it.
func (c *keyCache) invalidateKey(id string) {
	c.mu.Lock()
	c.gen++
	delete(c.keys, id)
	c.mu.Unlock()
	c.loads.Forget("k/" + id)
}

// invalidateAlias drops an alias binding after this process changed it.
func (c *keyCache) invalidateAlias(name string) {
	c.mu.Lock()
	c.gen++
	delete(c.aliases, name)
	c.mu.Unlock()
	c.loads.Forget("a/" + name)
}

// invalidateAllAliases drops every alias binding (a deleted key lost all of
// its aliases at once).
func (c *keyCache) invalidateAllAliases() {
	c.mu.Lock()
	c.gen++
	c.aliases = map[string]aliasEntry{}
	c.mu.Unlock()
}
