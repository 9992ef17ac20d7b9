package logbuf

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// lines is an io.Writer that records each write.
type lines struct {
	mu     sync.Mutex
	writes []string
	fail   error
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return 0, l.fail
	}
	l.writes = append(l.writes, string(p))
	return len(p), nil
}

func (l *lines) all() (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.writes, ""), len(l.writes)
}

// Many lines become few writes, in order, none lost at Close.
func TestBatchesAndCloses(t *testing.T) {
	var out lines
	w := New(&out, time.Hour, 1<<10) // only size and Close flush
	var want bytes.Buffer
	ref := slog.New(slog.NewJSONHandler(&want, &slog.HandlerOptions{ReplaceAttr: dropTime}))
	log := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: dropTime}))
	for i := range 500 {
		log.Info("request", "n", i)
		ref.Info("request", "n", i)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, writes := out.all()
	if got != want.String() {
		t.Fatalf("lines differ from unbuffered ones:\n%.300s\nwant\n%.300s", got, want.String())
	}
	if writes >= 100 {
		t.Errorf("%d writes for 500 lines, want few", writes)
	}
	// After Close, lines go straight through.
	log.Info("late")
	if got, _ := out.all(); !strings.Contains(got, `"msg":"late"`) {
		t.Error("a line after Close was not written")
	}
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// A warning or an error is written at once with the lines before it.
func TestUrgentLinesGoAtOnce(t *testing.T) {
	for _, h := range []func(*Writer) slog.Handler{
		func(w *Writer) slog.Handler { return slog.NewJSONHandler(w, nil) },
		func(w *Writer) slog.Handler { return slog.NewTextHandler(w, nil) },
	} {
		for _, level := range []slog.Level{slog.LevelWarn, slog.LevelError} {
			var out lines
			w := New(&out, time.Hour, 1<<20)
			log := slog.New(h(w))
			log.Info("before")
			if got, _ := out.all(); got != "" {
				t.Fatalf("an info line was written at once: %q", got)
			}
			log.Log(t.Context(), level, "bad news")
			got, writes := out.all()
			if writes != 1 || !strings.Contains(got, "before") || !strings.Contains(got, "bad news") {
				t.Errorf("%v: %d writes %q, want one with both lines", level, writes, got)
			}
		}
	}
}

// A held line is written by the background flush without further writes.
func TestBackgroundFlush(t *testing.T) {
	var out lines
	w := New(&out, time.Millisecond, 1<<20)
	fmt.Fprintln(w, `{"level":"INFO","msg":"held"}`)
	deadline := time.Now().Add(30 * time.Second) // a generous bound: we wait for the condition
	for {
		if got, _ := out.all(); strings.Contains(got, "held") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the held line was never flushed")
		}
		time.Sleep(time.Millisecond)
	}
}

// A failing writer's error is reported by Flush and by Close.
func TestErrors(t *testing.T) {
	bad := errors.New("disk full")
	out := &lines{fail: bad}
	w := New(out, time.Hour, 1<<20)
	fmt.Fprintln(w, "x")
	if err := w.Flush(); !errors.Is(err, bad) {
		t.Errorf("Flush = %v, want %v", err, bad)
	}
	fmt.Fprintln(w, "y")
	if err := w.Close(); !errors.Is(err, bad) {
		t.Errorf("Close = %v, want %v", err, bad)
	}
}

// Concurrent writers lose no line and never interleave inside one.
func TestConcurrent(t *testing.T) {
	var out lines
	w := New(&out, 100*time.Microsecond, 512)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				fmt.Fprintf(w, "g%d-%d\n", g, i)
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := out.all()
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		seen[l] = true
	}
	for g := range 8 {
		for i := range 200 {
			if !seen[fmt.Sprintf("g%d-%d", g, i)] {
				t.Fatalf("line g%d-%d lost or torn", g, i)
			}
		}
	}
	if len(seen) != 1600 {
		t.Errorf("%d distinct lines, want 1600", len(seen))
	}
}
