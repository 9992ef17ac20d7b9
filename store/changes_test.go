package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

// Every write to keys, versions and aliases appends to the change log in
// its transaction, in order, with a dense seq; the lease and a rolled-back
// transaction append nothing; a count of encryptions is its own kind of
// row; pruning keeps the newest rows.
func TestKeyChanges(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		next := int64(0)
		// expect reads what was appended since the last call.
		expect := func(what string, want ...service.KeyChange) {
			t.Helper()
			got, err := s.KeyChangesAfter(ctx, next, 0)
			noErr(t, err)
			for i := range want {
				want[i].Seq = next + int64(i) + 1
			}
			if len(got) != len(want) {
				t.Fatalf("%s: changes\n got %+v\nwant %+v", what, got, want)
			}
			if len(want) > 0 {
				deepEqual(t, what, got, want)
			}
			next += int64(len(want))
		}
		key := func(id string) service.KeyChange { return service.KeyChange{KeyID: id} }
		alias := func(id, name string) service.KeyChange { return service.KeyChange{KeyID: id, Alias: name} }

		last, err := s.LastKeyChange(ctx)
		noErr(t, err)
		if last != 0 {
			t.Fatalf("LastKeyChange of an empty log = %d", last)
		}
		k := newKey("k1")
		noErr(t, s.InsertKey(ctx, k))
		noErr(t, s.InsertVersion(ctx, newVersion("k1", 1, service.VersionPrimary)))
		expect("insert key and version", key("k1"), key("k1"))
		k.State = service.KeyDisabled
		noErr(t, s.UpdateKey(ctx, k))
		expect("update key", key("k1"))
		v := newVersion("k1", 1, service.VersionDecryptOnly)
		noErr(t, s.UpdateVersion(ctx, v))
		expect("update version", key("k1"))
		n := []service.EncryptionCount{{KeyID: "k1", Version: 1, Count: 5}}
		noErr(t, s.InTx(ctx, func(q service.Queries) error { return q.AddEncryptions(ctx, n) }))
		expect("count encryptions", service.KeyChange{KeyID: "k1", Version: 1, Counted: true, Encryptions: 5})

		mustInsertKeys(t, s, "k2")
		expect("insert k2", key("k2"))
		noErr(t, s.InsertAlias(ctx, &service.Alias{Name: "alias/a", KeyID: "k1", CreatedAt: t0, UpdatedAt: t0}))
		expect("insert alias", alias("k1", "alias/a"))
		noErr(t, s.UpdateAlias(ctx, &service.Alias{Name: "alias/a", KeyID: "k2", UpdatedAt: t0}))
		expect("rebind alias", alias("k1", "alias/a"), alias("k2", "alias/a"))
		noErr(t, s.DeleteAlias(ctx, "alias/a"))
		expect("delete alias", alias("k2", "alias/a"))
		noErr(t, s.InsertAlias(ctx, &service.Alias{Name: "alias/b", KeyID: "k2", CreatedAt: t0, UpdatedAt: t0}))
		noErr(t, s.DeleteAliasesOfKey(ctx, "k2"))
		expect("aliases of a key", alias("k2", "alias/b"), alias("k2", "alias/b"))

		// The lease is not part of what requests see.
		ok, err := s.ClaimKey(ctx, "k1", "worker", t0, at(time.Minute))
		noErr(t, err)
		if !ok {
			t.Fatal("claim refused")
		}
		noErr(t, s.ReleaseKey(ctx, "k1", "worker"))
		expect("lease")

		// A rolled-back transaction leaves no row and no gap.
		boom := errors.New("boom")
		err = s.InTx(ctx, func(q service.Queries) error {
			noErr(t, q.InsertKey(ctx, newKey("k3")))
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		expect("rollback")

		// A deleted key takes its versions and aliases with it (cascade),
		// and each is logged.
		noErr(t, s.InsertAlias(ctx, &service.Alias{Name: "alias/c", KeyID: "k1", CreatedAt: t0, UpdatedAt: t0}))
		expect("alias c", alias("k1", "alias/c"))
		noErr(t, s.DeleteKey(ctx, "k1"))
		got, err := s.KeyChangesAfter(ctx, next, 0)
		noErr(t, err)
		var aliasGone, keyGone bool
		for i, ch := range got {
			if ch.Seq != next+int64(i)+1 || ch.KeyID != "k1" {
				t.Errorf("delete key: change %+v", ch)
			}
			aliasGone = aliasGone || ch.Alias == "alias/c"
			keyGone = keyGone || (ch.Alias == "" && !ch.Counted)
		}
		if !aliasGone || !keyGone {
			t.Errorf("delete key: changes %+v, want the key and its alias", got)
		}
		next += int64(len(got))

		last, err = s.LastKeyChange(ctx)
		noErr(t, err)
		if last != next {
			t.Errorf("LastKeyChange = %d, want %d", last, next)
		}
		noErr(t, s.PruneKeyChanges(ctx, 2))
		got, err = s.KeyChangesAfter(ctx, 0, 0)
		noErr(t, err)
		if len(got) != 2 || got[0].Seq != next-1 || got[1].Seq != next {
			t.Errorf("after pruning to 2: %+v, want seqs %d and %d", got, next-1, next)
		}
		noErr(t, s.PruneKeyChanges(ctx, 0)) // the newest row stays
		if got, err = s.KeyChangesAfter(ctx, 0, 0); err != nil || len(got) != 1 || got[0].Seq != next {
			t.Errorf("after pruning to 0: %+v %v, want seq %d only", got, err, next)
		}
		mustInsertKeys(t, s, "k4")
		if got, err = s.KeyChangesAfter(ctx, next, 0); err != nil || len(got) != 1 || got[0].Seq != next+1 {
			t.Errorf("after pruning, a change: %+v %v, want seq %d", got, err, next+1)
		}
	})
}

// Concurrent writers (replicas: several connections) never let a reader see
// seq n+1 before n: every read of the log is a gapless prefix.
func TestKeyChangesCommitInOrder(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		const writers, each = 4, 25
		for w := range writers {
			mustInsertKeys(t, s, string(rune('a'+w)))
		}
		start, err := s.LastKeyChange(ctx)
		noErr(t, err)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				id := string(rune('a' + w))
				for i := range each {
					err := s.InTx(ctx, func(q service.Queries) error {
						k, err := q.LockKey(ctx, id)
						if err != nil {
							return err
						}
						k.Description = "d" + string(rune('0'+i%10))
						if err := q.UpdateKey(ctx, k); err != nil {
							return err
						}
						// Hold the transaction a little after the change,
						// so that commits interleave.
						time.Sleep(time.Millisecond)
						return nil
					})
					if err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		readDone := make(chan struct{})
		var readErr error
		go func() {
			defer close(readDone)
			pos := start
			for pos < start+writers*each {
				got, err := s.KeyChangesAfter(context.Background(), pos, 0)
				if err != nil {
					readErr = err
					return
				}
				for _, ch := range got {
					if ch.Seq != pos+1 {
						readErr = errors.New("gap in the change log: a later seq committed first")
						return
					}
					pos = ch.Seq
				}
			}
		}()
		wg.Wait()
		select {
		case <-readDone:
		case <-time.After(time.Minute):
			t.Fatal("the reader never saw every change")
		}
		noErr(t, readErr)
	})
}
