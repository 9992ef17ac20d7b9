package kmstest

import (
	"os"
	"testing"

	"github.com/hsmkms/hsmkms/internal/pgtest"
)

// The end-to-end suites run on SQLite by default and on PostgreSQL with
// KMS_TEST_STORE=postgres (make test runs both), against the throwaway
// cluster whose URL make test puts in KMS_TEST_POSTGRES.
const storeEnv = "KMS_TEST_STORE"

// OnPostgres reports whether this run's stores are PostgreSQL.
func OnPostgres() bool { return os.Getenv(storeEnv) == "postgres" }

// PostgresDSN returns the URL of a fresh, empty schema of the test cluster,
// dropped when the test ends (pgtest.SchemaDSN).
func PostgresDSN(t testing.TB) string {
	t.Helper()
	return pgtest.SchemaDSN(t, "kmstest_")
}
