// Package pgtest gives tests fresh PostgreSQL schemas in the throwaway
// cluster that make test starts (its URL is in KMS_TEST_POSTGRES). It
// imports nothing of hsmkms, so the store's own tests can use it too.
package pgtest

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// Env names the variable holding the cluster's URL.
const Env = "KMS_TEST_POSTGRES"

var admin = sync.OnceValues(func() (*sql.DB, error) {
	return sql.Open("pgx", os.Getenv(Env))
})

// SchemaDSN creates a uniquely named, empty schema (prefix plus random hex)
// and returns the cluster's URL with search_path set to it, so that the
// store creates its tables there; the schema is dropped when the test ends.
// Without a cluster the test is skipped, or fails under CI, where skipping
// would hide it.
func SchemaDSN(t testing.TB, prefix string) string {
	t.Helper()
	base := os.Getenv(Env)
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: make test starts a throwaway PostgreSQL", Env)
		}
		t.Skipf("set %s=postgres://... to run (make test starts a throwaway PostgreSQL)", Env)
	}
	db, err := admin()
	if err != nil {
		t.Fatalf("PostgreSQL admin connection: %v", err)
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	schema := prefix + hex.EncodeToString(b)
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", Env, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
