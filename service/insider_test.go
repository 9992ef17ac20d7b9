package service_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
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

// tokenHas reports whether the token still holds the object named label,
// looked up through a second PKCS#11 session with the PIN.
func tokenHas(t *testing.T, out *kmstest.Outsider, label string) bool {
	t.Helper()
	ref, err := hsm.ParseLabel(label)
	if err != nil {
		t.Fatal(err)
	}
	_, err = out.Find(ref)
	return err == nil
}

// Item 6: what someone who can write the database does to have a key's
// token objects destroyed, and what the service does about it: keeps the
// objects, reports them (log, metric, an audit record denied), and
// destroys only what a sealed request's window allows.
func TestDatabaseWriterCannotDestroyKeys(t *testing.T) {
	const day = 24 * time.Hour
	past := func(c *kmstest.Clock) int64 { return c.Now().Add(-40 * day).UnixMicro() }
	for _, tc := range []struct {
		name   string
		attack func(t *testing.T, db *sqlx.DB, svc *service.Service, clock *kmstest.Clock, ctx context.Context, id string)
		run    string // "reconcile" or "due"
		// destroyUnknown: Config.DestroyUnknownObjects, which lets the
		// reconciler destroy objects of keys the database does not know.
		destroyUnknown bool
	}{
		{"delete a version row", func(t *testing.T, db *sqlx.DB, _ *service.Service, _ *kmstest.Clock, _ context.Context, id string) {
			sqlExec(t, db, `DELETE FROM key_versions WHERE key_id = ? AND version = 1`, id)
		}, "reconcile", false},
		{"mark the key deleted", func(t *testing.T, db *sqlx.DB, _ *service.Service, _ *kmstest.Clock, _ context.Context, id string) {
			sqlExec(t, db, `UPDATE keys SET state = 'Deleted' WHERE id = ?`, id)
			sqlExec(t, db, `UPDATE key_versions SET state = 'Destroyed' WHERE key_id = ?`, id)
		}, "reconcile", false},
		{"schedule a deletion already due", func(t *testing.T, db *sqlx.DB, _ *service.Service, c *kmstest.Clock, _ context.Context, id string) {
			sqlExec(t, db, `UPDATE keys SET state = 'PendingDeletion', deletion_date = ? WHERE id = ?`, past(c), id)
		}, "due", false},
		{"schedule a version destruction already due", func(t *testing.T, db *sqlx.DB, _ *service.Service, c *kmstest.Clock, _ context.Context, id string) {
			sqlExec(t, db, `UPDATE key_versions SET state = 'PendingDestruction', destroy_at = ? WHERE key_id = ? AND version = 1`, past(c), id)
		}, "due", false},
		{"reschedule a cancelled deletion", func(t *testing.T, db *sqlx.DB, svc *service.Service, c *kmstest.Clock, ctx context.Context, id string) {
			if _, err := svc.Keys.ScheduleKeyDeletion(audited(ctx, service.ActScheduleDeletion), id, 7); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Keys.CancelKeyDeletion(audited(ctx, service.ActCancelDeletion), id); err != nil {
				t.Fatal(err)
			}
			if err := svc.Audit.SealAudit(ctx); err != nil {
				t.Fatal(err)
			}
			c.Advance(8 * day) // the cancelled request's window has passed
			sqlExec(t, db, `UPDATE keys SET state = 'PendingDeletion', deletion_date = ? WHERE id = ?`, past(c), id)
		}, "due", false},
		{"schedule a deletion with a forged request record", func(t *testing.T, db *sqlx.DB, svc *service.Service, c *kmstest.Clock, ctx context.Context, id string) {
			if err := svc.Audit.SealAudit(ctx); err != nil {
				t.Fatal(err)
			}
			// A record claiming a request 40 days ago, appended at the head
			// with a correct hash: no seal covers it.
			var seq int64
			var hash string
			if err := db.QueryRowx(`SELECT seq, hash FROM audit_head`).Scan(&seq, &hash); err != nil {
				t.Fatal(err)
			}
			e := &service.AuditEvent{Seq: seq + 1, PrevHash: hash, At: c.Now().Add(-40 * day), Principal: "admin",
				Action: service.ActScheduleDeletion, KeyID: id, Outcome: service.OutcomeAllowed,
				Detail: `{"destroy_at":"x","window":"168h0m0s"}`}
			e.Hash = service.HashAuditEvent(e)
			sqlExec(t, db, `INSERT INTO audit_events (seq, at, request_id, principal, action, key_id, key_version, outcome, error_code, source, detail, prev_hash, hash)
				VALUES (?, ?, '', ?, ?, ?, 0, ?, '', '', ?, ?, ?)`, e.Seq, e.At.UnixMicro(), e.Principal, e.Action, e.KeyID, e.Outcome, e.Detail, e.PrevHash, e.Hash)
			sqlExec(t, db, `UPDATE audit_head SET seq = ?, hash = ?`, e.Seq, e.Hash)
			sqlExec(t, db, `UPDATE keys SET state = 'PendingDeletion', deletion_date = ? WHERE id = ?`, past(c), id)
		}, "due", false},
		{"delete the key's rows, with DestroyUnknownObjects on", func(t *testing.T, db *sqlx.DB, _ *service.Service, _ *kmstest.Clock, _ context.Context, id string) {
			sqlExec(t, db, `DELETE FROM key_versions WHERE key_id = ?`, id)
			sqlExec(t, db, `DELETE FROM rotations WHERE key_id = ?`, id)
			sqlExec(t, db, `DELETE FROM keys WHERE id = ?`, id)
		}, "reconcile", true},
		{"set a live version back to Pending", func(t *testing.T, db *sqlx.DB, _ *service.Service, c *kmstest.Clock, _ context.Context, id string) {
			sqlExec(t, db, `UPDATE key_versions SET state = 'Pending', updated_at = ? WHERE key_id = ? AND version = 2`, past(c), id)
		}, "reconcile", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := kmstest.Ctx(t)
			dsn, db := insiderDB(t)
			clock := kmstest.NewClock()
			svc := service.New(kmstest.StoreAt(t, dsn), kmstest.Token(t), service.Config{Clock: clock, Logger: kmstest.Logger(),
				MinRotationInterval: time.Hour, DestroyUnknownObjects: tc.destroyUnknown})
			t.Cleanup(svc.Close)
			out := kmstest.NewOutsider(t)
			k, err := svc.Keys.CreateKey(audited(ctx, service.ActCreateKey), service.CreateKeyInput{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Worker.RotateKey(audited(ctx, service.ActRotateKey), k.ID); err != nil {
				t.Fatal(err)
			}
			vs, err := svc.Keys.ListVersions(ctx, k.ID)
			if err != nil || len(vs) != 2 {
				t.Fatalf("versions: %v %+v", err, vs)
			}
			labels := []string{vs[0].TokenLabel, vs[1].TokenLabel}
			if err := svc.Audit.SealAudit(ctx); err != nil {
				t.Fatal(err)
			}
			tc.attack(t, db, svc, clock, ctx, k.ID)
			before := sqlInt(t, db, `SELECT COUNT(*) FROM audit_events WHERE outcome = 'denied' AND key_id = ?`, k.ID)
			for pass := 0; pass < 2; pass++ { // the second pass reports nothing new
				if tc.run == "due" {
					err = svc.Worker.RunDue(ctx)
				} else {
					var rep *service.ReconcileReport
					rep, err = svc.Worker.Reconcile(ctx)
					if err == nil && ((rep.ObjectsDestroyed != 0 && !tc.destroyUnknown) || len(rep.Kept) == 0) { // with DestroyUnknownObjects, other tests' leftovers go
						t.Fatalf("reconcile: %+v; want nothing destroyed and the kept objects reported", rep)
					}
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			for _, l := range labels {
				if !tokenHas(t, out, l) {
					t.Fatalf("token object %s destroyed on the database's word", l)
				}
			}
			if svc.Stats().DestructionsRefused == 0 {
				t.Error("the refusal is not counted")
			}
			if n := sqlInt(t, db, `SELECT COUNT(*) FROM audit_events WHERE outcome = 'denied' AND key_id = ? AND principal = 'system'`, k.ID); n == 0 || n > before+2 {
				t.Errorf("%d audit records of the refusal (before %d); want one per object, once", n, before)
			}
		})
	}
}

// Item 6, the legitimate path: a deletion scheduled through the API, whose
// sealed record's window passed, destroys the key's objects, each
// destruction on the record; before the window ends nothing happens.
func TestScheduledDeletionDestroysWithEvidence(t *testing.T) {
	const day = 24 * time.Hour
	ctx := kmstest.Ctx(t)
	dsn, db := insiderDB(t)
	clock := kmstest.NewClock()
	svc := service.New(kmstest.StoreAt(t, dsn), kmstest.Token(t), service.Config{Clock: clock, Logger: kmstest.Logger(), MinRotationInterval: time.Hour})
	t.Cleanup(svc.Close)
	out := kmstest.NewOutsider(t)
	k, err := svc.Keys.CreateKey(audited(ctx, service.ActCreateKey), service.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Worker.RotateKey(audited(ctx, service.ActRotateKey), k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Keys.ChangeVersion(audited(ctx, service.ActUpdateKeyVersion), k.ID, 1, service.ScheduleVersionDestruction, 7); err != nil {
		t.Fatal(err)
	}
	vs, _ := svc.Keys.ListVersions(ctx, k.ID)
	v1, v2 := vs[0].TokenLabel, vs[1].TokenLabel
	if err := svc.Audit.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	clock.Advance(7*day - time.Minute)
	if err := svc.Worker.RunDue(ctx); err != nil || !tokenHas(t, out, v1) {
		t.Fatalf("before the window ended: %v, object there: %v", err, tokenHas(t, out, v1))
	}
	clock.Advance(time.Minute)
	if err := svc.Worker.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	if tokenHas(t, out, v1) {
		t.Fatal("version 1 not destroyed after its sealed window")
	}
	if tokenHas(t, out, v2) == false {
		t.Fatal("version 2 destroyed with version 1")
	}
	if _, err := svc.Keys.ScheduleKeyDeletion(audited(ctx, service.ActScheduleDeletion), k.ID, 7); err != nil {
		t.Fatal(err)
	}
	if err := svc.Audit.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	clock.Advance(7 * day)
	if err := svc.Worker.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	if tokenHas(t, out, v2) {
		t.Fatal("the deleted key's version 2 is still in the token")
	}
	for _, a := range []string{"kms:DestroyKeyVersion", "kms:DeleteKey"} {
		if n := sqlInt(t, db, `SELECT COUNT(*) FROM audit_events WHERE action = ? AND key_id = ? AND outcome = 'allowed'`, a, k.ID); n != 1 {
			t.Errorf("%d allowed records of %s, want 1", n, a)
		}
	}
	if svc.Stats().DestructionsRefused != 0 {
		t.Errorf("%d refusals on the legitimate path", svc.Stats().DestructionsRefused)
	}
}
