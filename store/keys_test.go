package store

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

func TestKeyRoundTrip(t *testing.T) {
	full := newKey("full")
	full.RotationEnabled = true
	full.RotationInterval = 90*24*time.Hour + 1500*time.Millisecond // stored as whole seconds
	full.LastRotation, full.NextRotation = ptr(at(time.Hour)), ptr(at(90*24*time.Hour))
	full.DeletionDate = ptr(at(7 * 24 * time.Hour))
	full.Tags = map[string]string{"team": "payments", "cost-center": "ü/1 \"q\"", "": "empty"}
	full.Manager = service.ManagerService
	full.Aliases = []string{"alias/ignored"} // not a column
	full.RotationAnchor, full.OnDemandRotations = ptr(at(2*time.Hour)), 3
	full.RotationFailure = &service.RotationFailure{At: at(3 * time.Hour), Message: "key full has 100 versions"}

	zoned := newKey("zoned")
	zoned.CreatedAt = t0.In(time.FixedZone("X", 5*3600)) // returned in UTC
	zoned.DeletionDate = ptr(t0.In(time.FixedZone("Y", -7*3600)))

	external := newKey("external")
	external.State, external.Origin, external.PrimaryVersion = service.KeyPendingImport, service.OriginExternal, 0
	external.Tags = map[string]string{}

	tests := []struct {
		name string
		key  *service.Key
	}{
		{"minimal, nil tags and times", newKey("minimal")},
		{"every field", full},
		{"non-UTC times", zoned},
		{"external, empty tags", external},
	}
	eachStore(t, func(t *testing.T, s *DB) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				noErr(t, s.InsertKey(t.Context(), tt.key))
				got, err := s.GetKey(t.Context(), tt.key.ID)
				noErr(t, err)
				deepEqual(t, "GetKey", *got, stored(*tt.key))
				if got.Tags == nil {
					t.Error("Tags is nil, want an empty map")
				}
				for _, tm := range []time.Time{got.CreatedAt, got.UpdatedAt} {
					if tm.Location() != time.UTC {
						t.Errorf("time %v not in UTC", tm)
					}
				}
			})
		}
	})
}

func TestKeyErrors(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertKeys(t, s, "k1")
		wantErr(t, s.InsertKey(ctx, newKey("k1")), service.ErrAlreadyExists, `key "k1"`)
		_, err := s.GetKey(ctx, "nope")
		wantErr(t, err, service.ErrNotFound, `key "nope"`)
		wantErr(t, s.UpdateKey(ctx, newKey("nope")), service.ErrNotFound, `key "nope"`)
		wantErr(t, s.DeleteKey(ctx, "nope"), service.ErrNotFound, `key "nope"`)
	})
}

func TestUpdateKey(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		k := newKey("k1")
		k.RotationEnabled, k.RotationInterval = true, 24*time.Hour
		k.LastRotation, k.NextRotation = ptr(t0), ptr(at(24*time.Hour))
		k.Tags = map[string]string{"a": "1"}
		noErr(t, s.InsertKey(ctx, k))
		mustInsertKeys(t, s, "k2")

		u := *k
		u.Description, u.State, u.PrimaryVersion = "changed", service.KeyPendingDeletion, 3
		u.RotationEnabled, u.RotationInterval = false, 48*time.Hour
		u.LastRotation, u.NextRotation = nil, nil
		u.RotationAnchor, u.OnDemandRotations = ptr(at(time.Hour)), 7
		u.RotationFailure = &service.RotationFailure{At: at(2 * time.Hour), Message: "failed"}
		u.DeletionDate = ptr(at(30 * 24 * time.Hour))
		u.Tags = nil
		u.UpdatedAt = at(time.Minute)
		// Immutable columns: UpdateKey must not write them.
		u.Origin, u.KeySpec, u.Manager, u.CreatedAt = service.OriginExternal, "X", service.ManagerService, at(time.Hour)
		noErr(t, s.UpdateKey(ctx, &u))

		got, err := s.GetKey(ctx, "k1")
		noErr(t, err)
		want := u
		want.Origin, want.KeySpec, want.Manager, want.CreatedAt = k.Origin, k.KeySpec, k.Manager, k.CreatedAt
		deepEqual(t, "after UpdateKey", *got, stored(want))

		other, err := s.GetKey(ctx, "k2")
		noErr(t, err)
		deepEqual(t, "other key", *other, stored(*newKey("k2")))
	})
}

func TestListKeysPages(t *testing.T) {
	// Mixed case and digits: pages follow byte order on both dialects.
	ids := []string{"b", "B", "a", "A", "10", "9", "a-1", "z"}
	sorted := slices.Sorted(slices.Values(ids))
	eachStore(t, func(t *testing.T, s *DB) {
		mustInsertKeys(t, s, ids...)
		for _, limit := range []int{1, 3, len(ids), len(ids) + 5} {
			var got []string
			after := ""
			for pages := 0; ; pages++ {
				if pages > len(ids)+1 {
					t.Fatalf("limit %d: pagination does not end", limit)
				}
				page, err := s.ListKeys(t.Context(), service.Page{After: after, Limit: limit})
				noErr(t, err)
				if len(page) > limit {
					t.Fatalf("limit %d: got %d keys", limit, len(page))
				}
				if len(page) == 0 {
					break
				}
				for _, k := range page {
					got = append(got, k.ID)
				}
				after = page[len(page)-1].ID
			}
			deepEqual(t, "ids paged", got, sorted)
		}
		all, err := s.ListKeys(t.Context(), service.Page{})
		noErr(t, err)
		if len(all) != len(ids) {
			t.Errorf("Limit 0: %d keys, want all %d", len(all), len(ids))
		}
		deepEqual(t, "listed key", all[0], stored(*newKey(sorted[0])))
		rest, err := s.ListKeys(t.Context(), service.Page{After: "b", Limit: 10})
		noErr(t, err)
		if len(rest) != 1 || rest[0].ID != "z" {
			t.Errorf("after b: %+v, want [z]", rest)
		}
	})
}

func TestDeleteKeyCascades(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertKeys(t, s, "gone", "kept")
		for _, id := range []string{"gone", "kept"} {
			noErr(t, s.InsertVersion(ctx, newVersion(id, 1, service.VersionPrimary)))
			noErr(t, s.InsertAlias(ctx, &service.Alias{Name: "alias/" + id, KeyID: id, CreatedAt: t0, UpdatedAt: t0}))
			noErr(t, s.InsertRotation(ctx, &service.Rotation{KeyID: id, Version: 1, At: t0, Type: service.RotationOnDemand}))
		}
		noErr(t, s.DeleteKey(ctx, "gone"))

		_, err := s.GetKey(ctx, "gone")
		wantErr(t, err, service.ErrNotFound, "gone")
		_, err = s.GetAlias(ctx, "alias/gone")
		wantErr(t, err, service.ErrNotFound, "alias/gone")
		vs, err := s.ListVersions(ctx, "gone")
		noErr(t, err)
		rs, err := s.ListRotations(ctx, "gone", 0, 0)
		noErr(t, err)
		if len(vs) != 0 || len(rs) != 0 {
			t.Errorf("after DeleteKey: %d versions, %d rotations left", len(vs), len(rs))
		}
		// The other key keeps everything.
		vs, err = s.ListVersions(ctx, "kept")
		noErr(t, err)
		rs, err = s.ListRotations(ctx, "kept", 0, 0)
		noErr(t, err)
		_, aerr := s.GetAlias(ctx, "alias/kept")
		if len(vs) != 1 || len(rs) != 1 || aerr != nil {
			t.Errorf("other key: %d versions, %d rotations, alias err %v", len(vs), len(rs), aerr)
		}
	})
}

// TestKeyBadTags: a row whose tags are not a JSON object (written by hand,
// or by a bug) is an error, not an empty map.
func TestKeyBadTags(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		mustInsertKeys(t, s, "k1", "k2")
		_, err := s.w.ExecContext(t.Context(), s.w.Rebind(`UPDATE keys SET tags = ? WHERE id = ?`), "[1,2]", "k1")
		noErr(t, err)
		_, err = s.w.ExecContext(t.Context(), s.w.Rebind(`UPDATE keys SET tags = ? WHERE id = ?`), "null", "k2")
		noErr(t, err)
		if _, err := s.GetKey(t.Context(), "k1"); err == nil || !strings.Contains(err.Error(), "tags") {
			t.Errorf("GetKey with bad tags: %v", err)
		}
		if _, err := s.ListKeys(t.Context(), service.Page{}); err == nil {
			t.Error("ListKeys with bad tags succeeded")
		}
		k, err := s.GetKey(t.Context(), "k2")
		noErr(t, err)
		if k.Tags == nil || len(k.Tags) != 0 {
			t.Errorf(`tags "null" read as %#v, want an empty map`, k.Tags)
		}
	})
}

// Migration 0006 starts the schedule of existing keys from their last
// automatic rotation (else their creation) and counts their on-demand
// rotations so far. The test drops what 0006 adds and runs 0006 again on
// the rows already there.
func TestMigration0006Backfill(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		ctx := t.Context()
		s, err := Open(ctx, dsn)
		noErr(t, err)
		mustInsertKeys(t, s, "rotated", "fresh")
		for _, r := range []service.Rotation{
			{KeyID: "rotated", Version: 2, At: at(time.Hour), Type: service.RotationOnDemand},
			{KeyID: "rotated", Version: 3, At: at(2 * time.Hour), Type: service.RotationAutomatic},
			{KeyID: "rotated", Version: 4, At: at(3 * time.Hour), Type: service.RotationOnDemand},
		} {
			noErr(t, s.InsertRotation(ctx, &r))
		}
		if s.dialect == dialectPostgres {
			// The change log's trigger (0009) names the columns.
			if _, err := s.w.ExecContext(ctx, "DROP TRIGGER keys_changed ON keys"); err != nil {
				t.Fatal(err)
			}
		}
		for _, stmt := range []string{
			"ALTER TABLE keys DROP COLUMN rotation_anchor",
			"ALTER TABLE keys DROP COLUMN on_demand_rotations",
			"ALTER TABLE keys DROP COLUMN rotation_failure_at",
			"ALTER TABLE keys DROP COLUMN rotation_failure_message",
		} {
			if _, err := s.w.ExecContext(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
		ms, err := migrations(s.dialect)
		noErr(t, err)
		if ms[5].version != 6 {
			t.Fatalf("migration 6 is %s", ms[5].name)
		}
		if _, err := s.w.ExecContext(ctx, ms[5].sql); err != nil {
			t.Fatalf("%s again: %v", ms[5].name, err)
		}
		noErr(t, s.Close())
		s = openStore(t, dsn)
		for _, tt := range []struct {
			id       string
			anchor   time.Time
			onDemand int
		}{{"rotated", at(2 * time.Hour), 2}, {"fresh", t0, 0}} {
			k, err := s.GetKey(ctx, tt.id)
			noErr(t, err)
			if k.RotationAnchor == nil || !k.RotationAnchor.Equal(us(tt.anchor)) || k.OnDemandRotations != tt.onDemand || k.RotationFailure != nil {
				t.Errorf("%s after 0006: anchor %v, on-demand %d, failure %+v; want %v, %d, none",
					tt.id, k.RotationAnchor, k.OnDemandRotations, k.RotationFailure, us(tt.anchor), tt.onDemand)
			}
		}
	})
}
