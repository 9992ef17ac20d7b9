// Package logbuf batches log lines into few writes: under load kmsd writes
// one request line per request, and a write system call per line costs
// more than encoding it. Lines are held at most MaxDelay (a background
// flush), a warning or an error goes out at once with what is before it,
// and Close writes what is left, so that no line is lost at shutdown.
package logbuf

import (
	"bytes"
	"io"
	"sync"
	"time"
)

// Defaults for New.
const (
	DefaultMaxDelay = 50 * time.Millisecond
	DefaultSize     = 64 << 10
)

// Writer is an io.Writer for whole lines (slog handlers write one record
// per call). It is safe for concurrent use.
type Writer struct {
	under    io.Writer
	size     int
	maxDelay time.Duration

	mu     sync.Mutex
	buf    []byte
	timer  *time.Timer // pending background flush; nil when none
	closed bool
	err    error // the last write error of a background flush
}

// New returns a Writer over w that holds lines at most maxDelay and writes
// through once size bytes are waiting (zero values take the defaults).
func New(w io.Writer, maxDelay time.Duration, size int) *Writer {
	if maxDelay <= 0 {
		maxDelay = DefaultMaxDelay
	}
	if size <= 0 {
		size = DefaultSize
	}
	return &Writer{under: w, size: size, maxDelay: maxDelay, buf: make([]byte, 0, size)}
}

// Write takes one or more whole lines. A line of level WARN or ERROR (slog's
// JSON and text forms) is written through at once, with everything before it.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.under.Write(p)
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) >= w.size || urgent(p) {
		return len(p), w.flushLocked()
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(w.maxDelay, w.background)
	}
	return len(p), nil
}

// urgent reports whether a line is a warning or an error.
func urgent(p []byte) bool {
	head := p[:min(len(p), 96)]
	return bytes.Contains(head, []byte(`"level":"WARN`)) || bytes.Contains(head, []byte(`"level":"ERROR`)) ||
		bytes.Contains(head, []byte(" level=WARN")) || bytes.Contains(head, []byte(" level=ERROR"))
}

func (w *Writer) background() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer = nil
	if err := w.flushLocked(); err != nil {
		w.err = err
	}
}

// Flush writes what is waiting.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

func (w *Writer) flushLocked() error {
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.under.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Close writes what is waiting; later lines are written through unbuffered.
// It returns the first error of the final flush or of an earlier
// background one.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.flushLocked()
	w.closed = true
	if err == nil {
		err = w.err
	}
	return err
}
