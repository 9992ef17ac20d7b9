package store

import (
	"strings"
	"testing"
)

// A database's identity is its location: the same after reopening and
// after its rows are deleted, different for another database.
func TestIdentity(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		ctx := t.Context()
		a := openStore(t, dsn)
		id, err := a.Identity(ctx)
		if err != nil || id == "" {
			t.Fatalf("identity: %q, %v", id, err)
		}
		if _, err := a.w.ExecContext(ctx, `DELETE FROM audit_events`); err != nil {
			t.Fatal(err)
		}
		again := openStore(t, dsn)
		if id2, err := again.Identity(ctx); err != nil || id2 != id {
			t.Fatalf("reopened: %q, %v; want %q", id2, err, id)
		}
		other := "sqlite:" + t.TempDir() + "/other.db"
		if !strings.HasPrefix(dsn, "sqlite:") {
			other = pgSchemaDSN(t)
		}
		if id3, err := openStore(t, other).Identity(ctx); err != nil || id3 == id {
			t.Fatalf("another database: %q, %v; want other than %q", id3, err, id)
		}
	})
}
