// Package auditexport streams kmsd's audit chain, once durable, to a sink
// outside the database: a file (reopened on SIGHUP), standard output or
// syslog, one JSON line per record with its hash and predecessor's hash,
// so that a SIEM can follow the trail and check it (docs/operations.md,
// "Audit export").
//
// The database is the queue. The exporter follows the chain in seq order
// after records committed: the service hands over the records it
// committed (Committed), and whatever is not among them (the seals,
// another replica's records, records that found the hand-over full) is
// read from the store, so a record that was rolled back is never
// exported, one written by another replica is, and a restart resumes
// after the last record exported (a state file). The service asks before
// each append whether the export has room (Admit): with the block policy,
// a sink that does not take records stops requests once Queue records
// wait; with drop, they go on and the export skips records.
package auditexport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/wire"
)

// Policy is what happens when the sink does not take records.
type Policy string

const (
	// Block: once Queue records wait, requests that need an audit record
	// wait for room, and are answered 503 after Config.Wait: no more than
	// Queue records are ever durable but not exported. The sink's write
	// is retried until it succeeds.
	Block Policy = "block"
	// Drop: requests never wait; a record the sink refuses, or that finds
	// the queue full, is left out of the export (it stays in the database
	// and GET /v1/audit), counted and warned about.
	Drop Policy = "drop"
)

// DefaultPolicy is drop: the database's chain is the trail of record, and
// it is written fail-closed for every request whatever the export does;
// the export is a copy whose gaps are counted, warned about and refilled
// from GET /v1/audit, and a SIEM forwarder's full disk must not stop every
// application's encryption. Choose block where the export itself is the
// trail of record.
const DefaultPolicy = Drop

// ParsePolicy reads a KMS_AUDIT_SINK_FAILURE value.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case Block, Drop:
		return p, nil
	}
	return "", fmt.Errorf("%q is not block or drop", s)
}

// Source is the chain the exporter reads (*store.DB).
type Source interface {
	ListAudit(ctx context.Context, f service.AuditFilter) ([]service.AuditEvent, error)
	AuditHead(ctx context.Context) (seq int64, hash string, err error)
}

// Config of an Exporter; zero durations and sizes take the defaults.
type Config struct {
	Sink   Sink
	Source Source
	Policy Policy
	// Queue bounds the records durable but not yet written to the sink
	// (DefaultQueue).
	Queue int
	// StateFile remembers the last record exported, so that a restart
	// resumes after it; "" starts each time after the chain's head.
	StateFile string
	// Wait bounds how long Admit waits for room (block), and one read of
	// the chain (default twice service.DefaultDBTimeout).
	Wait time.Duration
	// Poll is how often the chain is read when nothing was said to have
	// committed (other replicas, the service's seals): DefaultPoll.
	Poll   time.Duration
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultQueue = 10000
	DefaultPoll  = time.Second
	// readPage bounds one read of the chain.
	readPage = 512
	// warnEvery bounds the warnings of drops and write errors.
	warnEvery = time.Minute
	// saveEvery is how often the state is saved while records flow.
	saveEvery = time.Second
)

// Stats are the exporter's counters (metrics).
type Stats struct {
	// Queued is the records read from the chain, waiting for the sink.
	Queued int
	// Lag is the records durable but not yet written: the queued ones,
	// those not read yet, and those dropped after the last one written.
	Lag int64
	// Dropped counts records left out of the export (drop policy).
	Dropped int64
	// WriteErrors counts failed writes to the sink.
	WriteErrors int64
	// LastSeq is the last record written.
	LastSeq int64
}

// Exporter tails the chain into the sink; safe for concurrent use.
type Exporter struct {
	cfg   Config
	log   *slog.Logger
	lines chan line

	head    atomic.Int64 // the newest durable record known
	done    atomic.Int64 // the last record written or dropped
	readSeq atomic.Int64 // the last record the reader queued or skipped

	// recent holds records this process committed, as Committed handed
	// them over, until the reader takes them: at most Queue of them, so
	// that the common case reads nothing back from the database.
	recentMu sync.Mutex
	recent   map[int64]*service.AuditEvent
	dropped  atomic.Int64
	errs     atomic.Int64

	wake    chan struct{}
	stop    chan struct{} // closed by Close: read to the head, then end
	abandon chan struct{} // closed when Close gives up on the sink
	readEnd chan struct{}
	wrEnd   chan struct{}

	mu      sync.Mutex
	room    chan struct{} // closed when done moves, for Admit's waiters
	waiters atomic.Int32

	warnMu   sync.Mutex
	lastWarn time.Time
	closed   sync.Once
}

type line struct {
	seq  int64
	text []byte
}

// Start opens the export: it resumes after the state file's record, or
// starts after the chain's head, and starts reading and writing.
func Start(ctx context.Context, cfg Config) (*Exporter, error) {
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 2 * service.DefaultDBTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Exporter{cfg: cfg, log: cfg.Logger, lines: make(chan line, cfg.Queue), recent: map[int64]*service.AuditEvent{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), abandon: make(chan struct{}), readEnd: make(chan struct{}), wrEnd: make(chan struct{})}
	head, _, err := cfg.Source.AuditHead(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit-sink: reading the chain's head: %w", err)
	}
	from, found, err := loadState(cfg.StateFile)
	if err != nil {
		return nil, err
	}
	switch {
	case !found:
		from = head
		e.log.Info("audit export starts after the chain's head; earlier records are in GET /v1/audit", "sink", cfg.Sink.String(), "after_seq", head)
	case from > head:
		e.log.Warn("audit export: the chain's head is behind the last record exported (the database restored from an older backup?); "+
			"the export goes on from the head, so seqs after it are exported again with other records", "sink", cfg.Sink.String(), "exported_seq", from, "head_seq", head)
		from = head
	default:
		e.log.Info("audit export resumes", "sink", cfg.Sink.String(), "after_seq", from, "head_seq", head)
	}
	if !found && cfg.StateFile != "" {
		// Now, not at the first save: a crash before it must not make the
		// next start begin after a later head, skipping what was between.
		if err := writeState(cfg.StateFile, from); err != nil {
			return nil, fmt.Errorf("audit-sink-state: %v", err)
		}
	}
	e.head.Store(head)
	e.done.Store(from)
	e.readSeq.Store(from)
	go e.read(from)
	go e.write()
	return e, nil
}

// Committed hands over records this process committed, in seq order:
// they are durable, with their final seq and hashes, and nobody changes
// them any more. Only records whose transaction committed may be given.
func (e *Exporter) Committed(events []*service.AuditEvent) {
	if len(events) == 0 {
		return
	}
	read := e.readSeq.Load()
	e.recentMu.Lock()
	for _, ev := range events {
		if ev != nil && ev.Seq > read && len(e.recent) < e.cfg.Queue {
			e.recent[ev.Seq] = ev
		}
	}
	e.recentMu.Unlock()
	if last := events[len(events)-1]; last != nil {
		e.noteHead(last.Seq)
	}
}

// noteHead says the chain is durable up to seq, and wakes the reader.
func (e *Exporter) noteHead(seq int64) {
	for {
		h := e.head.Load()
		if seq <= h || e.head.CompareAndSwap(h, seq) {
			break
		}
	}
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// ErrFull is Admit's answer when the export stayed full (block policy).
var ErrFull = errors.New("the audit export's queue is full: its sink does not take records")

// Admit returns nil once one more record may be appended: at once with
// the drop policy, or while fewer than Queue records wait; otherwise it
// waits for room until ctx ends or Wait passes, then returns ErrFull.
func (e *Exporter) Admit(ctx context.Context) error {
	if e.cfg.Policy != Block || e.depth() < int64(e.cfg.Queue) {
		return nil
	}
	e.waiters.Add(1)
	defer e.waiters.Add(-1)
	t := time.NewTimer(e.cfg.Wait)
	defer t.Stop()
	for e.depth() >= int64(e.cfg.Queue) {
		e.mu.Lock()
		if e.room == nil {
			e.room = make(chan struct{})
		}
		room := e.room
		e.mu.Unlock()
		if e.depth() < int64(e.cfg.Queue) {
			break // done moved before the channel was there
		}
		select {
		case <-room:
		case <-ctx.Done():
			return ErrFull
		case <-t.C:
			return ErrFull
		}
	}
	return nil
}

func (e *Exporter) depth() int64 { return max(0, e.head.Load()-e.done.Load()) }

// Stats returns the counters.
func (e *Exporter) Stats() Stats {
	return Stats{Queued: len(e.lines), Lag: e.depth(), Dropped: e.dropped.Load(), WriteErrors: e.errs.Load(), LastSeq: e.done.Load()}
}

// Reopen reopens the sink (SIGHUP).
func (e *Exporter) Reopen() error {
	if err := e.cfg.Sink.Reopen(); err != nil {
		e.log.Error("audit export: the sink was not reopened; records go on to the old file", "sink", e.cfg.Sink.String(), "err", err)
		return err
	}
	e.log.Info("audit export: sink reopened", "sink", e.cfg.Sink.String())
	return nil
}

// Close exports what is durable (the service closed first: its last
// records and seal are in), within timeout, saves the state and closes
// the sink.
func (e *Exporter) Close(timeout time.Duration) {
	e.closed.Do(func() {
		close(e.stop)
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-e.wrEnd:
		case <-t.C:
			close(e.abandon)
			e.log.Error("audit export: the sink did not take the last records in time; they are in the database, and the next start exports them",
				"sink", e.cfg.Sink.String(), "exported_seq", e.done.Load(), "head_seq", e.head.Load())
			return // the writer may be stuck in a write: the sink is left to the exit
		}
		if err := e.cfg.Sink.Close(); err != nil {
			e.log.Warn("audit export: closing the sink", "sink", e.cfg.Sink.String(), "err", err)
		}
	})
}

// read follows the chain after seq into lines: the records handed over
// while they come in order, the store for the others, and the store once
// every Poll (the seals, other replicas).
func (e *Exporter) read(after int64) {
	defer close(e.readEnd)
	defer close(e.lines)
	tick := time.NewTicker(e.cfg.Poll)
	defer tick.Stop()
	stopping, polled := false, true
	for {
		if !e.pushRecent(&after) {
			return
		}
		if polled || stopping || e.head.Load() > after {
			rows, err := e.page(after)
			if err != nil {
				if stopping {
					return
				}
				e.warn("audit export: reading the chain failed; retried", after+1, "err", err)
			}
			from := after
			for i := range rows {
				r := &rows[i]
				if !e.push(r) {
					return
				}
				after = r.Seq
				e.readSeq.Store(after)
			}
			e.forget(from, after)
			if after > e.head.Load() {
				e.noteHead(after) // written by another replica or the seals
			}
			if len(rows) == readPage {
				continue
			}
			if stopping {
				return // the chain was read to its head after the service closed
			}
		}
		polled = false
		select {
		case <-e.wake:
		case <-tick.C:
			polled = true
			e.forget(0, after) // records handed over after they were read
		case <-e.stop:
			stopping = true
		}
	}
}

// pushRecent queues the handed-over records that follow after, in order;
// false when the exporter is closing (push).
func (e *Exporter) pushRecent(after *int64) bool {
	for {
		e.recentMu.Lock()
		ev, ok := e.recent[*after+1]
		delete(e.recent, *after+1)
		e.recentMu.Unlock()
		if !ok {
			return true
		}
		if !e.push(ev) {
			return false
		}
		*after = ev.Seq
		e.readSeq.Store(*after)
	}
}

// forget drops handed-over records in (from, to]: the store's copies
// were queued instead. from 0 looks at every one.
func (e *Exporter) forget(from, to int64) {
	e.recentMu.Lock()
	defer e.recentMu.Unlock()
	if from == 0 || to-from > int64(len(e.recent)) {
		for seq := range e.recent {
			if seq <= to {
				delete(e.recent, seq)
			}
		}
		return
	}
	for seq := from + 1; seq <= to; seq++ {
		delete(e.recent, seq)
	}
}

func (e *Exporter) page(after int64) ([]service.AuditEvent, error) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.Wait)
	defer cancel()
	return e.cfg.Source.ListAudit(ctx, service.AuditFilter{AfterSeq: after, Limit: readPage})
}

// push queues r's line; with drop, a full queue drops it. It returns false
// when the exporter is closing and the queue stays full (block).
func (e *Exporter) push(r *service.AuditEvent) bool {
	l := line{seq: r.Seq, text: Line(r)}
	if e.cfg.Policy == Drop {
		select {
		case e.lines <- l:
		default:
			// done stays before it: a restart exports it again, if the
			// sink takes it then.
			e.dropped.Add(1)
			e.warn("audit export: the queue is full; records are left out of the export (they stay in the database and GET /v1/audit)", r.Seq)
		}
		return true
	}
	select {
	case e.lines <- l:
		return true
	case <-e.wrEnd:
		return false
	}
}

// advance moves done to seq, if later, and wakes Admit's waiters.
func (e *Exporter) advance(seq int64) {
	for {
		d := e.done.Load()
		if seq <= d || e.done.CompareAndSwap(d, seq) {
			break
		}
	}
	if e.waiters.Load() > 0 {
		e.mu.Lock()
		if e.room != nil {
			close(e.room)
			e.room = nil
		}
		e.mu.Unlock()
	}
}

// write writes queued lines to the sink, a few at a time, and saves the
// state about once a second.
func (e *Exporter) write() {
	defer close(e.wrEnd)
	saved := time.Now() // Start wrote it, or found it
	savedSeq := e.done.Load()
	save := func(force bool) {
		if d := e.done.Load(); d != savedSeq && (force || time.Since(saved) >= saveEvery) {
			if err := e.saveState(d); err != nil {
				e.warn("audit export: the state file was not saved; a restart may export records again", d, "err", err)
				return
			}
			saved, savedSeq = time.Now(), d
		}
	}
	defer save(true)
	tick := time.NewTicker(saveEvery)
	defer tick.Stop()
	batch := make([]line, 0, 64)
	for {
		var l line
		var ok bool
		select {
		case l, ok = <-e.lines:
			if !ok {
				return
			}
		case <-tick.C:
			save(false)
			continue
		}
		batch = append(batch[:0], l)
	more:
		for len(batch) < cap(batch) {
			select {
			case l, ok := <-e.lines:
				if !ok {
					break more
				}
				batch = append(batch, l)
			default:
				break more
			}
		}
		if !e.writeBatch(batch) {
			return
		}
		save(false)
	}
}

// writeBatch writes the lines of batch, in order, under the policy; false
// when Close gave up on a sink that does not take them.
func (e *Exporter) writeBatch(batch []line) bool {
	texts := make([][]byte, 0, len(batch))
	seqs := make([]int64, 0, len(batch))
	flush := func() bool {
		for len(texts) > 0 {
			n, err := e.cfg.Sink.Write(texts)
			if n > 0 {
				e.advance(seqs[n-1])
			}
			if err == nil {
				break
			}
			e.errs.Add(1)
			texts, seqs = texts[n:], seqs[n:]
			if e.cfg.Policy == Drop {
				// Not advanced past: the state keeps the last record written,
				// so the next start exports these again.
				e.dropped.Add(int64(len(texts)))
				e.warn("audit export: the sink refused records; they are left out of the export (they stay in the database and GET /v1/audit)", seqs[0], "err", err)
				break
			}
			e.warn("audit export: the sink refused records; requests stop once the queue is full, until it takes them", seqs[0], "err", err)
			if !e.pause() {
				return false
			}
		}
		return true
	}
	for _, l := range batch {
		texts, seqs = append(texts, l.text), append(seqs, l.seq)
	}
	return flush()
}

// pause waits before the next attempt at a write (block); false when the
// exporter closes meanwhile.
func (e *Exporter) pause() bool {
	t := time.NewTimer(200 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-e.abandon:
		return false
	}
}

// warn logs at most once per warnEvery.
func (e *Exporter) warn(msg string, seq int64, args ...any) {
	e.warnMu.Lock()
	due := time.Since(e.lastWarn) >= warnEvery
	if due {
		e.lastWarn = time.Now()
	}
	e.warnMu.Unlock()
	if due {
		e.log.Warn(msg, append([]any{"sink", e.cfg.Sink.String(), "seq", seq, "dropped_total", e.dropped.Load(), "write_errors_total", e.errs.Load()}, args...)...)
	}
}

// Record is an audit record as GET /v1/audit lists it and the export
// writes it: one conversion for both, so the two cannot differ.
func Record(r *service.AuditEvent) wire.AuditRecord {
	return wire.AuditRecord{Seq: r.Seq, Time: r.At.UTC(), RequestID: r.RequestID, Principal: r.Principal,
		Credential: r.Credential, Action: r.Action, KeyID: r.KeyID, KeyVersion: r.KeyVersion, Outcome: r.Outcome,
		ErrorCode: r.ErrorCode, Source: r.Source, Detail: r.Detail, PrevHash: r.PrevHash, Hash: r.Hash}
}

// Line is a record as exported: Record's JSON object, and a newline.
func Line(r *service.AuditEvent) []byte {
	b, _ := json.Marshal(Record(r))
	return append(b, '\n')
}
