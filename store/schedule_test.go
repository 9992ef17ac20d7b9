package store

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

func TestDueRotations(t *testing.T) {
	now := at(24 * time.Hour)
	rotating := func(id string, next *time.Time, edit func(k *service.Key)) *service.Key {
		k := newKey(id)
		k.RotationEnabled, k.RotationInterval, k.NextRotation = true, 24*time.Hour, next
		if edit != nil {
			edit(k)
		}
		return k
	}
	keys := []*service.Key{
		rotating("exactly-now", ptr(now), nil),
		rotating("overdue", ptr(now.Add(-time.Hour)), nil),
		rotating("most-overdue", ptr(now.Add(-48*time.Hour)), nil),
		// The next microsecond is not due yet (now has nanoseconds, and the
		// store compares microseconds).
		rotating("future", ptr(now.Add(time.Microsecond)), nil),
		rotating("no-next", nil, nil),
		rotating("off", ptr(now.Add(-time.Hour)), func(k *service.Key) { k.RotationEnabled = false }),
		rotating("external", ptr(now.Add(-time.Hour)), func(k *service.Key) { k.Origin = service.OriginExternal }),
		rotating("disabled", ptr(now.Add(-time.Hour)), func(k *service.Key) { k.State = service.KeyDisabled }),
		rotating("deleting", ptr(now.Add(-time.Hour)), func(k *service.Key) { k.State = service.KeyPendingDeletion }),
	}
	tests := []struct {
		limit int
		want  []string
	}{
		{0, []string{"most-overdue", "overdue", "exactly-now"}},
		{2, []string{"most-overdue", "overdue"}},
		{100, []string{"most-overdue", "overdue", "exactly-now"}},
	}
	eachStore(t, func(t *testing.T, s *DB) {
		for _, k := range keys {
			noErr(t, s.InsertKey(t.Context(), k))
		}
		for _, tt := range tests {
			got, err := s.DueRotations(t.Context(), now, tt.limit)
			noErr(t, err)
			deepEqual(t, fmt.Sprintf("limit %d", tt.limit), got, tt.want)
		}
		none, err := s.DueRotations(t.Context(), now.Add(-100*time.Hour), 0)
		noErr(t, err)
		deepEqual(t, "nothing due", none, []string{})
	})
}

func TestDueDeletions(t *testing.T) {
	now := at(7 * 24 * time.Hour)
	deleting := func(id string, state service.KeyState, date *time.Time) *service.Key {
		k := newKey(id)
		k.State, k.DeletionDate = state, date
		return k
	}
	keys := []*service.Key{
		deleting("exactly-now", service.KeyPendingDeletion, ptr(now)),
		deleting("overdue", service.KeyPendingDeletion, ptr(now.Add(-time.Minute))),
		deleting("future", service.KeyPendingDeletion, ptr(now.Add(time.Microsecond))),
		deleting("no-date", service.KeyPendingDeletion, nil),
		deleting("enabled", service.KeyEnabled, ptr(now.Add(-time.Hour))),
		deleting("deleted", service.KeyDeleted, ptr(now.Add(-time.Hour))),
	}
	eachStore(t, func(t *testing.T, s *DB) {
		for _, k := range keys {
			noErr(t, s.InsertKey(t.Context(), k))
		}
		got, err := s.DueDeletions(t.Context(), now, 0)
		noErr(t, err)
		deepEqual(t, "due", got, []string{"overdue", "exactly-now"})
		got, err = s.DueDeletions(t.Context(), now, 1)
		noErr(t, err)
		deepEqual(t, "limit 1", got, []string{"overdue"})
	})
}

func TestDueDestructions(t *testing.T) {
	now := at(30 * 24 * time.Hour)
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertKeys(t, s, "k1", "k2")
		for _, r := range []struct {
			key     string
			v       int
			state   service.VersionState
			destroy *time.Time
		}{
			{"k1", 1, service.VersionPendingDestruction, ptr(now)},
			{"k1", 2, service.VersionPendingDestruction, ptr(now.Add(time.Microsecond))},
			{"k2", 1, service.VersionPendingDestruction, ptr(now.Add(-time.Hour))},
			{"k2", 2, service.VersionDestroyed, ptr(now.Add(-time.Hour))},
			{"k2", 3, service.VersionPendingDestruction, nil},
			{"k2", 4, service.VersionDecryptOnly, nil},
		} {
			v := newVersion(r.key, r.v, r.state)
			v.DestroyAt = r.destroy
			noErr(t, s.InsertVersion(ctx, v))
		}
		vs, err := s.DueDestructions(ctx, now, 0)
		noErr(t, err)
		var got []string
		for _, v := range vs {
			got = append(got, fmt.Sprintf("%s/%d", v.KeyID, v.Version))
		}
		deepEqual(t, "due", got, []string{"k2/1", "k1/1"})
		want := newVersion("k2", 1, service.VersionPendingDestruction)
		want.DestroyAt = ptr(now.Add(-time.Hour))
		deepEqual(t, "version", vs[0], storedVersion(*want))
		vs, err = s.DueDestructions(ctx, now, 1)
		noErr(t, err)
		if len(vs) != 1 {
			t.Errorf("limit 1: %d versions", len(vs))
		}
	})
}

func TestClaimKey(t *testing.T) {
	// One scenario, step by step; each step's time is relative to t0.
	steps := []struct {
		name       string
		call       string // "claim" or "release"
		owner      string
		now, until time.Duration
		want       bool
	}{
		{"free key", "claim", "a", 0, time.Minute, true},
		{"held by another", "claim", "b", 30 * time.Second, 2 * time.Minute, false},
		{"owner re-claims and extends", "claim", "a", 30 * time.Second, 2 * time.Minute, true},
		{"old lease end no longer counts", "claim", "b", time.Minute + time.Second, 3 * time.Minute, false},
		{"expires exactly at now", "claim", "b", 2 * time.Minute, 3 * time.Minute, true},
		{"old owner lost it", "claim", "a", 2 * time.Minute, 4 * time.Minute, false},
		{"release by non-owner is a no-op", "release", "a", 0, 0, false},
		{"still held", "claim", "c", 2*time.Minute + time.Second, 5 * time.Minute, false},
		{"release by owner", "release", "b", 0, 0, false},
		{"free again before expiry", "claim", "c", 2*time.Minute + time.Second, 5 * time.Minute, true},
	}
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertKeys(t, s, "k1", "k2")
		for _, st := range steps {
			switch st.call {
			case "claim":
				got, err := s.ClaimKey(ctx, "k1", st.owner, at(st.now), at(st.until))
				noErr(t, err)
				if got != st.want {
					t.Fatalf("%s: ClaimKey(%s) = %v, want %v", st.name, st.owner, got, st.want)
				}
			case "release":
				noErr(t, s.ReleaseKey(ctx, "k1", st.owner))
			}
		}
		// The lease is per key, and a Key's columns are not touched.
		ok, err := s.ClaimKey(ctx, "k2", "a", t0, at(time.Minute))
		noErr(t, err)
		if !ok {
			t.Error("a lease on k1 blocked k2")
		}
		k, err := s.GetKey(ctx, "k1")
		noErr(t, err)
		deepEqual(t, "key after leases", *k, stored(*newKey("k1")))
		noErr(t, s.UpdateKey(ctx, k)) // and UpdateKey leaves the lease alone
		if ok, err := s.ClaimKey(ctx, "k1", "d", at(3*time.Minute), at(6*time.Minute)); err != nil || ok {
			t.Errorf("UpdateKey dropped the lease: ClaimKey = %v, %v", ok, err)
		}

		_, err = s.ClaimKey(ctx, "nokey", "a", t0, at(time.Minute))
		wantErr(t, err, service.ErrNotFound, `key "nokey"`)
		noErr(t, s.ReleaseKey(ctx, "nokey", "a"))
	})
}

func TestClaimKeyRace(t *testing.T) {
	const workers = 16
	eachStore(t, func(t *testing.T, s *DB) {
		mustInsertKeys(t, s, "k1")
		for round := range 5 {
			// Each round starts after the previous lease expired.
			now := at(time.Duration(round) * time.Hour)
			var wg sync.WaitGroup
			won := make(chan string, workers)
			start := make(chan struct{})
			for w := range workers {
				wg.Go(func() {
					<-start
					owner := fmt.Sprintf("replica-%d", w)
					ok, err := s.ClaimKey(t.Context(), "k1", owner, now, now.Add(time.Minute))
					if err != nil {
						t.Errorf("%s: %v", owner, err)
					}
					if ok {
						won <- owner
					}
				})
			}
			close(start)
			wg.Wait()
			close(won)
			var winners []string
			for o := range won {
				winners = append(winners, o)
			}
			if len(winners) != 1 {
				t.Fatalf("round %d: winners %v, want exactly one", round, winners)
			}
		}
	})
}

func TestRotations(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertKeys(t, s, "k1", "k2")
		for _, v := range []int{4, 2, 3, 5} {
			typ := service.RotationAutomatic
			if v%2 == 0 {
				typ = service.RotationOnDemand
			}
			noErr(t, s.InsertRotation(ctx, &service.Rotation{KeyID: "k1", Version: v,
				At: at(time.Duration(v) * time.Hour), Type: typ}))
		}
		noErr(t, s.InsertRotation(ctx, &service.Rotation{KeyID: "k2", Version: 2, At: t0, Type: service.RotationOnDemand}))

		wantErr(t, s.InsertRotation(ctx, &service.Rotation{KeyID: "k1", Version: 3, At: t0, Type: service.RotationOnDemand}),
			service.ErrAlreadyExists, `version 3 of key "k1"`)
		wantErr(t, s.InsertRotation(ctx, &service.Rotation{KeyID: "nokey", Version: 1, At: t0, Type: service.RotationOnDemand}),
			service.ErrNotFound, `key "nokey"`)

		all, err := s.ListRotations(ctx, "k1", 0, 0)
		noErr(t, err)
		deepEqual(t, "first rotation", all[0],
			service.Rotation{KeyID: "k1", Version: 2, At: us(at(2 * time.Hour)), Type: service.RotationOnDemand})

		tests := []struct {
			name         string
			key          string
			after, limit int
			want         []int
		}{
			{"all", "k1", 0, 0, []int{2, 3, 4, 5}},
			{"first page", "k1", 0, 2, []int{2, 3}},
			{"next page", "k1", 3, 2, []int{4, 5}},
			{"after the last", "k1", 5, 2, []int{}},
			{"cursor between", "k1", 2, 10, []int{3, 4, 5}},
			{"other key", "k2", 0, 10, []int{2}},
			{"unknown key", "nokey", 0, 10, []int{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				rs, err := s.ListRotations(ctx, tt.key, tt.after, tt.limit)
				noErr(t, err)
				got := []int{}
				for _, r := range rs {
					if r.KeyID != tt.key {
						t.Errorf("rotation of %s listed for %s", r.KeyID, tt.key)
					}
					got = append(got, r.Version)
				}
				deepEqual(t, "versions", got, tt.want)
			})
		}
	})
}
