package service

import (
	"context"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
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
	// (invocations.go): as loaded, raised by every count the change log or
	// this process's flush reports since.
	encryptions map[int]int64
	aliases     []string // the key's aliases, for policies on alias/<pattern>
}

// keyCache keeps keyViews and alias bindings in memory so that a warm
// encrypt or decrypt makes no database round trip, at any number of keys.
// An entry lives until a change to it is seen: at once when this process
// makes the change (invalidateKey), and from the store's change log
// (KeyChangesAfter) for changes of other replicas. The log is read at most
// twice per ttl while requests come (in the background once the last read
// is ttl/2 old; on the request path only when it is ttl old), so another
// replica's change is seen within ttl, as with entries that expire, but an
// untouched key is never read again. N concurrent misses on one key cause
// one load.
type keyCache struct {
	store KeyQueries
	clock Clock
	ttl   time.Duration
	// dbTimeout bounds one load or read of the log (sharedLoad).
	dbTimeout time.Duration

	mu      sync.RWMutex
	keys    map[string]*keyView
	aliases map[string]string // alias name -> key id
	loads   singleflight.Group
	// gen counts invalidations; a load that started before one does not
	// store its (possibly stale) result, and later requests do not join it
	// (it is part of the load's singleflight key).
	gen uint64

	// pos is the seq of the last change applied; known is false until the
	// first read of the log. Only poll touches them, one at a time (its
	// singleflight key).
	pos   int64
	known bool
	// fullAt is when the last read dropped every entry (the first one,
	// or MaxKeyViewAge after the previous one).
	fullAt time.Time
	// polledAt is when the last applied read of the log began (unix
	// nanoseconds of the clock; 0: never): every change committed before
	// then is reflected in the entries.
	polledAt atomic.Int64
	// polling is set while a background read of the log runs.
	polling atomic.Bool
}

const (
	// pollPage is how many rows of the change log one query reads;
	// pollMax how many one read of the log applies one by one before it
	// drops every entry instead (a process idle for long).
	pollPage = 5000
	pollMax  = 50000
	// keyChangesKept is how many rows of the change log the worker keeps
	// (PruneKeyChanges): a process that falls further behind drops every
	// entry once.
	keyChangesKept = 200000
)

func newKeyCache(store KeyQueries, clock Clock, ttl, dbTimeout time.Duration) *keyCache {
	return &keyCache{store: store, clock: clock, ttl: ttl, dbTimeout: dbTimeout,
		keys: map[string]*keyView{}, aliases: map[string]string{}}
}

// key returns the view of key id, loading it on a miss.
func (c *keyCache) key(ctx context.Context, id string) (*keyView, error) {
	if err := c.sync(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	v, ok := c.keys[id]
	gen := c.gen
	c.mu.RUnlock()
	if ok {
		return v, nil
	}
	r, err := sharedLoad(ctx, &c.loads, "k/"+strconv.FormatUint(gen, 10)+"/"+id, c.dbTimeout, func(ctx context.Context) (any, error) {
		return c.loadKey(ctx, id, gen)
	})
	if err != nil {
		return nil, err
	}
	return r.(*keyView), nil
}

// loadKey reads key id; it keeps the view unless an invalidation came
// after gen.
func (c *keyCache) loadKey(ctx context.Context, id string, gen uint64) (*keyView, error) {
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
		encryptions: make(map[int]int64, len(vs)), aliases: names[id]}
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
	if err := c.sync(ctx); err != nil {
		return "", err
	}
	c.mu.RLock()
	id, ok := c.aliases[name]
	gen := c.gen
	c.mu.RUnlock()
	if ok {
		return id, nil
	}
	r, err := sharedLoad(ctx, &c.loads, "a/"+strconv.FormatUint(gen, 10)+"/"+name, c.dbTimeout, func(ctx context.Context) (any, error) {
		a, err := c.store.GetAlias(ctx, name)
		if err != nil {
			return "", err
		}
		c.mu.Lock()
		if c.gen == gen {
			c.aliases[name] = a.KeyID
		}
		c.mu.Unlock()
		return a.KeyID, nil
	})
	if err != nil {
		return "", err
	}
	return r.(string), nil
}

// sync makes sure the entries reflect every change committed more than
// ttl ago: it reads the change log on the request path when the last read
// began ttl ago or more (or never happened), and starts a background read
// once it is ttl/2 old, so that a steady stream of requests never waits.
func (c *keyCache) sync(ctx context.Context) error {
	start := c.clock.Now()
	for {
		if at := c.polledAt.Load(); at != 0 {
			polled, now := time.Unix(0, at), c.clock.Now()
			// A clock set back since start: the bound counts from now,
			// or no read begun from here on would ever be fresh.
			if now.Before(start) {
				start = now
			}
			// Fresh: begun less than ttl before this request, and not
			// after now (a clock set back must not stretch the bound).
			if start.Sub(polled) < c.ttl && !polled.After(now) {
				if now.Sub(polled) >= c.ttl/2 && c.polling.CompareAndSwap(false, true) {
					go func() {
						defer c.polling.Store(false)
						_, _ = sharedLoad(context.Background(), &c.loads, "poll", c.dbTimeout, c.poll)
					}()
				}
				return nil
			}
		}
		// A read joined in flight may have begun too early: then this
		// loop reads again, and that read begins after start.
		if _, err := sharedLoad(ctx, &c.loads, "poll", c.dbTimeout, c.poll); err != nil {
			return err
		}
	}
}

// poll reads the change log after pos and applies it: a changed key's
// view and a changed alias are dropped, a new count of encryptions raises
// the view's. A gap in seq (rows pruned before this process read them),
// the first read, or a backlog over pollMax drop every entry.
func (c *keyCache) poll(ctx context.Context) (any, error) {
	start := c.clock.Now()
	if c.known && (start.Sub(c.fullAt) >= MaxKeyViewAge || start.Before(c.fullAt)) {
		c.known = false // a bound on what a log that lost rows could hide
	}
	if !c.known {
		last, err := c.store.LastKeyChange(ctx)
		if err != nil {
			return nil, err
		}
		c.apply(nil, true)
		c.pos, c.known, c.fullAt = last, true, start
		c.polledAt.Store(start.UnixNano())
		return nil, nil
	}
	var changes []KeyChange
	next, all := c.pos+1, false
	for {
		page, err := c.store.KeyChangesAfter(ctx, next-1, pollPage)
		if err != nil {
			return nil, err
		}
		for _, ch := range page {
			if ch.Seq != next {
				all = true // pruned: what is missing is unknown
			}
			next = ch.Seq + 1
		}
		changes = append(changes, page...)
		if len(page) < pollPage {
			break
		}
		if len(changes) >= pollMax {
			all = true // the rest is read by the next poll
			break
		}
	}
	c.apply(changes, all)
	c.pos = next - 1
	c.polledAt.Store(start.UnixNano())
	return nil, nil
}

// apply drops what changes name (everything when all).
func (c *keyCache) apply(changes []KeyChange, all bool) {
	if len(changes) == 0 && !all {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if all {
		c.keys = map[string]*keyView{}
		c.aliases = map[string]string{}
		return
	}
	for _, ch := range changes {
		switch {
		case ch.Counted:
			c.raiseCountLocked(ch.KeyID, ch.Version, ch.Encryptions)
		default:
			delete(c.keys, ch.KeyID)
			if ch.Alias != "" {
				delete(c.aliases, ch.Alias)
			}
		}
	}
}

// counted raises the cached count of encryptions of a version to total
// (this process's flush: its own counts leave the pending counters, and
// are then in the view at once).
func (c *keyCache) counted(keyID string, version int, total int64) {
	c.mu.Lock()
	c.gen++ // a load that read the count before the flush does not keep it
	c.raiseCountLocked(keyID, version, total)
	c.mu.Unlock()
}

// raiseCountLocked replaces the key's view by one whose count for version
// is at least total. Counts only grow: a lower one is older news.
func (c *keyCache) raiseCountLocked(keyID string, version int, total int64) {
	v, ok := c.keys[keyID]
	if !ok {
		return
	}
	old, has := v.encryptions[version]
	if !has || old >= total {
		return
	}
	nv := *v
	nv.encryptions = maps.Clone(v.encryptions)
	nv.encryptions[version] = total
	c.keys[keyID] = &nv
}

// invalidateKey drops a key's view after this process changed it.
func (c *keyCache) invalidateKey(id string) {
	c.mu.Lock()
	c.gen++
	delete(c.keys, id)
	c.mu.Unlock()
}

// invalidateAlias drops an alias binding after this process changed it.
func (c *keyCache) invalidateAlias(name string) {
	c.mu.Lock()
	c.gen++
	delete(c.aliases, name)
	c.mu.Unlock()
}

// invalidateAllAliases drops every alias binding (a deleted key lost all of
// its aliases at once).
func (c *keyCache) invalidateAllAliases() {
	c.mu.Lock()
	c.gen++
	c.aliases = map[string]string{}
	c.mu.Unlock()
}
