package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hsmkms/hsmkms/service"
)

func TestOpenRejects(t *testing.T) {
	const secret = "s3cr3t-pw"
	tests := []struct {
		dsn  string
		want string
	}{
		{"", "want sqlite:PATH, or a postgres:// or postgresql:// URL"},
		{"mysql://kms:" + secret + "@db/kms", "want sqlite:PATH"},
		{"host=db password=" + secret, "want sqlite:PATH"},
		{"SQLITE:/tmp/x.db", "want sqlite:PATH"},
		{"sqlite:", "empty path"},
		{"sqlite::memory:", "not supported"},
		{"sqlite:file:x.db?mode=memory", "not supported"},
		{"sqlite:/tmp/x.db?_pragma=foo", "must not contain '?'"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			db, err := Open(t.Context(), tt.dsn)
			if err == nil {
				noErr(t, db.Close())
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("err = %q shows the password", err)
			}
		})
	}
}

// TestOpenHidesPostgresPassword needs no server: nothing listens on port 1.
func TestOpenHidesPostgresPassword(t *testing.T) {
	tests := []struct {
		dsn     string
		secrets []string
	}{
		{"postgres://kms:s3cr3t-pw@127.0.0.1:1/kms?sslmode=disable&connect_timeout=2", []string{"s3cr3t-pw"}},
		{"postgresql://kms:s3cr3t-pw@127.0.0.1:notaport/kms", []string{"s3cr3t-pw"}},
		{"postgres://kms@127.0.0.1:1/kms?sslmode=disable&password=s3cr3t-pw", []string{"s3cr3t-pw"}},
		{"postgres://kms:s3cr%74-p%40w@127.0.0.1:1/kms?sslmode=disable", []string{"s3cr%74-p%40w", "s3crt-p@w"}},
		{"postgres://kms:s3cr3t%zz@127.0.0.1:1/kms", []string{"s3cr3t%zz", "s3cr3t"}},
		{"postgres://kms:pa@ss:w/rd@127.0.0.1:1/kms", []string{"pa@ss:w/rd", "ss:w", "w/rd"}},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			db, err := Open(ctx, tt.dsn)
			if err == nil {
				noErr(t, db.Close())
				t.Fatal("Open succeeded")
			}
			for _, s := range tt.secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("err = %q shows %q", err, s)
				}
			}
			// Nor may the chain hold the pgx errors with the password in a field.
			var pe *pgconn.ParseConfigError
			var ce *pgconn.ConnectError
			if errors.As(err, &pe) || errors.As(err, &ce) {
				t.Errorf("err chain holds %T / %T", pe, ce)
			}
			t.Logf("err: %v", err)
		})
	}
}

func TestRedactKeepsChain(t *testing.T) {
	inner := fmt.Errorf("dial postgres://u:hunter2@h/db: %w", context.DeadlineExceeded)
	err := redact(inner, "postgres://u:hunter2@h/db")
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("err = %q", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Error("redact broke errors.Is")
	}
	if got := redact(inner, "postgres://u@h/db"); got.Error() != inner.Error() {
		t.Errorf("no password: message changed to %q", got)
	}
}

// schemaState reads the schema_migrations rows.
func schemaState(t *testing.T, s *DB) map[int]int64 {
	t.Helper()
	var rows []struct {
		Version   int   `db:"version"`
		AppliedAt int64 `db:"applied_at"`
	}
	noErr(t, s.w.SelectContext(t.Context(), &rows, "SELECT version, applied_at FROM schema_migrations"))
	m := map[int]int64{}
	for _, r := range rows {
		m[r.Version] = r.AppliedAt
	}
	return m
}

// latestMigration is the number of the newest migration, alike on both
// dialects.
func latestMigration(t *testing.T) int {
	t.Helper()
	var latest []int
	for _, d := range []dialect{dialectSQLite, dialectPostgres} {
		ms, err := migrations(d)
		noErr(t, err)
		latest = append(latest, ms[len(ms)-1].version)
	}
	if latest[0] != latest[1] {
		t.Fatalf("newest migration: sqlite %d, postgres %d", latest[0], latest[1])
	}
	return latest[0]
}

func TestReopen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		s, err := Open(t.Context(), dsn)
		noErr(t, err)
		mustInsertKeys(t, s, "k1")
		before := schemaState(t, s)
		noErr(t, s.Close())
		if n := latestMigration(t); len(before) != n || before[n] == 0 {
			t.Fatalf("schema_migrations = %v, want versions 1..%d", before, n)
		}

		s = openStore(t, dsn)
		if _, err := s.GetKey(t.Context(), "k1"); err != nil {
			t.Errorf("data after reopen: %v", err)
		}
		deepEqual(t, "schema_migrations after reopen", schemaState(t, s), before)
	})
}

func TestSchemaTooNew(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		s, err := Open(t.Context(), dsn)
		noErr(t, err)
		_, err = s.w.ExecContext(t.Context(), s.w.Rebind(sqlInsertMigration), 9999, 1)
		noErr(t, err)
		noErr(t, s.Close())

		s, err = Open(t.Context(), dsn)
		if err == nil {
			noErr(t, s.Close())
			t.Fatal("Open accepted a newer schema")
		}
		if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), "9999") {
			t.Errorf("err = %v, want ErrSchemaTooNew naming version 9999", err)
		}
	})
}

// TestConcurrentOpen: replicas starting at once migrate exactly once.
func TestConcurrentOpen(t *testing.T) {
	const replicas = 6
	forEachBackend(t, func(t *testing.T, dsn string) {
		dbs := make([]*DB, replicas)
		errs := make([]error, replicas)
		var wg sync.WaitGroup
		for i := range replicas {
			wg.Go(func() { dbs[i], errs[i] = Open(t.Context(), dsn) })
		}
		wg.Wait()
		for i := range replicas {
			if errs[i] != nil {
				t.Errorf("replica %d: %v", i, errs[i])
				continue
			}
			t.Cleanup(func() { noErr(t, dbs[i].Close()) })
		}
		if dbs[0] != nil {
			if st, n := schemaState(t, dbs[0]), latestMigration(t); len(st) != n {
				t.Errorf("schema_migrations = %v, want %d rows", st, n)
			}
		}
	})
}

func TestSQLiteSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "kms.db") // parents are created
	s := openStore(t, "sqlite:"+path)
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		pragma string
		pool   string
		want   string
	}{
		{"journal_mode", "writer", "wal"},
		{"journal_mode", "reader", "wal"},
		{"busy_timeout", "writer", "5000"},
		{"busy_timeout", "reader", "5000"},
		{"foreign_keys", "writer", "1"},
		{"synchronous", "writer", "1"}, // NORMAL
		{"query_only", "reader", "1"},
		{"query_only", "writer", "0"},
	}
	for _, tt := range tests {
		db := s.w
		if tt.pool == "reader" {
			db = s.r
		}
		var got string
		noErr(t, db.GetContext(t.Context(), &got, "PRAGMA "+tt.pragma))
		if got != tt.want {
			t.Errorf("%s %s = %s, want %s", tt.pool, tt.pragma, got, tt.want)
		}
	}
	if _, err := s.r.ExecContext(t.Context(), "DELETE FROM keys"); err == nil {
		t.Error("the reader pool accepted a write")
	}
	if n := s.w.Stats().MaxOpenConnections; n != 1 {
		t.Errorf("writer pool max %d connections, want 1", n)
	}
}

// TestSchema pins the columns of every table, on each dialect, so that the
// two migration files cannot drift apart unnoticed.
func TestSchema(t *testing.T) {
	want := map[string][]string{
		"keys": {"id", "description", "state", "origin", "key_spec", "key_manager",
			"created_at", "updated_at", "primary_version", "rotation_enabled",
			"rotation_interval_seconds", "last_rotation", "next_rotation", "deletion_date",
			"tags", "lease_owner", "lease_until", "rotation_anchor", "on_demand_rotations",
			"rotation_failure_at", "rotation_failure_message"},
		"key_versions": {"key_id", "version", "state", "origin", "created_at", "updated_at",
			"destroy_at", "token_label", "encryptions"},
		"aliases":   {"name", "key_id", "created_at", "updated_at"},
		"rotations": {"key_id", "version", "rotated_at", "rotation_type"},
		"audit_events": {"seq", "at", "request_id", "principal", "action", "key_id",
			"key_version", "outcome", "error_code", "source", "detail", "prev_hash", "hash", "credential"},
		"schema_migrations":  {"version", "applied_at"},
		"principals":         {"name", "created_at", "cert_subject"},
		"policies":           {"name", "document", "created_at", "updated_at"},
		"principal_policies": {"principal", "policy"},
		"bearer_tokens":      {"id", "principal", "hash", "description", "created_at", "revoked_at", "expires_at", "last_used_at"},
		"audit_head":         {"id", "seq", "hash"},
		"import_params":      {"token_hash", "key_id", "wrapping_id", "algorithm", "created_at", "expires_at", "used_at"},
		"key_material":       {"key_id", "kcv", "imported_at", "valid_to"},
		"access_keys":        {"id", "principal", "nonce", "created_at", "last_used_at"},
		"key_changes":        {"seq", "key_id", "alias", "version", "encryptions"},
		"key_change_counter": {"id", "seq"},
	}
	const (
		sqliteColumns   = `SELECT name FROM pragma_table_info(?) ORDER BY cid`
		postgresColumns = `SELECT column_name FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position`
		sqliteTables   = `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`
		postgresTables = `SELECT table_name FROM information_schema.tables
			WHERE table_schema = current_schema() ORDER BY table_name`
	)
	eachStore(t, func(t *testing.T, s *DB) {
		query, tablesQuery := sqliteColumns, sqliteTables
		if s.dialect == dialectPostgres {
			query, tablesQuery = postgresColumns, postgresTables
		}
		// Every table the migrations make is checked: a new one must be
		// added above.
		var tables []string
		noErr(t, s.w.SelectContext(t.Context(), &tables, tablesQuery))
		deepEqual(t, "tables", tables, slices.Sorted(maps.Keys(want)))
		for table, cols := range want {
			var got []string
			noErr(t, s.w.SelectContext(t.Context(), &got, s.w.Rebind(query), table))
			deepEqual(t, table, got, cols)
		}
	})
}

// TestAuditSeq: the audit table numbers rows itself and accepts an explicit
// seq, alike on both dialects (the audit writer of a later issue relies on it).
func TestAuditSeq(t *testing.T) {
	const insert = `INSERT INTO audit_events (at, action, outcome, prev_hash, hash) VALUES (?, ?, ?, ?, ?)`
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		for range 2 {
			_, err := s.w.ExecContext(ctx, s.w.Rebind(insert), micros(t0), "CreateKey", "ok", "", "h")
			noErr(t, err)
		}
		var seqs []int64
		noErr(t, s.w.SelectContext(ctx, &seqs, "SELECT seq FROM audit_events ORDER BY seq"))
		deepEqual(t, "seq", seqs, []int64{1, 2})
		_, err := s.w.ExecContext(ctx, s.w.Rebind(
			`INSERT INTO audit_events (seq, at, action, outcome, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)`),
			10, micros(t0), "Encrypt", "ok", "h", "h2")
		noErr(t, err)
	})
}

func TestPingAndClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		s, err := Open(t.Context(), dsn)
		noErr(t, err)
		noErr(t, s.Ping(t.Context()))
		noErr(t, s.Close())
		if err := s.Ping(t.Context()); err == nil {
			t.Error("Ping after Close succeeded")
		}
	})
}

// TestOtherErrors: database errors that are neither a missing row nor a
// duplicate come back wrapped, still matching errors.Is, never as a domain
// error.
func TestOtherErrors(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		mustInsertKeys(t, s, "k1")
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		calls := map[string]func() error{
			"GetKey":     func() error { _, err := s.GetKey(ctx, "k1"); return err },
			"InsertKey":  func() error { return s.InsertKey(ctx, newKey("k2")) },
			"UpdateKey":  func() error { return s.UpdateKey(ctx, newKey("k1")) },
			"DeleteKey":  func() error { return s.DeleteKey(ctx, "k1") },
			"ListKeys":   func() error { _, err := s.ListKeys(ctx, service.Page{}); return err },
			"MaxVersion": func() error { _, err := s.MaxVersion(ctx, "k1"); return err },
			"ClaimKey":   func() error { _, err := s.ClaimKey(ctx, "k1", "o", t0, t0); return err },
			"ReleaseKey": func() error { return s.ReleaseKey(ctx, "k1", "o") },
			"DueRotations": func() error {
				_, err := s.DueRotations(ctx, t0, 0)
				return err
			},
			"InTx": func() error {
				return s.InTx(ctx, func(service.Queries) error { return nil })
			},
		}
		for name, call := range calls {
			err := call()
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v, want context.Canceled", name, err)
			}
			if errors.Is(err, service.ErrNotFound) || errors.Is(err, service.ErrAlreadyExists) {
				t.Errorf("%s: %v is a domain error", name, err)
			}
		}
	})
}
