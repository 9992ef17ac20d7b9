package service

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
)

// Audit outcomes.
const (
	OutcomeAllowed = "allowed" // the action was done
	OutcomeDenied  = "denied"  // authentication or authorisation refused it
	OutcomeFailed  = "failed"  // allowed, but it failed (validation, state, token, ...)
)

// HashAuditEvent is the hash of the chain: SHA-256 over the previous hash
// and every field of the record, each length-prefixed, so that no two
// different records hash alike and a record cannot be moved to another
// place in the chain (its seq and predecessor are inside). A record with a
// credential is hashed as v2 (its own tag, the credential after the
// principal); one without, as v1, exactly as before credentials were kept,
// so older records verify unchanged and no record can pass for the other
// version (the tags differ).
func HashAuditEvent(e *AuditEvent) string {
	// One buffer hashed at once (on the stack for an ordinary record):
	// the same bytes as writing each field to the hash, without an
	// allocation per field.
	var stack [512]byte
	b := stack[:0]
	field := func(s string) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	num := func(n int64) {
		var d [20]byte
		digits := strconv.AppendInt(d[:0], n, 10)
		b = binary.BigEndian.AppendUint64(b, uint64(len(digits)))
		b = append(b, digits...)
	}
	if e.Credential == "" {
		field("hsmkms-audit-v1")
	} else {
		field("hsmkms-audit-v2")
	}
	field(e.PrevHash)
	num(e.Seq)
	num(e.At.UTC().Truncate(time.Microsecond).UnixMicro())
	field(e.RequestID)
	field(e.Principal)
	if e.Credential != "" {
		field(e.Credential)
	}
	field(e.Action)
	field(e.KeyID)
	num(int64(e.KeyVersion))
	field(e.Outcome)
	field(e.ErrorCode)
	field(e.Source)
	field(e.Detail)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// event turns an activity into an audit record.
func (a *Activity) event(at time.Time, outcome, code string) *AuditEvent {
	return &AuditEvent{At: at, RequestID: a.requestID, Principal: a.principal, Credential: a.credential, Action: a.action,
		KeyID: a.keyID, KeyVersion: a.keyVersion, Outcome: outcome, ErrorCode: code,
		Source: a.source, Detail: detailJSON(a.detail)}
}

// detailJSON is json.Marshal of a record's detail, byte for byte (sorted
// keys, encoding/json's escaping), without its reflection: every batch item
// has a detail, and a batch of 32 spent more on marshalling them than on
// hashing the records. Keys and values that need no escaping are written
// as they are; the others are quoted by encoding/json.
func detailJSON(d map[string]string) string {
	if len(d) == 0 {
		return ""
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := append(make([]byte, 0, 64), '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, d[k])
	}
	return string(append(b, '}'))
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string: cannot fail
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// AuditStore is what the audit part reads and writes: the chain, and a
// lock every replica respects (creating the seal key), and the database's
// identity (naming the anchor in the token).
type AuditStore interface {
	AuditQueries
	WithLock(ctx context.Context, name string, fn func() error) error
	// Identity names the database (the audit anchor's name: anchor.go).
	Identity(ctx context.Context) (string, error)
}

// Tx runs fn in one transaction whose reads and writes are Q: Store.InTx,
// narrowed to what one part of the service uses.
type Tx[Q any] func(ctx context.Context, fn func(q Q) error) error

// narrow gives a part transactions that show only its queries.
func narrow[Q any](s Store, view func(Queries) Q) Tx[Q] {
	return func(ctx context.Context, fn func(q Q) error) error {
		return s.InTx(ctx, func(q Queries) error { return fn(view(q)) })
	}
}

// Audit is the audit part: the hash chain, the group-commit writer, the
// seals and verify. The other parts are given it and record through it.
type Audit struct {
	base
	store AuditStore
	tx    Tx[AuditQueries]
	token hsm.Token // seals; nil where nothing is sealed (kmsd's access commands)
	// w group-commits audit records; nil when auditing is off.
	w      *auditor
	sealer sealer
	// export streams the chain to a sink (auditexport.go); nil: none.
	export AuditExport
}

func newAudit(b base, store Store, token hsm.Token, enabled bool, export AuditExport) *Audit {
	a := &Audit{base: b, store: store, token: token, export: export,
		tx: narrow(store, func(q Queries) AuditQueries { return q })}
	if enabled {
		a.w = newAuditor(store, b.log, b.dbTimeout)
		a.w.committed = a.committed
	}
	return a
}

// close writes every queued record, stops taking new ones and seals what
// the last requests appended.
func (a *Audit) close() {
	if a.w == nil {
		return
	}
	a.w.close()
	if a.token != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.SealAudit(ctx); err != nil {
			a.log.Warn("final audit seal", "err", err)
		}
	}
}

// commit runs fn in a transaction of tx that, when the request carries an
// activity and auditing is on, also appends the request's record: a
// management change and its audit record commit together or not at all.
// The record is appended last, so the chain's head is locked briefly.
func commit[Q AuditAppender](ctx context.Context, rec *Audit, tx Tx[Q], fn func(q Q) error) error {
	a := activityFrom(ctx)
	record := a != nil && rec.w != nil
	if record {
		// Before the transaction's own bound starts: the export's wait
		// (block policy) has its bound, and must not eat the transaction's.
		if err := rec.admit(ctx); err != nil {
			return err
		}
	}
	ctx, cancel := rec.dbCtx(ctx)
	defer cancel()
	err := tx(ctx, func(q Q) error {
		if err := fn(q); err != nil {
			return err
		}
		if !record {
			return nil
		}
		return rec.appendIn(ctx, q, a, rec.clock.Now())
	})
	if err == nil && record {
		a.recorded = true
		rec.committed(a.appended)
	}
	return err
}

// appendIn appends a's record inside the transaction of q, when auditing
// is on.
func (a *Audit) appendIn(ctx context.Context, q AuditAppender, act *Activity, at time.Time) error {
	if a.w == nil {
		return nil
	}
	ev := act.event(at, OutcomeAllowed, "")
	if err := q.AppendAudit(ctx, []*AuditEvent{ev}, HashAuditEvent); err != nil {
		return err
	}
	act.appended = ev // void if the transaction rolls back
	return nil
}

// system appends, inside a transaction, the record of a change the
// service made by itself (the worker).
func (a *Audit) system(ctx context.Context, q AuditAppender, act *Activity) error {
	return a.appendIn(ctx, q, act, a.clock.Now())
}

// AuditEnabled reports whether requests are audited.
func (a *Audit) AuditEnabled() bool { return a.w != nil }

// Record writes the audit record of a request that did not record itself
// in a transaction (reads, cryptographic operations, denials, failures),
// and returns once it is durable: the caller answers the request only then.
// Records are group-committed: many requests share one transaction.
func (a *Audit) Record(ctx context.Context, act *Activity, outcome, code string) error {
	if a.w == nil || act == nil || act.recorded {
		return nil
	}
	if err := a.admit(ctx); err != nil {
		return err
	}
	return a.w.append(ctx, act.event(a.clock.Now(), outcome, code))
}

// AuditQueueDepth is the number of records waiting for their group commit.
func (a *Audit) AuditQueueDepth() int {
	if a.w == nil {
		return 0
	}
	return int(a.w.depth.Load())
}

// auditor group-commits audit records: one goroutine takes every record
// queued while the previous batch was being written and appends them in one
// transaction, so that the cost of a commit is shared by all waiting
// requests.
type auditor struct {
	store AuditAppender
	log   interface{ Error(string, ...any) }
	queue chan *auditReq
	depth atomic.Int64
	// committed is handed each group commit's records (the export).
	committed func(events ...*AuditEvent)
	// timeout bounds one group commit (Config.DBTimeout); a request
	// waits for its record at most twice that: the commit ahead of its
	// own, and its own.
	timeout time.Duration

	mu      sync.Mutex
	closed  bool
	senders sync.WaitGroup // appends between the closed check and the send
	done    chan struct{}
}

type auditReq struct {
	ev   *AuditEvent
	done chan error
}

// maxAuditBatch bounds one group commit.
const maxAuditBatch = 512

// auditLinger is how long a group commit waits for more records when the
// last one had company; a lone request never waits.
var auditLinger = 500 * time.Microsecond

func newAuditor(store AuditAppender, log interface{ Error(string, ...any) }, timeout time.Duration) *auditor {
	a := &auditor{store: store, log: log, timeout: timeout, queue: make(chan *auditReq, 4*maxAuditBatch), done: make(chan struct{})}
	go a.run()
	return a
}

var errAuditClosed = errorf(ErrUnavailable, "the service is shutting down; retry on another replica")

func (a *auditor) append(ctx context.Context, ev *AuditEvent) error {
	r := &auditReq{ev: ev, done: make(chan error, 1)}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return errAuditClosed
	}
	a.depth.Add(1)
	a.senders.Add(1)
	a.mu.Unlock()
	// The wait is bounded whatever the database does: a hung one must
	// not hold the response (and the client) without end.
	deadline := time.NewTimer(2 * a.timeout)
	defer deadline.Stop()
	select {
	case a.queue <- r:
		a.senders.Done()
	case <-ctx.Done():
		a.senders.Done()
		a.depth.Add(-1)
		return errorf(ErrUnavailable, "the audit log did not accept the record in time; retry later")
	case <-deadline.C:
		a.senders.Done()
		a.depth.Add(-1)
		return errorf(ErrUnavailable, "the audit log did not accept the record in time; retry later")
	}
	// Once queued, the record will be written: wait for it even if the
	// client went away, so that the outcome is known; but not past the
	// deadline. A record whose request was answered 503 that way may
	// still be written later: the trail then shows an operation whose
	// answer the client never got, never the reverse.
	select {
	case err := <-r.done:
		return err
	case <-deadline.C:
		return errorf(ErrUnavailable, "the audit log did not confirm the record in time (database slow or unreachable); retry later")
	}
}

func (a *auditor) run() {
	defer close(a.done)
	batch := make([]*auditReq, 0, maxAuditBatch)
	last := 0
	for r := range a.queue {
		batch = append(batch[:0], r)
		if last > 1 {
			// Requests are arriving together: give the others a moment to
			// join this commit rather than each paying for their own.
			time.Sleep(auditLinger)
		}
	drain:
		for len(batch) < maxAuditBatch {
			select {
			case r, ok := <-a.queue:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		last = len(batch)
		a.write(batch)
	}
}

func (a *auditor) write(batch []*auditReq) {
	events := make([]*AuditEvent, len(batch))
	for i, r := range batch {
		events[i] = r.ev
	}
	hung, err := a.appendBatch(events)
	if err != nil && len(batch) > 1 && !hung {
		// Nothing of the batch was written (one transaction). One record the
		// store refuses must not cost the others theirs: write them one by
		// one, within one more deadline, so a store that is down costs two
		// deadlines, not one per record. A store that did not answer in
		// time is not asked again record by record: it hangs.
		ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
		written := events[:0] // events is this batch's own
		for _, r := range batch {
			err := a.appendIn(ctx, []*AuditEvent{r.ev})
			if err == nil {
				written = append(written, r.ev)
			}
			r.done <- err
		}
		cancel()
		a.notify(written)
	} else {
		if err == nil {
			a.notify(events)
		}
		for _, r := range batch {
			r.done <- err
		}
	}
	a.depth.Add(-int64(len(batch)))
}

// notify hands the export a group commit's records.
func (a *auditor) notify(events []*AuditEvent) {
	if a.committed != nil && len(events) > 0 {
		a.committed(events...)
	}
}

// appendBatch writes one group commit within the timeout; hung says the
// database did not answer in time.
func (a *auditor) appendBatch(events []*AuditEvent) (hung bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	err = a.appendIn(ctx, events)
	return err != nil && ctx.Err() != nil, err
}

// appendIn writes events in one transaction; a failure is logged and
// becomes the Unavailable error their requests are answered with.
func (a *auditor) appendIn(ctx context.Context, events []*AuditEvent) error {
	if err := a.store.AppendAudit(ctx, events, HashAuditEvent); err != nil {
		a.log.Error("audit: writing records failed; their requests are answered with an error", "records", len(events), "err", err)
		if ctx.Err() != nil {
			return errorf(ErrUnavailable, "the audit log could not be written in time (database slow or unreachable); retry later")
		}
		return errorf(ErrUnavailable, "the audit log could not be written; retry later")
	}
	return nil
}

// close stops taking records and waits until every queued one is written.
func (a *auditor) close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	a.mu.Unlock()
	// Senders that passed the closed check enqueue before the channel closes.
	a.senders.Wait()
	close(a.queue)
	<-a.done
}

// ListAudit returns one page of audit records matching f, oldest first.
func (a *Audit) ListAudit(ctx context.Context, f AuditFilter, nextToken string) ([]AuditEvent, string, error) {
	if err := allow(ctx, ActReadAudit, noResource); err != nil {
		return nil, "", err
	}
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return nil, "", err
	}
	after, err := decodePageToken(nextToken)
	if err != nil {
		return nil, "", err
	}
	if after != "" {
		n, err := strconv.ParseInt(after, 10, 64)
		if err != nil || n < 0 {
			return nil, "", Validationf("next_token is not a token this service issued")
		}
		f.AfterSeq = n
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return nil, "", Validationf("from must be before to")
	}
	if f.KeyID != "" {
		if _, err := parseKeyID(f.KeyID); err != nil {
			return nil, "", err
		}
	}
	f.Limit = limit + 1
	rows, err := a.store.ListAudit(ctx, f)
	if err != nil {
		return nil, "", a.storeErr(err)
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = encodePageToken(strconv.FormatInt(rows[limit-1].Seq, 10))
	}
	return rows, next, nil
}

// AuditVerification is the result of checking the chain.
type AuditVerification struct {
	Intact         bool
	RecordsChecked int64
	HeadSeq        int64
	FirstBrokenSeq int64  // 0 when intact
	Reason         string // "" when intact
	// SealedSeq is the last record covered by a seal that verified in the
	// token; records after it rely on the hash chain alone.
	SealedSeq int64
	Seals     int64 // seal records checked
}

// VerifyAudit walks the whole chain: every record must follow its
// predecessor (seq one more, prev_hash its hash), hash to its stored hash,
// and the last one must be the head. An edited, deleted, inserted or
// reordered record breaks it; the first broken record is named.
func (a *Audit) VerifyAudit(ctx context.Context) (*AuditVerification, error) {
	if err := allow(ctx, ActReadAudit, noResource); err != nil {
		return nil, err
	}
	return a.verifyAudit(ctx)
}

func (a *Audit) verifyAudit(ctx context.Context) (*AuditVerification, error) {
	a.sealer.mu.Lock()
	// The anchor, read again: another replica may have sealed since, and
	// it is what this process remembers when it has sealed nothing yet.
	if err := a.loadAnchor(ctx); err != nil {
		a.sealer.mu.Unlock()
		if errors.Is(err, errAnchorMalformed) {
			return &AuditVerification{FirstBrokenSeq: 1, Reason: err.Error()}, nil
		}
		return nil, err
	}
	a.sealer.anchored = true
	remembered := a.checkRemembered(ctx)
	rememberedSeq := a.sealer.lastSeq
	a.sealer.mu.Unlock()
	if remembered != nil && !errors.Is(remembered, errSealGone) {
		return nil, remembered
	}
	headSeq, headHash, err := a.store.AuditHead(ctx)
	if err != nil {
		return nil, a.storeErr(err)
	}
	out := &AuditVerification{HeadSeq: headSeq}
	broken := func(seq int64, format string, args ...any) (*AuditVerification, error) {
		out.FirstBrokenSeq, out.Reason = seq, fmt.Sprintf(format, args...)
		return out, nil
	}
	prevSeq, prevHash := int64(0), AuditGenesisHash
	// Hashes of the records since the last verified seal: the next seal
	// names one of them.
	hashes := map[int64]string{}
	hashAt := func(seq int64) (string, bool) { h, ok := hashes[seq]; return h, ok }
	lastSealRecord := int64(0)
	const page = 1000
	for {
		rows, err := a.store.ListAudit(ctx, AuditFilter{AfterSeq: prevSeq, Limit: page})
		if err != nil {
			return nil, a.storeErr(err)
		}
		for i := range rows {
			e := &rows[i]
			switch {
			case e.Seq != prevSeq+1:
				return broken(prevSeq+1, "record %d is missing (the next record is %d)", prevSeq+1, e.Seq)
			case e.PrevHash != prevHash:
				return broken(e.Seq, "record %d does not follow record %d (prev_hash differs)", e.Seq, prevSeq)
			case HashAuditEvent(e) != e.Hash:
				return broken(e.Seq, "record %d was altered (its hash does not match its contents)", e.Seq)
			}
			if e.Action == ActAuditSeal && e.Principal == "system" {
				seq, why, err := a.sealCheck(ctx, e, hashAt, lastSealRecord, out.SealedSeq)
				if err != nil {
					return nil, err
				}
				if why != "" {
					return broken(seq, "%s", why)
				}
				var d sealDetail
				_ = json.Unmarshal([]byte(e.Detail), &d)
				out.SealedSeq, lastSealRecord = d.SealedSeq, e.Seq
				out.Seals++
				for k := range hashes {
					if k < d.SealedSeq {
						delete(hashes, k)
					}
				}
			}
			hashes[e.Seq] = e.Hash
			prevSeq, prevHash = e.Seq, e.Hash
			out.RecordsChecked++
		}
		if len(rows) < page {
			break
		}
	}
	if remembered != nil {
		return broken(min(rememberedSeq, prevSeq+1), "%v", remembered)
	}
	if prevSeq != headSeq || prevHash != headHash {
		if prevSeq < headSeq {
			return broken(prevSeq+1, "records %d to %d are missing (the chain head is %d)", prevSeq+1, headSeq, headSeq)
		}
		return broken(prevSeq, "record %d is not the chain head recorded by the service (head %d)", prevSeq, headSeq)
	}
	out.Intact = true
	return out, nil
}
