package store

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

func newAlias(name, keyID string) *service.Alias {
	return &service.Alias{Name: name, KeyID: keyID, CreatedAt: t0, UpdatedAt: t0}
}

func TestAliasCRUD(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertKeys(t, s, "k1", "k2")
		a := newAlias("alias/app", "k1")
		noErr(t, s.InsertAlias(ctx, a))
		got, err := s.GetAlias(ctx, "alias/app")
		noErr(t, err)
		deepEqual(t, "GetAlias", *got, service.Alias{Name: a.Name, KeyID: "k1", CreatedAt: us(t0), UpdatedAt: us(t0)})

		// Rebind: key and updated_at change, created_at does not.
		noErr(t, s.UpdateAlias(ctx, &service.Alias{Name: "alias/app", KeyID: "k2",
			CreatedAt: at(time.Hour), UpdatedAt: at(time.Minute)}))
		got, err = s.GetAlias(ctx, "alias/app")
		noErr(t, err)
		deepEqual(t, "after UpdateAlias", *got,
			service.Alias{Name: a.Name, KeyID: "k2", CreatedAt: us(t0), UpdatedAt: us(at(time.Minute))})

		noErr(t, s.DeleteAlias(ctx, "alias/app"))
		_, err = s.GetAlias(ctx, "alias/app")
		wantErr(t, err, service.ErrNotFound, `alias "alias/app"`)
	})
}

func TestAliasErrors(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertKeys(t, s, "k1")
		noErr(t, s.InsertAlias(ctx, newAlias("alias/a", "k1")))
		tests := []struct {
			name   string
			err    error
			kind   error
			entity string
		}{
			{"insert taken name", s.InsertAlias(ctx, newAlias("alias/a", "k1")), service.ErrAlreadyExists, `alias "alias/a"`},
			{"insert for missing key", s.InsertAlias(ctx, newAlias("alias/b", "nokey")), service.ErrNotFound, `key "nokey"`},
			{"update missing alias", s.UpdateAlias(ctx, newAlias("alias/none", "k1")), service.ErrNotFound, `alias "alias/none"`},
			{"rebind to missing key", s.UpdateAlias(ctx, newAlias("alias/a", "nokey")), service.ErrNotFound, `key "nokey"`},
			{"delete missing", s.DeleteAlias(ctx, "alias/none"), service.ErrNotFound, `alias "alias/none"`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) { wantErr(t, tt.err, tt.kind, tt.entity) })
		}
		_, err := s.GetAlias(ctx, "alias/none")
		wantErr(t, err, service.ErrNotFound, `alias "alias/none"`)
		got, err := s.GetAlias(ctx, "alias/a")
		noErr(t, err)
		if got.KeyID != "k1" {
			t.Errorf("failed rebind changed the alias: %+v", got)
		}
	})
}

func TestListAliasesPages(t *testing.T) {
	of := map[string][]string{
		"k1": {"alias/b", "alias/B", "alias/a-1", "alias/Z"},
		"k2": {"alias/a", "alias/c", "alias/9"},
	}
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertKeys(t, s, "k1", "k2", "k3")
		var all []string
		for key, names := range of {
			for _, n := range names {
				noErr(t, s.InsertAlias(ctx, newAlias(n, key)))
			}
			all = append(all, names...)
		}
		tests := []struct {
			keyID string
			want  []string
		}{
			{"", slices.Sorted(slices.Values(all))},
			{"k1", slices.Sorted(slices.Values(of["k1"]))},
			{"k2", slices.Sorted(slices.Values(of["k2"]))},
			{"k3", nil},
			{"nokey", nil},
		}
		for _, tt := range tests {
			for _, limit := range []int{1, 2, 100} {
				t.Run(fmt.Sprintf("key=%q/limit=%d", tt.keyID, limit), func(t *testing.T) {
					var got []string
					after := ""
					for range 20 {
						page, err := s.ListAliases(ctx, tt.keyID, service.Page{After: after, Limit: limit})
						noErr(t, err)
						if len(page) > limit {
							t.Fatalf("page of %d, limit %d", len(page), limit)
						}
						if len(page) == 0 {
							break
						}
						for _, a := range page {
							if tt.keyID != "" && a.KeyID != tt.keyID {
								t.Errorf("alias %s of %s listed for %s", a.Name, a.KeyID, tt.keyID)
							}
							got = append(got, a.Name)
						}
						after = page[len(page)-1].Name
					}
					deepEqual(t, "names", got, tt.want)
				})
			}
		}
		unlimited, err := s.ListAliases(ctx, "", service.Page{})
		noErr(t, err)
		if len(unlimited) != len(all) {
			t.Errorf("Limit 0 listed %d, want all %d", len(unlimited), len(all))
		}
	})
}

func TestAliasNames(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertKeys(t, s, "k1", "k2", "k3")
		for _, a := range []*service.Alias{
			newAlias("alias/z", "k1"), newAlias("alias/A", "k1"), newAlias("alias/m", "k1"),
			newAlias("alias/x", "k2"),
		} {
			noErr(t, s.InsertAlias(ctx, a))
		}
		// More ids than one IN batch, to cover the batching.
		many := []string{"k1"}
		for i := range 2*aliasNamesBatch + 3 {
			many = append(many, fmt.Sprintf("absent-%d", i))
		}
		many = append(many, "k2")
		tests := []struct {
			name string
			ids  []string
			want map[string][]string
		}{
			{"none", nil, map[string][]string{}},
			{"one", []string{"k1"}, map[string][]string{"k1": {"alias/A", "alias/m", "alias/z"}}},
			{"key without aliases is absent", []string{"k2", "k3", "nokey"}, map[string][]string{"k2": {"alias/x"}}},
			{"across batches", many, map[string][]string{"k1": {"alias/A", "alias/m", "alias/z"}, "k2": {"alias/x"}}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.AliasNames(ctx, tt.ids)
				noErr(t, err)
				deepEqual(t, "AliasNames", got, tt.want)
			})
		}
	})
}

func TestDeleteAliasesOfKey(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertKeys(t, s, "k1", "k2", "k3")
		for _, a := range []*service.Alias{newAlias("alias/1a", "k1"), newAlias("alias/1b", "k1"), newAlias("alias/2", "k2")} {
			noErr(t, s.InsertAlias(ctx, a))
		}
		noErr(t, s.DeleteAliasesOfKey(ctx, "k1"))
		noErr(t, s.DeleteAliasesOfKey(ctx, "k3"))    // none: not an error
		noErr(t, s.DeleteAliasesOfKey(ctx, "nokey")) // nor is an unknown key
		names, err := s.AliasNames(ctx, []string{"k1", "k2"})
		noErr(t, err)
		deepEqual(t, "left", names, map[string][]string{"k2": {"alias/2"}})
		if _, err := s.GetKey(ctx, "k1"); err != nil {
			t.Errorf("the key itself: %v", err)
		}
	})
}
