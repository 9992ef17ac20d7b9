package kmstest

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

// The end-to-end suites run on SQLite by default and on PostgreSQL with
// KMS_TEST_STORE=postgres (make test runs both), against the throwaway
// cluster whose URL make test puts in KMS_TEST_POSTGRES.
const (
	storeEnv    = "KMS_TEST_STORE"
	postgresEnv = "KMS_TEST_POSTGRES"
)

// OnPostgres reports whether this run's stores are PostgreSQL.
func OnPostgres() bool { return os.Getenv(storeEnv) == "postgres" }

var pgAdmin = sync.OnceValues(func() (*sql.DB, error) {
	return sql.Open("pgx", os.Getenv(postgresEnv))
})

// PostgresDSN returns the URL of a fresh, empty schema of the test cluster
// (search_path set to it), dropped when the test ends. Without a cluster
// the test is skipped, or fails under CI, where skipping would hide it.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(postgresEnv)
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: make test starts a throwaway PostgreSQL", postgresEnv)
		}
		t.Skipf("set %s=postgres://... (make test starts a throwaway PostgreSQL)", postgresEnv)
	}
	admin, err := pgAdmin()
	if err != nil {
		t.Fatalf("PostgreSQL admin connection: %v", err)
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	schema := "kmstest_" + hex.EncodeToString(b)
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", postgresEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
