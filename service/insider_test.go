package service_test

import (
	"context"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
	"github.com/jmoiron/sqlx"
)

// Attacks of issue 16 by someone who can write the database, through SQL
// of their own on the same SQLite file or PostgreSQL schema
// (KMS_TEST_STORE=postgres).

// insiderDB is a fresh database: the DSN the service opens, and the
// attacker's own connection to it.
func insiderDB(t *testing.T) (string, *sqlx.DB) {
	t.Helper()
	dsn := "sqlite:" + t.TempDir() + "/kms.db"
	driver, source := "sqlite", strings.TrimPrefix(dsn, "sqlite:")+"?_pragma=busy_timeout(5000)"
	if kmstest.OnPostgres() {
		dsn = kmstest.PostgresDSN(t)
		driver, source = "pgx", dsn
	}
	kmstest.StoreAt(t, dsn) // migrated before the attacker looks
	raw, err := sqlx.Open(driver, source)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return dsn, raw
}

// sqlExec runs the attacker's statement (? placeholders, either dialect).
func sqlExec(t *testing.T, db *sqlx.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(db.Rebind(query), args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func sqlInt(t *testing.T, db *sqlx.DB, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.Get(&n, db.Rebind(query), args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// audited is a context whose request gets an audit record.
func audited(ctx context.Context, action string) context.Context {
	ctx, _ = service.StartActivity(ctx, "", "", action)
	return ctx
}

// Item 8: cutting the audit log back to before its last seal, or emptying
// it, while kmsd is stopped, is detected by the next process: the token
// anchors the newest seal, so verify reports the loss and the sealer does
// not seal over it. Without the cut, a restart verifies intact.
func TestAuditCutWhileStoppedIsDetected(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(t *testing.T, db *sqlx.DB)
	}{
		{"none (a plain restart)", nil},
		{"cut to before the last seal", func(t *testing.T, db *sqlx.DB) {
			last := sqlInt(t, db, `SELECT MAX(seq) FROM audit_events WHERE action = 'kms:AuditSeal'`)
			sqlExec(t, db, `DELETE FROM audit_events WHERE seq >= ?`, last)
			var hash string
			if err := db.Get(&hash, db.Rebind(`SELECT hash FROM audit_events WHERE seq = ?`), last-1); err != nil {
				t.Fatal(err)
			}
			sqlExec(t, db, `UPDATE audit_head SET seq = ?, hash = ?`, last-1, hash)
		}},
		{"emptied", func(t *testing.T, db *sqlx.DB) {
			sqlExec(t, db, `DELETE FROM audit_events`)
			sqlExec(t, db, `UPDATE audit_head SET seq = 0, hash = ?`, service.AuditGenesisHash)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := kmstest.Ctx(t)
			dsn, db := insiderDB(t)
			tok := kmstest.Token(t)
			cfg := service.Config{Logger: kmstest.Logger()}
			svc := service.New(kmstest.StoreAt(t, dsn), tok, cfg)
			for i := 0; i < 3; i++ {
				if _, err := svc.Keys.CreateKey(audited(ctx, service.ActCreateKey), service.CreateKeyInput{}); err != nil {
					t.Fatal(err)
				}
				if err := svc.Audit.SealAudit(ctx); err != nil {
					t.Fatal(err)
				}
			}
			svc.Close() // kmsd stops (and seals what is left)
			if n := sqlInt(t, db, `SELECT COUNT(*) FROM audit_events WHERE action = 'kms:AuditSeal'`); n < 3 {
				t.Fatalf("%d seals, want 3", n)
			}
			if tc.cut != nil {
				tc.cut(t, db)
			}

			next := service.New(kmstest.StoreAt(t, dsn), tok, cfg)
			t.Cleanup(next.Close)
			v, err := next.Audit.VerifyAudit(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tc.cut == nil {
				if !v.Intact {
					t.Fatalf("untouched chain after a restart: %+v", v)
				}
				if _, err := next.Keys.CreateKey(audited(ctx, service.ActCreateKey), service.CreateKeyInput{}); err != nil {
					t.Fatal(err)
				}
				if err := next.Audit.SealAudit(ctx); err != nil {
					t.Fatalf("seal after a plain restart: %v", err)
				}
				return
			}
			if v.Intact || v.Reason == "" {
				t.Fatalf("chain cut while stopped verified: %+v", v)
			}
			t.Logf("verify: %s", v.Reason)
			if _, err := next.Keys.CreateKey(audited(ctx, service.ActCreateKey), service.CreateKeyInput{}); err != nil {
				t.Fatal(err)
			}
			if err := next.Audit.SealAudit(ctx); err == nil {
				t.Fatal("the service sealed over a chain cut while it was stopped")
			}
		})
	}
}
