package store

import (
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

func TestVersionRoundTrip(t *testing.T) {
	destroying := newVersion("k1", 2, service.VersionPendingDestruction)
	destroying.DestroyAt = ptr(at(30*24*time.Hour + 999*time.Nanosecond))
	tests := []struct {
		name string
		v    *service.Version
	}{
		{"primary, no destroy_at", newVersion("k1", 1, service.VersionPrimary)},
		{"pending destruction", destroying},
		{"external pending", &service.Version{KeyID: "k1", Version: 3, State: service.VersionPending,
			Origin: service.OriginExternal, CreatedAt: t0, UpdatedAt: t0}},
	}
	eachStore(t, func(t *testing.T, s *DB) {
		mustInsertKeys(t, s, "k1")
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				noErr(t, s.InsertVersion(t.Context(), tt.v))
				got, err := s.GetVersion(t.Context(), tt.v.KeyID, tt.v.Version)
				noErr(t, err)
				deepEqual(t, "GetVersion", *got, storedVersion(*tt.v))
			})
		}
	})
}

func TestVersionErrors(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertKeys(t, s, "k1")
		noErr(t, s.InsertVersion(ctx, newVersion("k1", 1, service.VersionPrimary)))

		wantErr(t, s.InsertVersion(ctx, newVersion("k1", 1, service.VersionPending)),
			service.ErrAlreadyExists, `version 1 of key "k1"`)
		wantErr(t, s.InsertVersion(ctx, newVersion("nokey", 1, service.VersionPending)),
			service.ErrNotFound, `key "nokey"`)
		_, err := s.GetVersion(ctx, "k1", 2)
		wantErr(t, err, service.ErrNotFound, `version 2 of key "k1"`)
		wantErr(t, s.UpdateVersion(ctx, newVersion("k1", 2, service.VersionDisabled)),
			service.ErrNotFound, `version 2 of key "k1"`)
		wantErr(t, s.DeleteVersion(ctx, "k1", 2), service.ErrNotFound, `version 2 of key "k1"`)
		wantErr(t, s.DeleteVersion(ctx, "nokey", 1), service.ErrNotFound, `key "nokey"`)
	})
}

func TestListVersionsAndMax(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertKeys(t, s, "k1", "k2")
		max, err := s.MaxVersion(ctx, "k1")
		noErr(t, err)
		if max != 0 {
			t.Errorf("MaxVersion with no versions = %d, want 0", max)
		}
		for _, v := range []int{3, 1, 2, 10} { // out of order on purpose
			noErr(t, s.InsertVersion(ctx, newVersion("k1", v, service.VersionDecryptOnly)))
		}
		noErr(t, s.InsertVersion(ctx, newVersion("k2", 99, service.VersionPrimary)))

		vs, err := s.ListVersions(ctx, "k1")
		noErr(t, err)
		var got []int
		for _, v := range vs {
			got = append(got, v.Version)
		}
		deepEqual(t, "ListVersions order", got, []int{1, 2, 3, 10})
		deepEqual(t, "listed version", vs[0], storedVersion(*newVersion("k1", 1, service.VersionDecryptOnly)))

		for _, tt := range []struct {
			key  string
			want int
		}{{"k1", 10}, {"k2", 99}, {"nokey", 0}} {
			got, err := s.MaxVersion(ctx, tt.key)
			noErr(t, err)
			if got != tt.want {
				t.Errorf("MaxVersion(%s) = %d, want %d", tt.key, got, tt.want)
			}
		}
		none, err := s.ListVersions(ctx, "nokey")
		noErr(t, err)
		if none == nil || len(none) != 0 {
			t.Errorf("ListVersions(unknown) = %#v, want empty", none)
		}
	})
}

func TestUpdateAndDeleteVersion(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertKeys(t, s, "k1")
		v := newVersion("k1", 1, service.VersionPrimary)
		noErr(t, s.InsertVersion(ctx, v))
		noErr(t, s.InsertVersion(ctx, newVersion("k1", 2, service.VersionPending)))

		u := *v
		u.State, u.DestroyAt, u.UpdatedAt = service.VersionPendingDestruction, ptr(at(time.Hour)), at(time.Minute)
		u.Origin, u.TokenLabel, u.CreatedAt = service.OriginExternal, "changed", at(time.Hour) // not written
		noErr(t, s.UpdateVersion(ctx, &u))
		got, err := s.GetVersion(ctx, "k1", 1)
		noErr(t, err)
		want := u
		want.Origin, want.TokenLabel, want.CreatedAt = v.Origin, v.TokenLabel, v.CreatedAt
		deepEqual(t, "after UpdateVersion", *got, storedVersion(want))

		// And back to no destroy_at.
		u.State, u.DestroyAt = service.VersionDecryptOnly, nil
		noErr(t, s.UpdateVersion(ctx, &u))
		got, err = s.GetVersion(ctx, "k1", 1)
		noErr(t, err)
		if got.DestroyAt != nil || got.State != service.VersionDecryptOnly {
			t.Errorf("after clearing: %+v", got)
		}

		noErr(t, s.DeleteVersion(ctx, "k1", 2))
		_, err = s.GetVersion(ctx, "k1", 2)
		wantErr(t, err, service.ErrNotFound, "version 2")
		if _, err := s.GetVersion(ctx, "k1", 1); err != nil {
			t.Errorf("version 1 after deleting 2: %v", err)
		}
	})
}

func TestVersionsInState(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertKeys(t, s, "kb", "ka", "kc")
		rows := []struct {
			key   string
			v     int
			state service.VersionState
		}{
			{"kb", 2, service.VersionPending}, {"kb", 1, service.VersionPrimary},
			{"ka", 3, service.VersionPending}, {"ka", 1, service.VersionPending},
			{"ka", 2, service.VersionDecryptOnly}, {"kc", 1, service.VersionDestroyed},
		}
		for _, r := range rows {
			noErr(t, s.InsertVersion(ctx, newVersion(r.key, r.v, r.state)))
		}
		type kv struct {
			Key string
			V   int
		}
		tests := []struct {
			name   string
			states []service.VersionState
			want   []kv
		}{
			{"none asked", nil, []kv{}},
			{"pending", []service.VersionState{service.VersionPending},
				[]kv{{"ka", 1}, {"ka", 3}, {"kb", 2}}},
			{"two states", []service.VersionState{service.VersionPrimary, service.VersionDestroyed},
				[]kv{{"kb", 1}, {"kc", 1}}},
			{"no match", []service.VersionState{service.VersionDisabled}, []kv{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				vs, err := s.VersionsInState(ctx, tt.states...)
				noErr(t, err)
				got := []kv{}
				for _, v := range vs {
					got = append(got, kv{v.KeyID, v.Version})
				}
				deepEqual(t, "versions", got, tt.want)
			})
		}
	})
}
