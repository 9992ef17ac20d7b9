package service_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

// countingStore counts the reads of the key cache: the loads of a key's
// view (key row, versions, aliases, alias bindings) and the reads of the
// change log.
type countingStore struct {
	service.Store
	mu    sync.Mutex
	loads int // GetKey, ListVersions, AliasNames, GetAlias
	polls int // KeyChangesAfter, LastKeyChange
}

func (c *countingStore) add(n *int) {
	c.mu.Lock()
	*n++
	c.mu.Unlock()
}

func (c *countingStore) counts() (loads, polls int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loads, c.polls
}

func (c *countingStore) GetKey(ctx context.Context, id string) (*service.Key, error) {
	c.add(&c.loads)
	return c.Store.GetKey(ctx, id)
}

func (c *countingStore) ListVersions(ctx context.Context, id string) ([]service.Version, error) {
	c.add(&c.loads)
	return c.Store.ListVersions(ctx, id)
}

func (c *countingStore) AliasNames(ctx context.Context, ids []string) (map[string][]string, error) {
	c.add(&c.loads)
	return c.Store.AliasNames(ctx, ids)
}

func (c *countingStore) GetAlias(ctx context.Context, name string) (*service.Alias, error) {
	c.add(&c.loads)
	return c.Store.GetAlias(ctx, name)
}

func (c *countingStore) KeyChangesAfter(ctx context.Context, after int64, limit int) ([]service.KeyChange, error) {
	c.add(&c.polls)
	return c.Store.KeyChangesAfter(ctx, after, limit)
}

func (c *countingStore) LastKeyChange(ctx context.Context) (int64, error) {
	c.add(&c.polls)
	return c.Store.LastKeyChange(ctx)
}

// A warm key that nobody changes is never read from the database again,
// however long it is used: the request path reads only the change log, at
// most a few times per CacheTTL whatever the number of requests, and
// never the key. (Before the change log, every view was read again each
// CacheTTL: three reads per key every 500 ms.)
func TestWarmKeyMakesNoStoreReads(t *testing.T) {
	w := newWorld(t)
	id := w.newKey()
	cs := &countingStore{Store: w.store}
	a := service.New(cs, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger()})
	enc := func() {
		t.Helper()
		if _, err := a.Crypto.Encrypt(w.ctx, id, []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	enc() // loads the view
	loads0, polls0 := cs.counts()
	if loads0 == 0 || polls0 == 0 {
		t.Fatalf("the first use read %d rows of the key and the log %d times, want both", loads0, polls0)
	}
	const requests, step = 400, 10 * time.Millisecond // 4 s: 8 CacheTTLs
	for range requests {
		w.clock.Advance(step)
		enc()
	}
	loads, polls := cs.counts()
	if loads != loads0 {
		t.Errorf("%d more reads of the key's rows over %d requests, want none", loads-loads0, requests)
	}
	ttls := int(requests * step / service.DefaultCacheTTL)
	if n := polls - polls0; n < ttls/2 || n > 4*ttls+2 {
		t.Errorf("%d reads of the change log over %d CacheTTLs, want about two per TTL", n, ttls)
	}

	// Another process's change is still seen within CacheTTL.
	if _, err := w.svc.Keys.DisableKey(w.ctx, id); err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(service.DefaultCacheTTL)
	if _, err := a.Crypto.Encrypt(w.ctx, id, []byte("x"), nil); !errors.Is(err, service.ErrDisabled) {
		t.Fatalf("encrypt a CacheTTL after another replica disabled the key: %v, want ErrDisabled", err)
	}
}

// Replica A holds a warm view of a key; replica B changes it; at most
// CacheTTL later A's requests see the change. A missed change would be a
// security bug (a disabled key that still encrypts), so each kind of
// change is tried, on a view A has just used.
func TestReplicaChangeSeenWithinCacheTTL(t *testing.T) {
	tests := []struct {
		name   string
		change func(w *world, b *service.Service, id string) error
		// check is A's encrypt with alias/shared after the change.
		check func(r *service.CryptoResult, err error, id string) error
	}{
		{"disable", func(w *world, b *service.Service, id string) error {
			_, err := b.Keys.DisableKey(w.ctx, id)
			return err
		}, func(r *service.CryptoResult, err error, id string) error {
			if !errors.Is(err, service.ErrDisabled) {
				return errors.New("want ErrDisabled")
			}
			return nil
		}},
		{"schedule deletion", func(w *world, b *service.Service, id string) error {
			_, err := b.Keys.ScheduleKeyDeletion(w.ctx, id, 7)
			return err
		}, func(r *service.CryptoResult, err error, id string) error {
			if !errors.Is(err, service.ErrInvalidState) {
				return errors.New("want ErrInvalidState")
			}
			return nil
		}},
		{"rotate: the old version is decrypt-only", func(w *world, b *service.Service, id string) error {
			_, err := b.Worker.RotateKey(w.ctx, id)
			return err
		}, func(r *service.CryptoResult, err error, id string) error {
			if err != nil || r.KeyVersion != 2 {
				return errors.New("want version 2")
			}
			return nil
		}},
		{"alias moved to another key", func(w *world, b *service.Service, id string) error {
			other, err := b.Keys.CreateKey(w.ctx, service.CreateKeyInput{})
			if err != nil {
				return err
			}
			_, err = b.Keys.UpdateAlias(w.ctx, "alias/shared", other.ID)
			return err
		}, func(r *service.CryptoResult, err error, id string) error {
			if err != nil || r.KeyID == id {
				return errors.New("want the alias's new key")
			}
			return nil
		}},
		{"alias deleted", func(w *world, b *service.Service, id string) error {
			return b.Keys.DeleteAlias(w.ctx, "alias/shared")
		}, func(r *service.CryptoResult, err error, id string) error {
			if !errors.Is(err, service.ErrNotFound) {
				return errors.New("want ErrNotFound")
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			a := service.New(w.store, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger()})
			b := w.svc
			k, err := b.Keys.CreateKey(w.ctx, service.CreateKeyInput{Alias: "alias/shared"})
			if err != nil {
				t.Fatal(err)
			}
			// A's view is warm, and A has read the log since.
			for range 3 {
				if _, err := a.Crypto.Encrypt(w.ctx, "alias/shared", []byte("x"), nil); err != nil {
					t.Fatal(err)
				}
				w.clock.Advance(service.DefaultCacheTTL / 2)
			}
			if err := tt.change(w, b, k.ID); err != nil {
				t.Fatal(err)
			}
			w.clock.Advance(service.DefaultCacheTTL)
			r, err := a.Crypto.Encrypt(w.ctx, "alias/shared", []byte("x"), nil)
			if cerr := tt.check(r, err, k.ID); cerr != nil {
				t.Fatalf("A's encrypt a CacheTTL after B's change: %+v %v; %v", r, err, cerr)
			}
		})
	}
}

// A process that fell behind the change log (rows pruned before it read
// them) cannot tell what it missed: it drops every view, and still sees
// the change.
func TestPrunedChangeLogDropsEveryView(t *testing.T) {
	w := newWorld(t)
	a := service.New(w.store, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger()})
	id, other := w.newKey(), w.newKey()
	if _, err := a.Crypto.Encrypt(w.ctx, id, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.Keys.DisableKey(w.ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.Keys.TagKey(w.ctx, other, map[string]string{"later": "yes"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.store.PruneKeyChanges(w.ctx, 1); err != nil { // only the tag's row is left
		t.Fatal(err)
	}
	w.clock.Advance(service.DefaultCacheTTL)
	if _, err := a.Crypto.Encrypt(w.ctx, id, []byte("x"), nil); !errors.Is(err, service.ErrDisabled) {
		t.Fatalf("encrypt after the disable's row was pruned unread: %v, want ErrDisabled", err)
	}
}

// The GCM invocation limit counts every replica's flushed encryptions:
// another replica's flush reaches this one's view through the change log
// (within CacheTTL), this process's own at once.
func TestInvocationLimitAcrossReplicas(t *testing.T) {
	w := newWorld(t)
	cfg := service.Config{Clock: w.clock, Logger: kmstest.Logger(), RotateAfterEncryptions: 100, MaxEncryptions: 6}
	a, b := service.New(w.store, w.token, cfg), service.New(w.store, w.token, cfg)
	k, err := b.Keys.CreateKey(w.ctx, service.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	enc := func(s *service.Service) error {
		_, err := s.Crypto.Encrypt(w.ctx, k.ID, []byte("x"), nil)
		return err
	}
	for _, s := range []*service.Service{a, a, b, b, b} {
		if err := enc(s); err != nil {
			t.Fatal(err)
		}
	}
	// A flushes its 2: its own view has them at once (its pending count is
	// now 0). B flushes its 3: A learns them from the log.
	if err := a.Worker.FlushEncryptions(w.ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Worker.FlushEncryptions(w.ctx); err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(service.DefaultCacheTTL)
	if err := enc(a); err != nil { // the sixth
		t.Fatalf("the sixth encryption: %v", err)
	}
	if err := enc(a); !errors.Is(err, service.ErrLimitExceeded) {
		t.Fatalf("a seventh encryption on A, B's three flushed: %v, want ErrLimitExceeded", err)
	}

	// Right after its own flush, with no read of the log since, A still
	// counts what it flushed.
	k, err = a.Keys.CreateKey(w.ctx, service.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := enc(a); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Worker.FlushEncryptions(w.ctx); err != nil {
		t.Fatal(err)
	}
	if err := enc(a); err != nil {
		t.Fatalf("the sixth encryption: %v", err)
	}
	if err := enc(a); !errors.Is(err, service.ErrLimitExceeded) {
		t.Fatalf("a seventh encryption right after A flushed five: %v, want ErrLimitExceeded", err)
	}
}

// A clock set back does not stretch how long a view is used unchecked:
// the change log is read again.
func TestCacheClockSetBack(t *testing.T) {
	w := newWorld(t)
	a := service.New(w.store, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger()})
	id := w.newKey()
	if _, err := a.Crypto.Encrypt(w.ctx, id, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.Keys.DisableKey(w.ctx, id); err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(-time.Hour)
	if _, err := a.Crypto.Encrypt(w.ctx, id, []byte("x"), nil); !errors.Is(err, service.ErrDisabled) {
		t.Fatalf("encrypt after the clock went back an hour, the key disabled meanwhile: %v, want ErrDisabled", err)
	}
}

// TestCacheClockSetBackDuringARead: a clock set back while the change log
// is read leaves that read begun "after now", and the next read begun long
// before the request; neither may make the request read again and again
// until its time runs out.
func TestCacheClockSetBackDuringARead(t *testing.T) {
	w := newWorld(t)
	id := w.newKey()
	fs := kmstest.NewFaultStore(w.store)
	a := service.New(fs, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger()})
	fs.AfterNext("LastKeyChange", func() { w.clock.Advance(-time.Hour) })
	ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
	defer cancel()
	if _, err := a.Crypto.Encrypt(ctx, id, []byte("x"), nil); err != nil {
		t.Fatalf("encrypt with the clock set back during the cache's read: %v", err)
	}
}

// TestLostChangeLogRowsBoundedByMaxKeyViewAge: a change log that lost rows
// this process had read (a failover to a standby behind the primary) hands
// out their numbers again, so a later disable gets a number the cache
// thinks it has seen. The view then lives at most MaxKeyViewAge: after it
// the cache drops all and reads the head again, and the disable is seen.
func TestLostChangeLogRowsBoundedByMaxKeyViewAge(t *testing.T) {
	dsn, raw := insiderDB(t)
	st := kmstest.StoreAt(t, dsn)
	clock, tok := kmstest.NewClock(), kmstest.Token(t)
	ctx := kmstest.Ctx(t)
	cfg := service.Config{Clock: clock, Logger: kmstest.Logger()}
	a, b := service.New(st, tok, cfg), service.New(st, tok, cfg)
	k, err := b.Keys.CreateKey(ctx, service.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Crypto.Encrypt(ctx, k.ID, []byte("x"), nil); err != nil { // A's view is warm
		t.Fatal(err)
	}
	// Rows A reads, then loses: the failover.
	mark := sqlInt(t, raw, `SELECT COALESCE(MAX(seq), 0) FROM key_changes`)
	for range 3 {
		if _, err := b.Keys.TagKey(ctx, k.ID, map[string]string{"n": "x"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(service.DefaultCacheTTL)
	if _, err := a.Crypto.Encrypt(ctx, k.ID, []byte("x"), nil); err != nil { // A reads them
		t.Fatal(err)
	}
	sqlExec(t, raw, `DELETE FROM key_changes WHERE seq > ?`, mark)
	sqlExec(t, raw, `UPDATE key_change_counter SET seq = ?`, mark) // SQLite numbers from it
	if _, err := b.Keys.DisableKey(ctx, k.ID); err != nil {        // logged under a number A has seen
		t.Fatal(err)
	}
	clock.Advance(service.DefaultCacheTTL)
	if _, err := a.Crypto.Encrypt(ctx, k.ID, []byte("x"), nil); err != nil {
		t.Fatalf("encrypt right after the hidden disable: %v; the test did not hide it from the log", err)
	}
	clock.Advance(service.MaxKeyViewAge)
	if _, err := a.Crypto.Encrypt(ctx, k.ID, []byte("x"), nil); !errors.Is(err, service.ErrDisabled) {
		t.Fatalf("encrypt MaxKeyViewAge after a disable the log hid: %v, want ErrDisabled", err)
	}
}

// hookStore runs hook once, right after the first ListVersions of key id
// returns: a change made there lands while a load of id is in flight.
type hookStore struct {
	service.Store
	id   string
	once sync.Once
	hook func()
}

func (h *hookStore) ListVersions(ctx context.Context, id string) ([]service.Version, error) {
	vs, err := h.Store.ListVersions(ctx, id)
	if id == h.id {
		h.once.Do(h.hook)
	}
	return vs, err
}

// TestLoadRacingAChangeKeepsNoStaleView: a view lives until a change to
// its key is seen, so a load that read the key before a change, and
// stores its view after the change log's read applied that change, would
// keep the stale view for good. Replica B disables the key while A's load
// of it is between its reads, and A reads the log (another request) before
// the load finishes: A must not keep the enabled view.
func TestLoadRacingAChangeKeepsNoStaleView(t *testing.T) {
	w := newWorld(t)
	b := w.svc
	k, err := b.Keys.CreateKey(w.ctx, service.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	other := w.newKey()
	hs := &hookStore{Store: w.store, id: k.ID}
	a := service.New(hs, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger()})
	if _, err := a.Crypto.Encrypt(w.ctx, other, []byte("x"), nil); err != nil { // A has read the log
		t.Fatal(err)
	}
	hs.hook = func() {
		if _, err := b.Keys.DisableKey(w.ctx, k.ID); err != nil {
			t.Error(err)
		}
		w.clock.Advance(service.DefaultCacheTTL)
		if _, err := a.Crypto.Encrypt(w.ctx, other, []byte("x"), nil); err != nil { // A reads the log: the disable
			t.Error(err)
		}
	}
	// This request began before the disable and may use what it read.
	_, _ = a.Crypto.Encrypt(w.ctx, k.ID, []byte("x"), nil)
	w.clock.Advance(time.Millisecond)
	if _, err := a.Crypto.Encrypt(w.ctx, k.ID, []byte("x"), nil); !errors.Is(err, service.ErrDisabled) {
		t.Fatalf("encrypt after a disable that raced A's load: %v, want ErrDisabled (a stale view was kept)", err)
	}
}
