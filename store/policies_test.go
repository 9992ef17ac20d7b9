package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/hsmkms/hsmkms/service"
)

func newPolicy(name, doc string) *service.PolicyRecord {
	return &service.PolicyRecord{Name: name, Document: doc, CreatedAt: t0, UpdatedAt: t0}
}

func storedPolicy(p *service.PolicyRecord) service.PolicyRecord {
	return service.PolicyRecord{Name: p.Name, Document: p.Document,
		CreatedAt: us(p.CreatedAt), UpdatedAt: us(p.UpdatedAt)}
}

func TestPolicyCRUD(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		p := newPolicy("readers", `{"statements":[{"effect":"allow","actions":["Decrypt"]}]}`)
		noErr(t, s.PutPolicy(ctx, p))
		got, err := s.GetPolicy(ctx, "readers")
		noErr(t, err)
		deepEqual(t, "GetPolicy", *got, storedPolicy(p))

		// Replace: document and updated_at change, created_at stays.
		noErr(t, s.PutPolicy(ctx, &service.PolicyRecord{Name: "readers", Document: `{"statements":[]}`,
			CreatedAt: at(time.Hour), UpdatedAt: at(time.Minute)}))
		got, err = s.GetPolicy(ctx, "readers")
		noErr(t, err)
		deepEqual(t, "after replace", *got, service.PolicyRecord{Name: "readers",
			Document: `{"statements":[]}`, CreatedAt: us(t0), UpdatedAt: us(at(time.Minute))})

		noErr(t, s.DeletePolicy(ctx, "readers"))
		_, err = s.GetPolicy(ctx, "readers")
		wantErr(t, err, service.ErrNotFound, `policy "readers"`)
		wantErr(t, s.DeletePolicy(ctx, "readers"), service.ErrNotFound, `policy "readers"`)
	})
}

func TestListPoliciesPages(t *testing.T) {
	names := []string{"b", "B", "a-1", "Z", "a", "c"}
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		for _, n := range names {
			noErr(t, s.PutPolicy(ctx, newPolicy(n, `{"name":"`+n+`"}`)))
		}
		want := slices.Sorted(slices.Values(names))
		for _, limit := range []int{1, 4, 100} {
			t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
				var got []string
				after := ""
				for range 20 {
					page, err := s.ListPolicies(ctx, service.Page{After: after, Limit: limit})
					noErr(t, err)
					if len(page) > limit {
						t.Fatalf("page of %d, limit %d", len(page), limit)
					}
					if len(page) == 0 {
						break
					}
					for _, p := range page {
						deepEqual(t, "policy", p, storedPolicy(newPolicy(p.Name, `{"name":"`+p.Name+`"}`)))
						got = append(got, p.Name)
					}
					after = page[len(page)-1].Name
				}
				deepEqual(t, "names", got, want)
			})
		}
		all, err := s.ListPolicies(ctx, service.Page{})
		noErr(t, err)
		if len(all) != len(names) {
			t.Errorf("Limit 0 listed %d, want all %d", len(all), len(names))
		}
	})
}

func TestAttachPolicy(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertPrincipals(t, s, "alice", "bob")
		docs := map[string]string{"p-b": `{"b":1}`, "p-a": `{"a":1}`, "P-c": `{"c":1}`}
		for name, doc := range docs {
			noErr(t, s.PutPolicy(ctx, newPolicy(name, doc)))
		}
		for _, p := range []string{"p-b", "p-a", "P-c"} {
			noErr(t, s.AttachPolicy(ctx, "alice", p))
		}
		noErr(t, s.AttachPolicy(ctx, "alice", "p-a")) // again: a no-op
		tests := []struct {
			name   string
			err    error
			kind   error
			entity string
		}{
			{"missing principal", s.AttachPolicy(ctx, "nobody", "p-a"), service.ErrNotFound, `principal "nobody"`},
			{"missing policy", s.AttachPolicy(ctx, "alice", "none"), service.ErrNotFound, `policy "none"`},
			{"both missing", s.AttachPolicy(ctx, "nobody", "none"), service.ErrNotFound, `principal "nobody"`},
			{"detach not attached", s.DetachPolicy(ctx, "bob", "p-a"), service.ErrNotFound, `policy "p-a" attached to principal "bob"`},
			{"detach missing principal", s.DetachPolicy(ctx, "nobody", "p-a"), service.ErrNotFound, `principal "nobody"`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) { wantErr(t, tt.err, tt.kind, tt.entity) })
		}

		alice, err := s.GetPrincipal(ctx, "alice")
		noErr(t, err)
		deepEqual(t, "policy names, sorted", alice.Policies, []string{"P-c", "p-a", "p-b"})
		ps, err := s.PoliciesOf(ctx, "alice")
		noErr(t, err)
		var want []service.PolicyRecord
		for _, name := range []string{"P-c", "p-a", "p-b"} {
			want = append(want, storedPolicy(newPolicy(name, docs[name])))
		}
		deepEqual(t, "PoliciesOf", ps, want)
		for _, who := range []string{"bob", "nobody"} {
			ps, err := s.PoliciesOf(ctx, who)
			noErr(t, err)
			deepEqual(t, "PoliciesOf "+who, ps, []service.PolicyRecord{})
		}

		// A replaced document is what the principal gets from then on.
		noErr(t, s.PutPolicy(ctx, newPolicy("p-a", `{"a":2}`)))
		ps, err = s.PoliciesOf(ctx, "alice")
		noErr(t, err)
		if ps[1].Name != "p-a" || ps[1].Document != `{"a":2}` {
			t.Errorf("after replace: %+v", ps[1])
		}

		noErr(t, s.DetachPolicy(ctx, "alice", "p-b"))
		alice, err = s.GetPrincipal(ctx, "alice")
		noErr(t, err)
		deepEqual(t, "after detach", alice.Policies, []string{"P-c", "p-a"})
		if _, err := s.GetPolicy(ctx, "p-b"); err != nil {
			t.Errorf("detach removed the policy: %v", err)
		}
	})
}

// TestDeleteAttachedPolicy: a policy in use cannot be deleted, and the
// refusal leaves an enclosing transaction usable (on PostgreSQL a failed
// statement would abort it).
func TestDeleteAttachedPolicy(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertPrincipals(t, s, "alice", "bob")
		noErr(t, s.PutPolicy(ctx, newPolicy("shared", "{}")))
		noErr(t, s.AttachPolicy(ctx, "alice", "shared"))
		noErr(t, s.AttachPolicy(ctx, "bob", "shared"))

		err := s.DeletePolicy(ctx, "shared")
		wantErr(t, err, service.ErrInvalidState, `policy "shared" is attached to 2 principals`)
		if !strings.Contains(err.Error(), "detach it first") {
			t.Errorf("err = %q, want it to say what to do", err)
		}

		noErr(t, s.InTx(ctx, func(q service.Queries) error {
			err := q.DeletePolicy(ctx, "shared")
			if !errors.Is(err, service.ErrInvalidState) {
				return fmt.Errorf("DeletePolicy in tx = %v, want ErrInvalidState", err)
			}
			// The transaction goes on: detach both, then delete.
			if err := q.AttachPolicy(ctx, "alice", "shared"); err != nil { // a no-op
				return err
			}
			if err := q.DetachPolicy(ctx, "alice", "shared"); err != nil {
				return err
			}
			err = q.DeletePolicy(ctx, "shared")
			if !errors.Is(err, service.ErrInvalidState) || !strings.Contains(err.Error(), "1 principal;") {
				return fmt.Errorf("DeletePolicy with one attachment = %v", err)
			}
			if err := q.DetachPolicy(ctx, "bob", "shared"); err != nil {
				return err
			}
			return q.DeletePolicy(ctx, "shared")
		}))
		_, err = s.GetPolicy(ctx, "shared")
		wantErr(t, err, service.ErrNotFound, `policy "shared"`)
	})
}

// TestPolicyForeignKey: the schema itself refuses to delete an attached
// policy (no cascade), so a race past DeletePolicy's check cannot orphan an
// attachment; DeletePolicy maps that refusal to ErrInvalidState too.
func TestPolicyForeignKey(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertPrincipals(t, s, "alice")
		noErr(t, s.PutPolicy(ctx, newPolicy("p", "{}")))
		noErr(t, s.AttachPolicy(ctx, "alice", "p"))
		_, err := s.accessRows.exec(ctx, sqlDeletePolicy, "p")
		if violationOf(err) != foreignKeyViolation {
			t.Fatalf("raw delete of an attached policy: %v, want a foreign-key violation", err)
		}
		_, err = s.accessRows.exec(ctx, `INSERT INTO principal_policies (principal, policy) VALUES (?, ?)`, "alice", "nopolicy")
		if violationOf(err) != foreignKeyViolation {
			t.Fatalf("raw attach of a missing policy: %v, want a foreign-key violation", err)
		}

		// The race: an attachment DeletePolicy's count does not see. The
		// count reads through the pool, which cannot see the transaction's
		// uncommitted attachment; the delete runs in the transaction.
		noErr(t, s.PutPolicy(ctx, newPolicy("raced", "{}")))
		errRollback := errors.New("roll back")
		err = withTx(ctx, s.w, func(tx *sqlx.Tx) error {
			if err := newQueries(tx, tx, 0, nil).AttachPolicy(ctx, "alice", "raced"); err != nil {
				return err
			}
			err := newQueries(s.r, tx, 0, nil).DeletePolicy(ctx, "raced")
			wantErr(t, err, service.ErrInvalidState, `policy "raced" is attached`)
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
	})
}
