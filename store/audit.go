package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/hsmkms/hsmkms/service"
)

// The hash-chained audit log. Each record holds the hash of the one before
// it; audit_head holds the last seq and hash. Appends lock the head row, so
// they are serial across connections and replicas, and a record's seq is
// exactly one more than its predecessor's, with no gap and no fork.

const (
	auditColumns = `seq, at, request_id, principal, credential, action, key_id, key_version,
		outcome, error_code, source, detail, prev_hash, hash`
	sqlAuditHead     = `SELECT seq, hash FROM audit_head WHERE id = 1`
	sqlMoveAuditHead = `UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`
	// seq is given explicitly: the head, not the table, numbers records.
	sqlInsertAuditRows   = `INSERT INTO audit_events (` + auditColumns + `) VALUES `
	auditRowPlaceholders = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// 14 parameters per row stays far below both databases' limits
	// (SQLite 32766, PostgreSQL 65535).
	auditInsertChunk = 256
)

// auditRow is an audit_events row as stored.
type auditRow struct {
	Seq        int64  `db:"seq"`
	At         int64  `db:"at"`
	RequestID  string `db:"request_id"`
	Principal  string `db:"principal"`
	Credential string `db:"credential"`
	Action     string `db:"action"`
	KeyID      string `db:"key_id"`
	KeyVersion int    `db:"key_version"`
	Outcome    string `db:"outcome"`
	ErrorCode  string `db:"error_code"`
	Source     string `db:"source"`
	Detail     string `db:"detail"`
	PrevHash   string `db:"prev_hash"`
	Hash       string `db:"hash"`
}

// auditHead is the audit_head row.
type auditHead struct {
	Seq  int64  `db:"seq"`
	Hash string `db:"hash"`
}

// AppendAudit appends events to the chain, in order, atomically. It locks
// the head (SELECT ... FOR UPDATE on PostgreSQL; on SQLite the write
// transaction already excludes every other writer), then for each event
// sets At to UTC microseconds (the precision stored), Seq to the next
// number, PrevHash to the previous record's hash and Hash to h(e), computed
// from those final values, inserts it, and moves the head.
//
// Inside a transaction the records commit or roll back with it, and the head
// stays locked until it ends: append last, after the other writes, to hold
// the lock briefly. Outside one, AppendAudit runs in its own transaction. On
// error nothing is appended and the events' Seq, PrevHash and Hash are void;
// the same holds when an enclosing transaction rolls back. No events: no-op.
func (q auditRows) AppendAudit(ctx context.Context, events []*service.AuditEvent, h service.AuditHash) error {
	if len(events) == 0 {
		return nil
	}
	if h == nil {
		return errors.New("store: append audit: no hash function")
	}
	for i, e := range events {
		if e == nil {
			return fmt.Errorf("store: append audit: event %d is nil", i)
		}
	}
	if db, ok := q.w.(*sqlx.DB); ok {
		q.stmts.prepareAudit(ctx, len(events)) // before the transaction takes the connection
		ctx, cancel := bound(ctx, q.timeout)
		defer cancel()
		return withTx(ctx, db, func(tx *sqlx.Tx) error {
			return auditRows{conn{r: tx, w: tx, timeout: q.timeout}, q.stmts}.appendAudit(ctx, events, h)
		})
	}
	return q.appendAudit(ctx, events, h)
}

// appendAudit is AppendAudit inside a transaction.
func (q auditRows) appendAudit(ctx context.Context, events []*service.AuditEvent, h service.AuditHash) error {
	query := sqlAuditHead
	if q.w.DriverName() == "pgx" {
		query += " FOR UPDATE"
	}
	var head auditHead
	tx, _ := q.w.(*sqlx.Tx)
	headStmt, moveStmt := q.stmts.auditHead()
	if tx != nil && headStmt != nil {
		if err := classify(tx.StmtContext(ctx, headStmt).QueryRowContext(ctx).Scan(&head.Seq, &head.Hash)); err != nil {
			return internal("lock", "audit head", err)
		}
	} else if err := q.getW(ctx, &head, query); err != nil {
		return internal("lock", "audit head", err)
	}
	for _, e := range events {
		e.At = e.At.UTC().Truncate(time.Microsecond)
		e.Seq, e.PrevHash, e.Hash = head.Seq+1, head.Hash, ""
		e.Hash = h(e)
		head = auditHead{Seq: e.Seq, Hash: e.Hash}
	}
	// A group commit inserts many records: one multi-row statement per
	// chunk costs one parse instead of one per record.
	// On SQLite the statement is prepared once per number of rows and
	// reused (stmtCache).
	args := make([]any, 0, min(len(events), auditInsertChunk)*14)
	for start := 0; start < len(events); start += auditInsertChunk {
		chunk := events[start:min(start+auditInsertChunk, len(events))]
		args = args[:0]
		for _, e := range chunk {
			args = append(args, e.Seq, micros(e.At), e.RequestID, e.Principal, e.Credential,
				e.Action, e.KeyID, e.KeyVersion, e.Outcome, e.ErrorCode, e.Source, e.Detail,
				e.PrevHash, e.Hash)
		}
		var err error
		if tx != nil && q.stmts.auditInsert(len(chunk)) != nil {
			_, err = tx.StmtContext(ctx, q.stmts.auditInsert(len(chunk))).ExecContext(ctx, args...)
			err = classify(err)
		} else {
			_, err = q.exec(ctx, auditInsertSQL(len(chunk)), args...)
		}
		if err != nil {
			return internal("insert", fmt.Sprintf("audit records %d to %d", chunk[0].Seq, chunk[len(chunk)-1].Seq), err)
		}
	}
	var err error
	if tx != nil && moveStmt != nil {
		_, err = tx.StmtContext(ctx, moveStmt).ExecContext(ctx, head.Seq, head.Hash)
		err = classify(err)
	} else {
		_, err = q.exec(ctx, sqlMoveAuditHead, head.Seq, head.Hash)
	}
	if err != nil {
		return internal("move", "audit head", err)
	}
	return nil
}

// ListAudit returns up to f.Limit records (all if f.Limit <= 0) with seq >
// f.AfterSeq that match the set fields of f, ordered by seq. From and To
// compare at the stored microseconds: at >= From and at < To exactly, even
// when they hold nanoseconds.
func (q auditRows) ListAudit(ctx context.Context, f service.AuditFilter) ([]service.AuditEvent, error) {
	var b strings.Builder
	b.WriteString(`SELECT ` + auditColumns + ` FROM audit_events WHERE seq > ?`)
	args := []any{f.AfterSeq}
	if !f.From.IsZero() {
		b.WriteString(` AND at >= ?`)
		args = append(args, ceilMicros(f.From))
	}
	if !f.To.IsZero() {
		b.WriteString(` AND at < ?`)
		args = append(args, ceilMicros(f.To))
	}
	if f.KeyID != "" {
		b.WriteString(` AND key_id = ?`)
		args = append(args, f.KeyID)
	}
	if f.Principal != "" {
		b.WriteString(` AND principal = ?`)
		args = append(args, f.Principal)
	}
	if len(f.Actions) > 0 {
		b.WriteString(` AND action IN (?` + strings.Repeat(`, ?`, len(f.Actions)-1) + `)`)
		for _, a := range f.Actions {
			args = append(args, a)
		}
	}
	b.WriteString(` ORDER BY seq LIMIT ?`)
	args = append(args, limitArg(f.Limit))

	var rows []auditRow
	if err := q.sel(ctx, &rows, b.String(), args...); err != nil {
		return nil, internal("list", "audit records", err)
	}
	es := make([]service.AuditEvent, len(rows))
	for i, r := range rows {
		es[i] = service.AuditEvent{Seq: r.Seq, At: fromMicros(r.At), RequestID: r.RequestID,
			Principal: r.Principal, Credential: r.Credential, Action: r.Action, KeyID: r.KeyID, KeyVersion: r.KeyVersion,
			Outcome: r.Outcome, ErrorCode: r.ErrorCode, Source: r.Source, Detail: r.Detail,
			PrevHash: r.PrevHash, Hash: r.Hash}
	}
	return es, nil
}

// ceilMicros is t in unix microseconds, rounded up: for a whole number of
// microseconds m, m >= t exactly when m >= ceilMicros(t), and m < t exactly
// when m < ceilMicros(t).
func ceilMicros(t time.Time) int64 {
	us := micros(t) // rounds down: the sub-second part is never negative
	if t.Nanosecond()%int(time.Microsecond) != 0 {
		us++
	}
	return us
}

// LastAudit returns the newest record of an action; ErrNotFound if none.
func (q auditRows) LastAudit(ctx context.Context, action string) (*service.AuditEvent, error) {
	var rows []auditRow
	if err := q.sel(ctx, &rows, `SELECT `+auditColumns+` FROM audit_events WHERE action = ? ORDER BY seq DESC LIMIT 1`, action); err != nil {
		return nil, internal("get", "last audit record", err)
	}
	if len(rows) == 0 {
		return nil, service.ErrNotFound
	}
	r := rows[0]
	return &service.AuditEvent{Seq: r.Seq, At: fromMicros(r.At), RequestID: r.RequestID,
		Principal: r.Principal, Credential: r.Credential, Action: r.Action, KeyID: r.KeyID, KeyVersion: r.KeyVersion,
		Outcome: r.Outcome, ErrorCode: r.ErrorCode, Source: r.Source, Detail: r.Detail,
		PrevHash: r.PrevHash, Hash: r.Hash}, nil
}

// LockAccessChanges takes a transaction-scoped advisory lock on PostgreSQL
// (SQLite's write transactions are serial already). Only the access changes
// that check for a remaining administrator take it, and first: it orders
// them among themselves without entering the row and audit-head locks the
// other transactions take.
func (q auditRows) LockAccessChanges(ctx context.Context) error {
	if q.w.DriverName() != "pgx" {
		return nil
	}
	if _, err := q.exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('hsmkms/access-changes', 0))`); err != nil {
		return internal("lock", "access changes", err)
	}
	return nil
}

// LockAuditHead locks the chain head until the transaction ends (on
// SQLite the write transaction holds the database already), so that what
// the transaction reads of the chain afterwards stays true until it
// appends.
func (q auditRows) LockAuditHead(ctx context.Context) error {
	if q.w.DriverName() != "pgx" {
		return nil
	}
	var head auditHead
	if err := q.get(ctx, &head, sqlAuditHead+" FOR UPDATE"); err != nil {
		return internal("lock", "audit head", err)
	}
	return nil
}

// AuditHead returns the last seq and its hash: 0 and
// service.AuditGenesisHash while the chain is empty.
func (q auditRows) AuditHead(ctx context.Context) (int64, string, error) {
	var head auditHead
	if err := q.get(ctx, &head, sqlAuditHead); err != nil {
		return 0, "", internal("get", "audit head", err)
	}
	return head.Seq, head.Hash, nil
}
