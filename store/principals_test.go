package store

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

func newPrincipal(name, subject string) *service.Principal {
	return &service.Principal{Name: name, CreatedAt: t0, CertSubject: subject}
}

// storedPrincipal is p as GetPrincipal returns it, with policies attached.
func storedPrincipal(p *service.Principal, policies ...string) service.Principal {
	return service.Principal{Name: p.Name, CreatedAt: us(p.CreatedAt), CertSubject: p.CertSubject,
		Policies: append([]string{}, policies...)}
}

// mustInsertPrincipals inserts principals with the given names, no subject.
func mustInsertPrincipals(t *testing.T, q service.Queries, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := q.InsertPrincipal(t.Context(), newPrincipal(n, "")); err != nil {
			t.Fatalf("InsertPrincipal(%s): %v", n, err)
		}
	}
}

func TestPrincipalCRUD(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		alice := newPrincipal("alice", "CN=alice,O=Example")
		alice.Policies = []string{"ignored"} // attachments are made by AttachPolicy
		noErr(t, s.InsertPrincipal(ctx, alice))
		bob := newPrincipal("bob", "")
		bob.CreatedAt = at(time.Hour)
		noErr(t, s.InsertPrincipal(ctx, bob))

		got, err := s.GetPrincipal(ctx, "alice")
		noErr(t, err)
		deepEqual(t, "GetPrincipal", *got, storedPrincipal(alice))
		got, err = s.PrincipalByCertSubject(ctx, "CN=alice,O=Example")
		noErr(t, err)
		deepEqual(t, "PrincipalByCertSubject", *got, storedPrincipal(alice))
		got, err = s.GetPrincipal(ctx, "bob")
		noErr(t, err)
		deepEqual(t, "GetPrincipal without subject", *got, storedPrincipal(bob))

		n, err := s.CountPrincipals(ctx)
		noErr(t, err)
		if n != 2 {
			t.Errorf("CountPrincipals = %d, want 2", n)
		}
		noErr(t, s.DeletePrincipal(ctx, "alice"))
		_, err = s.GetPrincipal(ctx, "alice")
		wantErr(t, err, service.ErrNotFound, `principal "alice"`)
		_, err = s.PrincipalByCertSubject(ctx, "CN=alice,O=Example")
		wantErr(t, err, service.ErrNotFound, `"CN=alice,O=Example"`)
		// The subject is free again.
		noErr(t, s.InsertPrincipal(ctx, newPrincipal("alice2", "CN=alice,O=Example")))
	})
}

func TestPrincipalErrors(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		noErr(t, s.InsertPrincipal(ctx, newPrincipal("alice", "CN=alice")))
		// Several principals may have no subject (stored as NULL, not '').
		noErr(t, s.InsertPrincipal(ctx, newPrincipal("nosubject1", "")))
		noErr(t, s.InsertPrincipal(ctx, newPrincipal("nosubject2", "")))
		getErr := func(name string) error { _, err := s.GetPrincipal(ctx, name); return err }
		bySubject := func(subject string) error { _, err := s.PrincipalByCertSubject(ctx, subject); return err }
		tests := []struct {
			name   string
			err    error
			kind   error
			entity string
		}{
			{"insert taken name", s.InsertPrincipal(ctx, newPrincipal("alice", "")), service.ErrAlreadyExists, `principal "alice"`},
			{"insert taken name and subject", s.InsertPrincipal(ctx, newPrincipal("alice", "CN=other")), service.ErrAlreadyExists, `principal "alice"`},
			{"insert taken subject", s.InsertPrincipal(ctx, newPrincipal("mallory", "CN=alice")), service.ErrAlreadyExists, `certificate subject "CN=alice"`},
			{"get missing", getErr("nobody"), service.ErrNotFound, `principal "nobody"`},
			{"by unknown subject", bySubject("CN=nobody"), service.ErrNotFound, `certificate subject "CN=nobody"`},
			{"by empty subject", bySubject(""), service.ErrNotFound, `certificate subject ""`},
			{"delete missing", s.DeletePrincipal(ctx, "nobody"), service.ErrNotFound, `principal "nobody"`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) { wantErr(t, tt.err, tt.kind, tt.entity) })
		}
		if err := getErr("mallory"); err == nil {
			t.Error("a principal with a taken subject was inserted")
		}
		n, err := s.CountPrincipals(ctx)
		noErr(t, err)
		if n != 3 {
			t.Errorf("CountPrincipals = %d, want 3", n)
		}
	})
}

func TestListPrincipalsPages(t *testing.T) {
	// Bytewise order: upper case before lower, "a" before "a-1" before "b".
	names := []string{"b", "B", "a-1", "Z", "a", "c", "9"}
	policiesOf := map[string][]string{
		"a":   {"p3", "p1", "P2"}, // more attachments than a page holds principals
		"a-1": {"p1"},
		"Z":   {"p3", "p1"},
	}
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertPrincipals(t, s, names...)
		for _, p := range []string{"p1", "P2", "p3"} {
			noErr(t, s.PutPolicy(ctx, newPolicy(p, "{}")))
		}
		for name, ps := range policiesOf {
			for _, p := range ps {
				noErr(t, s.AttachPolicy(ctx, name, p))
			}
		}
		want := slices.Sorted(slices.Values(names))
		for _, limit := range []int{0, 1, 2, 100} {
			t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
				var got []string
				after := ""
				for range 20 {
					page, err := s.ListPrincipals(ctx, service.Page{After: after, Limit: limit})
					noErr(t, err)
					if limit > 0 && len(page) > limit {
						t.Fatalf("page of %d, limit %d", len(page), limit)
					}
					if len(page) == 0 {
						break
					}
					for _, p := range page {
						got = append(got, p.Name)
						wantPolicies := slices.Sorted(slices.Values(policiesOf[p.Name]))
						if wantPolicies == nil {
							wantPolicies = []string{}
						}
						deepEqual(t, "policies of "+p.Name, p.Policies, wantPolicies)
						deepEqual(t, "principal "+p.Name, p, storedPrincipal(newPrincipal(p.Name, ""), wantPolicies...))
					}
					after = page[len(page)-1].Name
					if limit <= 0 {
						break // everything at once
					}
				}
				deepEqual(t, "names", got, want)
			})
		}
		none, err := s.ListPrincipals(ctx, service.Page{After: "zzz"})
		noErr(t, err)
		deepEqual(t, "past the end", none, []service.Principal{})
	})
}

// TestDeletePrincipalCascades: a principal's attachments and tokens go with
// it; its policies stay, and are then free to delete.
func TestDeletePrincipalCascades(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertPrincipals(t, s, "alice", "bob")
		noErr(t, s.PutPolicy(ctx, newPolicy("admin", `{"statements":[]}`)))
		noErr(t, s.PutPolicy(ctx, newPolicy("shared", `{}`)))
		for _, a := range [][2]string{{"alice", "admin"}, {"alice", "shared"}, {"bob", "shared"}} {
			noErr(t, s.AttachPolicy(ctx, a[0], a[1]))
		}
		noErr(t, s.InsertToken(ctx, newToken("t1", "alice", t0)))
		noErr(t, s.InsertToken(ctx, newToken("t2", "alice", t0)))
		noErr(t, s.InsertToken(ctx, newToken("t3", "bob", t0)))

		noErr(t, s.DeletePrincipal(ctx, "alice"))

		for _, id := range []string{"t1", "t2"} {
			_, err := s.GetToken(ctx, id)
			wantErr(t, err, service.ErrNotFound, fmt.Sprintf("bearer token %q", id))
		}
		ts, err := s.ListTokens(ctx, "alice")
		noErr(t, err)
		deepEqual(t, "tokens of the deleted principal", ts, []service.BearerToken{})
		ps, err := s.PoliciesOf(ctx, "alice")
		noErr(t, err)
		deepEqual(t, "policies of the deleted principal", ps, []service.PolicyRecord{})
		// Bob is untouched.
		if _, err := s.GetToken(ctx, "t3"); err != nil {
			t.Errorf("bob's token: %v", err)
		}
		bob, err := s.GetPrincipal(ctx, "bob")
		noErr(t, err)
		deepEqual(t, "bob's policies", bob.Policies, []string{"shared"})
		// The policies stay; "admin" is attached to nobody now.
		if _, err := s.GetPolicy(ctx, "admin"); err != nil {
			t.Errorf("policy after principal delete: %v", err)
		}
		noErr(t, s.DeletePolicy(ctx, "admin"))
		// A new principal of the old name starts with nothing.
		mustInsertPrincipals(t, s, "alice")
		alice, err := s.GetPrincipal(ctx, "alice")
		noErr(t, err)
		deepEqual(t, "new alice's policies", alice.Policies, []string{})
	})
}
