package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/hsmkms/hsmkms/service"
)

// chainHash is a test AuditHash: SHA-256 over every field but Hash, the time
// to the nanosecond, so that a stored time that differs from the hashed one
// breaks verification.
func chainHash(e *service.AuditEvent) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%d|%d|%s|%q|%q|%q|%q|%d|%q|%q|%q|%q|%q",
		e.Seq, e.At.UnixNano(), e.At.Location(), e.RequestID, e.Principal, e.Action, e.KeyID,
		e.KeyVersion, e.Outcome, e.ErrorCode, e.Source, e.Detail, e.PrevHash))
	return hex.EncodeToString(sum[:])
}

// newEvent is an allowed Encrypt by principal on key.
func newEvent(principal, key string, when time.Time) *service.AuditEvent {
	return &service.AuditEvent{At: when, RequestID: nextRequestID(), Principal: principal,
		Credential: "token:" + principal, Action: "Encrypt", KeyID: key, KeyVersion: 1, Outcome: "allowed", Source: "127.0.0.1",
		Detail: `{"context_keys":["app"]}`}
}

// requests numbers the request ids of newEvent.
var requests atomic.Int64

func nextRequestID() string { return fmt.Sprintf("req-%06d", requests.Add(1)) }

// verifyChain checks that events are the whole log: seqs 1..n, each linked
// to the one before (the first to the genesis hash), each hash recomputed
// from the stored fields, and the head on the last.
func verifyChain(t *testing.T, s *DB, events []service.AuditEvent) {
	t.Helper()
	prev := service.AuditGenesisHash
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("record %d has seq %d: a gap or a reorder", i+1, e.Seq)
		}
		if e.PrevHash != prev {
			t.Fatalf("record %d: prev_hash %s, want %s", e.Seq, e.PrevHash, prev)
		}
		if h := chainHash(&e); h != e.Hash {
			t.Fatalf("record %d: stored hash %s, recomputed %s", e.Seq, e.Hash, h)
		}
		prev = e.Hash
	}
	seq, hash, err := s.AuditHead(t.Context())
	noErr(t, err)
	if seq != int64(len(events)) || hash != prev {
		t.Fatalf("head (%d, %s), want (%d, %s)", seq, hash, len(events), prev)
	}
}

func allAudit(t *testing.T, s *DB) []service.AuditEvent {
	t.Helper()
	es, err := s.ListAudit(t.Context(), service.AuditFilter{})
	noErr(t, err)
	return es
}

func TestAppendAudit(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		seq, hash, err := s.AuditHead(ctx)
		noErr(t, err)
		if seq != 0 || hash != service.AuditGenesisHash {
			t.Fatalf("empty head = (%d, %s), want (0, genesis)", seq, hash)
		}

		// h sees every field final except Hash, which is empty.
		var seen []service.AuditEvent
		h := func(e *service.AuditEvent) string {
			seen = append(seen, *e)
			return chainHash(e)
		}
		paris := time.FixedZone("CET", 3600)
		batch := []*service.AuditEvent{
			newEvent("alice", "k1", t0.In(paris)), // nanoseconds, not UTC
			newEvent("bob", "k2", at(time.Second)),
			newEvent("alice", "", at(2*time.Second)),
		}
		batch[0].Seq, batch[0].PrevHash, batch[0].Hash = 99, "bogus", "bogus" // overwritten
		batch[2].Outcome, batch[2].ErrorCode, batch[2].Detail = "denied", "AccessDeniedException", ""
		noErr(t, s.AppendAudit(ctx, batch, h))

		prev := service.AuditGenesisHash
		for i, e := range batch {
			want := seen[i]
			want.Hash = e.Hash
			deepEqual(t, fmt.Sprintf("event %d after append", i), *e, want)
			if seen[i].Hash != "" {
				t.Errorf("h saw Hash %q, want it empty", seen[i].Hash)
			}
			if e.Seq != int64(i+1) || e.PrevHash != prev || e.Hash != chainHash(&seen[i]) {
				t.Errorf("event %d: seq %d prev %s hash %s", i, e.Seq, e.PrevHash, e.Hash)
			}
			if e.At.Location() != time.UTC || e.At.Nanosecond()%1000 != 0 {
				t.Errorf("event %d hashed with At %v, want UTC microseconds", i, e.At)
			}
			prev = e.Hash
		}
		if !batch[0].At.Equal(us(t0)) {
			t.Errorf("At = %v, want %v", batch[0].At, us(t0))
		}
		// What is stored is exactly what was hashed.
		stored := allAudit(t, s)
		deepEqual(t, "stored", stored, []service.AuditEvent{*batch[0], *batch[1], *batch[2]})
		verifyChain(t, s, stored)

		// The next call links to the last record.
		next := newEvent("carol", "k1", at(time.Hour))
		noErr(t, s.AppendAudit(ctx, []*service.AuditEvent{next}, chainHash))
		if next.Seq != 4 || next.PrevHash != batch[2].Hash {
			t.Errorf("next: seq %d prev %s, want 4 and %s", next.Seq, next.PrevHash, batch[2].Hash)
		}
		verifyChain(t, s, allAudit(t, s))

		// Nothing to append: no call of h, no change.
		seen = nil
		noErr(t, s.AppendAudit(ctx, nil, h))
		noErr(t, s.AppendAudit(ctx, []*service.AuditEvent{}, h))
		if len(seen) != 0 {
			t.Errorf("h called %d times for no events", len(seen))
		}
		if err := s.AppendAudit(ctx, []*service.AuditEvent{newEvent("x", "", t0)}, nil); err == nil {
			t.Error("AppendAudit accepted a nil hash function")
		}
		if err := s.AppendAudit(ctx, []*service.AuditEvent{newEvent("x", "", t0), nil}, chainHash); err == nil {
			t.Error("AppendAudit accepted a nil event")
		}
		verifyChain(t, s, allAudit(t, s))
	})
}

func TestListAudit(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		// seq: 1 alice/k1 t0, 2 bob/k1 t0+1s, 3 alice/k2 t0+2s, 4 bob/"" t0+3s, 5 alice/k1 t0+4s
		var events []*service.AuditEvent
		for i, pk := range [][2]string{{"alice", "k1"}, {"bob", "k1"}, {"alice", "k2"}, {"bob", ""}, {"alice", "k1"}} {
			events = append(events, newEvent(pk[0], pk[1], at(time.Duration(i)*time.Second)))
		}
		noErr(t, s.AppendAudit(ctx, events, chainHash))
		ns := time.Nanosecond
		tests := []struct {
			name string
			f    service.AuditFilter
			want []int64
		}{
			{"all", service.AuditFilter{}, []int64{1, 2, 3, 4, 5}},
			{"after seq", service.AuditFilter{AfterSeq: 3}, []int64{4, 5}},
			{"after the last", service.AuditFilter{AfterSeq: 5}, []int64{}},
			{"limit", service.AuditFilter{Limit: 2}, []int64{1, 2}},
			{"page", service.AuditFilter{AfterSeq: 2, Limit: 2}, []int64{3, 4}},
			{"key", service.AuditFilter{KeyID: "k1"}, []int64{1, 2, 5}},
			{"principal", service.AuditFilter{Principal: "alice"}, []int64{1, 3, 5}},
			{"key and principal", service.AuditFilter{KeyID: "k1", Principal: "bob"}, []int64{2}},
			{"unknown key", service.AuditFilter{KeyID: "nokey"}, []int64{}},
			{"from", service.AuditFilter{From: us(at(2 * time.Second))}, []int64{3, 4, 5}},
			{"to", service.AuditFilter{To: us(at(2 * time.Second))}, []int64{1, 2}},
			{"from to", service.AuditFilter{From: us(at(time.Second)), To: us(at(3 * time.Second))}, []int64{2, 3}},
			// Record 1 is stored at t0's microsecond, which is before t0
			// itself (t0 has nanoseconds): at >= t0 excludes it, at < t0
			// includes it.
			{"from with nanoseconds", service.AuditFilter{From: t0, To: us(at(time.Second))}, []int64{}},
			{"to with nanoseconds", service.AuditFilter{To: t0}, []int64{1}},
			{"to one ns past", service.AuditFilter{From: us(t0), To: us(t0).Add(ns)}, []int64{1}},
			{"everything", service.AuditFilter{From: us(t0), To: at(time.Hour), KeyID: "k1",
				Principal: "alice", AfterSeq: 1, Limit: 10}, []int64{5}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.ListAudit(ctx, tt.f)
				noErr(t, err)
				seqs := []int64{}
				for _, e := range got {
					seqs = append(seqs, e.Seq)
					if want := events[e.Seq-1]; e != *want {
						t.Errorf("record %d:\n got %+v\nwant %+v", e.Seq, e, *want)
					}
				}
				deepEqual(t, "seqs", seqs, tt.want)
			})
		}
	})
}

// TestAppendAuditConcurrent: writers appending at once, some in their own
// transactions beside other writes, some in batches, leave one unbroken
// chain.
func TestAppendAuditConcurrent(t *testing.T) {
	const writers, perWriter = 8, 25
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			total int
		)
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					name := fmt.Sprintf("w%d-%02d", w, i)
					batch := make([]*service.AuditEvent, 1+i%3)
					for j := range batch {
						batch[j] = newEvent(name, fmt.Sprintf("k%d", j), at(time.Duration(i)*time.Millisecond))
					}
					var err error
					if i%2 == 0 {
						err = s.InTx(ctx, func(q service.Queries) error {
							if err := q.InsertPrincipal(ctx, newPrincipal(name, "")); err != nil {
								return err
							}
							if _, _, err := q.AuditHead(ctx); err != nil {
								return err
							}
							return q.AppendAudit(ctx, batch, chainHash)
						})
					} else {
						err = s.AppendAudit(ctx, batch, chainHash)
					}
					if err != nil {
						t.Errorf("%s: %v", name, err)
						return
					}
					mu.Lock()
					total += len(batch)
					mu.Unlock()
					for j := 1; j < len(batch); j++ {
						if batch[j].Seq != batch[j-1].Seq+1 {
							t.Errorf("%s: batch split: seqs %d, %d", name, batch[j-1].Seq, batch[j].Seq)
						}
					}
				}
			})
		}
		wg.Wait()
		events := allAudit(t, s)
		if len(events) != total {
			t.Fatalf("%d records, want %d", len(events), total)
		}
		verifyChain(t, s, events)
		n, err := s.CountPrincipals(ctx)
		noErr(t, err)
		if want := writers * (perWriter + 1) / 2; n != want {
			t.Errorf("%d principals written beside the audit, want %d", n, want)
		}
	})
}

// TestAppendAuditRollback: records appended in a transaction that fails are
// gone with it, and the head has not moved.
func TestAppendAuditRollback(t *testing.T) {
	errBoom := errors.New("boom")
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		noErr(t, s.AppendAudit(ctx, []*service.AuditEvent{newEvent("alice", "k1", t0)}, chainHash))
		before := allAudit(t, s)

		err := s.InTx(ctx, func(q service.Queries) error {
			if err := q.InsertPrincipal(ctx, newPrincipal("ghost", "")); err != nil {
				return err
			}
			if err := q.AppendAudit(ctx, []*service.AuditEvent{newEvent("ghost", "", t0), newEvent("ghost", "", t0)}, chainHash); err != nil {
				return err
			}
			// The transaction sees its own records and head.
			if seq, _, err := q.AuditHead(ctx); err != nil || seq != 3 {
				return fmt.Errorf("head in tx: %d, %v", seq, err)
			}
			return errBoom
		})
		if !errors.Is(err, errBoom) {
			t.Fatalf("InTx = %v, want fn's error", err)
		}
		deepEqual(t, "records after rollback", allAudit(t, s), before)
		verifyChain(t, s, before)
		if _, err := s.GetPrincipal(ctx, "ghost"); !errors.Is(err, service.ErrNotFound) {
			t.Errorf("principal after rollback: %v", err)
		}

		// The chain goes on from the committed head.
		e := newEvent("alice", "k1", t0)
		noErr(t, s.AppendAudit(ctx, []*service.AuditEvent{e}, chainHash))
		if e.Seq != 2 || e.PrevHash != before[0].Hash {
			t.Errorf("after rollback: seq %d prev %s", e.Seq, e.PrevHash)
		}
		verifyChain(t, s, allAudit(t, s))
	})
}

// TestAppendAuditFailure: a failed insert leaves nothing behind, outside a
// transaction too.
func TestAppendAuditFailure(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		// Occupy seq 2 behind the head's back, as a corrupt table would.
		_, err := s.auditRows.exec(ctx, sqlInsertAuditRows+auditRowPlaceholders, 2, micros(t0), "", "", "", "x", "", 0, "allowed", "", "", "{}", "p", "h")
		noErr(t, err)
		err = s.AppendAudit(ctx, []*service.AuditEvent{newEvent("a", "", t0), newEvent("b", "", t0)}, chainHash)
		if err == nil || errors.Is(err, service.ErrAlreadyExists) {
			t.Fatalf("AppendAudit over a taken seq = %v, want an internal error", err)
		}
		seq, hash, err := s.AuditHead(ctx)
		noErr(t, err)
		if seq != 0 || hash != service.AuditGenesisHash {
			t.Errorf("head moved to (%d, %s)", seq, hash)
		}
		if es := allAudit(t, s); len(es) != 1 {
			t.Errorf("%d records, want only the planted one", len(es))
		}
	})
}

// TestMigrateAuditHead: a database with audit records from before 0002
// continues its chain from the last one.
func TestMigrateAuditHead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		ctx := t.Context()
		d, raw := dialectSQLite, strings.TrimPrefix(dsn, "sqlite:")
		driver := "sqlite"
		if !strings.HasPrefix(dsn, "sqlite:") {
			d, raw, driver = dialectPostgres, dsn, "pgx"
		}
		db, err := sqlx.Open(driver, raw)
		noErr(t, err)
		ms, err := migrations(d)
		noErr(t, err)
		noErr(t, withTx(ctx, db, func(tx *sqlx.Tx) error {
			return applyMigration(ctx, tx, d, ms[0], len(ms))
		}))
		for seq, hash := range []string{"h1", "h2", "h3"} {
			// The columns of the first schema (no credential yet).
			_, err := db.ExecContext(ctx, db.Rebind(`INSERT INTO audit_events (seq, at, request_id, principal, action, key_id,
				key_version, outcome, error_code, source, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
				seq+1, micros(t0), "", "", "x", "", 0, "allowed", "", "", "{}", "prev", hash)
			noErr(t, err)
		}
		noErr(t, db.Close())

		s := openStore(t, dsn)
		seq, hash, err := s.AuditHead(ctx)
		noErr(t, err)
		if seq != 3 || hash != "h3" {
			t.Fatalf("head after migration = (%d, %s), want (3, h3)", seq, hash)
		}
		e := newEvent("alice", "", t0)
		noErr(t, s.AppendAudit(ctx, []*service.AuditEvent{e}, chainHash))
		if e.Seq != 4 || e.PrevHash != "h3" {
			t.Errorf("first append: seq %d prev %s, want 4 and h3", e.Seq, e.PrevHash)
		}
	})
}

// TestAccessOtherErrors: a database error that is neither a missing row nor
// a duplicate comes back wrapped, never as a domain error.
func TestAccessOtherErrors(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		mustInsertPrincipals(t, s, "alice")
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		calls := map[string]func() error{
			"InsertPrincipal": func() error { return s.InsertPrincipal(ctx, newPrincipal("bob", "")) },
			"GetPrincipal":    func() error { _, err := s.GetPrincipal(ctx, "alice"); return err },
			"PrincipalByCertSubject": func() error {
				_, err := s.PrincipalByCertSubject(ctx, "CN=a")
				return err
			},
			"ListPrincipals":  func() error { _, err := s.ListPrincipals(ctx, service.Page{}); return err },
			"DeletePrincipal": func() error { return s.DeletePrincipal(ctx, "alice") },
			"CountPrincipals": func() error { _, err := s.CountPrincipals(ctx); return err },
			"PutPolicy":       func() error { return s.PutPolicy(ctx, newPolicy("p", "{}")) },
			"GetPolicy":       func() error { _, err := s.GetPolicy(ctx, "p"); return err },
			"ListPolicies":    func() error { _, err := s.ListPolicies(ctx, service.Page{}); return err },
			"DeletePolicy":    func() error { return s.DeletePolicy(ctx, "p") },
			"AttachPolicy":    func() error { return s.AttachPolicy(ctx, "alice", "p") },
			"DetachPolicy":    func() error { return s.DetachPolicy(ctx, "alice", "p") },
			"PoliciesOf":      func() error { _, err := s.PoliciesOf(ctx, "alice"); return err },
			"InsertToken":     func() error { return s.InsertToken(ctx, newToken("t", "alice", t0)) },
			"GetToken":        func() error { _, err := s.GetToken(ctx, "t"); return err },
			"ListTokens":      func() error { _, err := s.ListTokens(ctx, "alice"); return err },
			"RevokeToken":     func() error { return s.RevokeToken(ctx, "t", t0) },
			"AppendAudit": func() error {
				return s.AppendAudit(ctx, []*service.AuditEvent{newEvent("a", "", t0)}, chainHash)
			},
			"ListAudit": func() error { _, err := s.ListAudit(ctx, service.AuditFilter{}); return err },
			"AuditHead": func() error { _, _, err := s.AuditHead(ctx); return err },
		}
		for name, call := range calls {
			err := call()
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v, want context.Canceled", name, err)
			}
			for _, kind := range []error{service.ErrNotFound, service.ErrAlreadyExists, service.ErrInvalidState} {
				if errors.Is(err, kind) {
					t.Errorf("%s: %v is a domain error", name, err)
				}
			}
		}
	})
}
