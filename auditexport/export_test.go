package auditexport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/auditexport"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/store"
)

func event(i int) *service.AuditEvent {
	return &service.AuditEvent{At: time.Now(), RequestID: fmt.Sprintf("req-%d", i), Principal: "app",
		Credential: "token:0123456789abcdef", Action: service.ActEncrypt, Outcome: service.OutcomeAllowed,
		Source: "127.0.0.1", Detail: "{}"}
}

// appendOne appends one record and returns it, as the service hands it
// over.
func appendOne(t *testing.T, db *store.DB, i int) []*service.AuditEvent {
	t.Helper()
	e := event(i)
	if err := db.AppendAudit(context.Background(), []*service.AuditEvent{e}, service.HashAuditEvent); err != nil {
		t.Error(err)
		return nil
	}
	return []*service.AuditEvent{e}
}

func fileSink(t *testing.T, path string) auditexport.Sink {
	t.Helper()
	sp, err := auditexport.ParseSpec("file:" + path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sp.Open()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wantExport wants text to be the lines of the chain's records from..to,
// exactly as the store holds them.
func wantExport(t *testing.T, db *store.DB, text []byte, from, to int64) {
	t.Helper()
	rows, err := db.ListAudit(context.Background(), service.AuditFilter{AfterSeq: from - 1, Limit: int(to - from + 1)})
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for i := range rows {
		want.Write(auditexport.Line(&rows[i]))
	}
	if int64(len(rows)) != to-from+1 || !bytes.Equal(text, want.Bytes()) {
		t.Fatalf("export of %d..%d:\n%s\nwant:\n%s", from, to, text, want.Bytes())
	}
}

// Records appended concurrently, said to have committed or not (the
// seals, other replicas), and one rolled back reach the file once each,
// in seq order, as the store holds them; the rolled-back one never. A
// restart resumes after the state's record, with what was appended while
// the exporter was down.
func TestExportFollowsTheChain(t *testing.T) {
	db := kmstest.Store(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	state := path + ".state"
	start := func() *auditexport.Exporter {
		ex, err := auditexport.Start(context.Background(), auditexport.Config{Sink: fileSink(t, path), Source: db,
			Policy: auditexport.Drop, StateFile: state, Poll: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return ex
	}
	ex := start()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				recs := appendOne(t, db, g*100+i)
				if i%3 != 0 { // the others are found by the poll
					ex.Committed(recs)
				}
			}
		}()
	}
	// A transaction that appends and rolls back: its seq is taken by the
	// next record, and the poll never sees it.
	rolledBack := errors.New("roll back")
	err := db.InTx(context.Background(), func(q service.Queries) error {
		e := event(-1)
		e.RequestID = "rolled-back"
		if err := q.AppendAudit(context.Background(), []*service.AuditEvent{e}, service.HashAuditEvent); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond) // a poll or two while it is there, uncommitted
		return rolledBack
	})
	if !errors.Is(err, rolledBack) {
		t.Fatal(err)
	}
	wg.Wait()
	ex.Close(10 * time.Second)
	text, _ := os.ReadFile(path)
	wantExport(t, db, text, 1, 320)
	if bytes.Contains(text, []byte("rolled-back")) {
		t.Error("a rolled-back record was exported")
	}
	if b, _ := os.ReadFile(state); strings.TrimSpace(string(b)) != "320" {
		t.Errorf("state %q, want 320", b)
	}
	if st := ex.Stats(); st.LastSeq != 320 || st.Lag != 0 || st.Dropped != 0 || st.WriteErrors != 0 {
		t.Errorf("stats %+v", st)
	}

	// Down, records are appended; the next start exports them after 320.
	for i := 0; i < 5; i++ {
		appendOne(t, db, 1000+i)
	}
	ex = start()
	appendOne(t, db, 2000)
	waitUntil(t, func() bool { return ex.Stats().LastSeq == 326 })
	ex.Close(10 * time.Second)
	text, _ = os.ReadFile(path)
	wantExport(t, db, text, 1, 326)
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("not within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// With block, Admit refuses once Queue records wait on a sink that takes
// none (a FIFO nobody reads), and lets requests on once it takes them;
// nothing is lost.
func TestAdmitBlocksAtTheQueueBound(t *testing.T) {
	db := kmstest.Store(t)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ex, err := auditexport.Start(context.Background(), auditexport.Config{Sink: fileSink(t, fifo), Source: db,
		Policy: auditexport.Block, Queue: 4, Wait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n := 0
	for ; n < 100000; n++ {
		if err := ex.Admit(ctx); err != nil {
			if !errors.Is(err, auditexport.ErrFull) {
				t.Fatal(err)
			}
			break
		}
		ex.Committed(appendOne(t, db, n))
	}
	if st := ex.Stats(); n == 100000 || st.Lag < 4 {
		t.Fatalf("after %d records Admit still admits: %+v", n, st)
	}
	// A caller that gives up is refused too.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := ex.Admit(cctx); !errors.Is(err, auditexport.ErrFull) {
		t.Errorf("Admit with a cancelled context: %v", err)
	}

	var mu sync.Mutex
	var out bytes.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := r.Read(buf)
			mu.Lock()
			out.Write(buf[:max(k, 0)])
			mu.Unlock()
			if err != nil && !errors.Is(err, syscall.EAGAIN) {
				if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
					t.Error(err)
				}
				return
			}
			if k <= 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	// Each Admit waits 100 ms at most; once the reader has made room one
	// succeeds (a loaded machine may take more than one such wait).
	waitUntil(t, func() bool { return ex.Admit(ctx) == nil })
	ex.Committed(appendOne(t, db, n))
	ex.Close(10 * time.Second)
	waitUntil(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return bytes.Count(out.Bytes(), []byte("\n")) == n+1
	})
	mu.Lock()
	defer mu.Unlock()
	wantExport(t, db, out.Bytes(), 1, int64(n+1))
}

// A bad state file is refused with a clear error, before anything starts.
func TestStateFileMustHoldASeq(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(path, []byte("12x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := auditexport.CheckState(path); err == nil || !strings.Contains(err.Error(), "does not hold a record number") {
		t.Errorf("CheckState: %v", err)
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(7)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := auditexport.CheckState(path); err != nil {
		t.Errorf("CheckState of a good file: %v", err)
	}
}

// Without a state file the export starts after the chain's head; a state
// of 0 exports the whole chain from its first record, one ahead of the
// head goes on from the head.
func TestExportStartsAtTheHeadOrFromTheState(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state string // "": no file
		from  int64
	}{
		{"no state file", "", 4},
		{"state 0", "0\n", 1},
		{"state 2", "2\n", 3},
		// Ahead of the head (3 records): a database restored from an older
		// backup; the export goes on from the head.
		{"state ahead of the head", "9\n", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := kmstest.Store(t)
			for i := 0; i < 3; i++ {
				appendOne(t, db, i)
			}
			path := filepath.Join(t.TempDir(), "audit.log")
			if tc.state != "" {
				if err := os.WriteFile(path+".state", []byte(tc.state), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ex, err := auditexport.Start(context.Background(), auditexport.Config{Sink: fileSink(t, path), Source: db,
				Policy: auditexport.Drop, StateFile: path + ".state", Poll: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ex.Committed(appendOne(t, db, 3))
			waitUntil(t, func() bool { return ex.Stats().LastSeq == 4 })
			ex.Close(10 * time.Second)
			text, _ := os.ReadFile(path)
			wantExport(t, db, text, tc.from, 4)
		})
	}
}

// Records the sink refuses under drop are left out of this run's export,
// but the state keeps the last record written, so the next start exports
// them again: nothing is lost for good while the database holds it.
func TestRefusedRecordsAreExportedByTheNextStart(t *testing.T) {
	db := kmstest.Store(t)
	for i := 0; i < 3; i++ {
		appendOne(t, db, i)
	}
	state := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(state, []byte("0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ex, err := auditexport.Start(context.Background(), auditexport.Config{Sink: fileSink(t, "/dev/full"), Source: db,
		Policy: auditexport.Drop, StateFile: state, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ex.Committed(appendOne(t, db, 3))
	waitUntil(t, func() bool { return ex.Stats().Dropped == 4 })
	if st := ex.Stats(); st.LastSeq != 0 || st.Lag != 4 || st.WriteErrors == 0 {
		t.Errorf("after the sink refused every record: %+v, want last seq 0, lag 4 and write errors", st)
	}
	ex.Close(10 * time.Second)
	if b, _ := os.ReadFile(state); strings.TrimSpace(string(b)) != "0" {
		t.Fatalf("state after refused records: %q, want 0 (the last record written)", b)
	}

	path := filepath.Join(t.TempDir(), "audit.log")
	ex, err = auditexport.Start(context.Background(), auditexport.Config{Sink: fileSink(t, path), Source: db,
		Policy: auditexport.Drop, StateFile: state, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return ex.Stats().LastSeq == 4 })
	ex.Close(10 * time.Second)
	text, _ := os.ReadFile(path)
	wantExport(t, db, text, 1, 4)
}
