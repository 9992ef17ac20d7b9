package store

import (
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

// TestAppendAuditPrepared: batches of the same and of different sizes,
// across the chunk boundary, outside and inside transactions, use and reuse
// the prepared INSERTs (SQLite) and keep the chain whole; a batch the
// database refuses after a prepared one leaves nothing behind.
func TestAppendAuditPrepared(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		batch := func(n int) []*service.AuditEvent {
			es := make([]*service.AuditEvent, n)
			for i := range es {
				es[i] = newEvent("alice", "k1", at(time.Duration(i)*time.Millisecond))
			}
			return es
		}
		for _, n := range []int{1, 3, 3, 1, auditInsertChunk, auditInsertChunk + 5, auditInsertChunk + 5, 2*auditInsertChunk + 1} {
			noErr(t, s.AppendAudit(ctx, batch(n), chainHash))
		}
		noErr(t, s.InTx(ctx, func(q service.Queries) error { return q.AppendAudit(ctx, batch(3), chainHash) }))
		before := allAudit(t, s)
		verifyChain(t, s, before)
		want := 1 + 3 + 3 + 1 + auditInsertChunk + 2*(auditInsertChunk+5) + 2*auditInsertChunk + 1 + 3
		if len(before) != want {
			t.Fatalf("%d records, want %d", len(before), want)
		}
		if s.dialect == dialectSQLite {
			for _, n := range []int{1, 3, 5, auditInsertChunk} {
				if s.stmts.auditInsert(n) == nil {
					t.Errorf("no prepared INSERT of %d rows after batches of that size", n)
				}
			}
			if head, move := s.stmts.auditHead(); head == nil || move == nil {
				t.Error("the audit head's SELECT and UPDATE are not prepared")
			}
		}

		// A batch whose first seq is taken (the head moved back by one)
		// fails on the prepared statement and rolls back whole.
		_, err := s.w.ExecContext(ctx, `UPDATE audit_head SET seq = seq - 1 WHERE id = 1`)
		noErr(t, err)
		if err := s.AppendAudit(ctx, batch(3), chainHash); err == nil {
			t.Fatal("a batch colliding with an existing seq was appended")
		}
		_, err = s.w.ExecContext(ctx, `UPDATE audit_head SET seq = seq + 1 WHERE id = 1`)
		noErr(t, err)
		deepEqual(t, "records after the refused batch", allAudit(t, s), before)
		verifyChain(t, s, allAudit(t, s))

		// Closed, the store refuses appends and its statements are gone.
		if s.dialect == dialectSQLite {
			noErr(t, s.stmts.close())
			if head, _ := s.stmts.auditHead(); s.stmts.auditInsert(1) != nil || head != nil {
				t.Error("a prepared statement survived close")
			}
			// Unprepared appends still work until the database closes.
			noErr(t, s.AppendAudit(ctx, batch(2), chainHash))
			verifyChain(t, s, allAudit(t, s))
		}
	})
}
