package auditexport

import (
	"errors"
	"fmt"
	"log/syslog"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
)

// Sink is where exported records go, one JSON line each.
type Sink interface {
	// Write writes lines (each ends with '\n') in order and returns how
	// many of them were written whole; an error names why the rest were
	// not.
	Write(lines [][]byte) (int, error)
	// Reopen opens the sink again (the file sink after logrotate moved
	// its file); the others do nothing.
	Reopen() error
	Close() error
	// String names the sink in logs.
	String() string
}

// Spec is a parsed KMS_AUDIT_SINK value:
//
//	file:/path                   JSON lines appended to a file (mode 0600)
//	stdout                       JSON lines on kmsd's standard output
//	syslog                       the local syslog daemon (/dev/log)
//	syslog:unix:///dev/log       a syslog socket (also unixgram://)
//	syslog:udp://host:514        a syslog server (also tcp://)
type Spec struct {
	raw string
	// kind is file, stdout or syslog; path the file; network and addr
	// the syslog server ("" and "": the local daemon).
	kind, path, network, addr string
}

// ParseSpec reads a KMS_AUDIT_SINK value without opening anything.
func ParseSpec(spec string) (Spec, error) {
	sp := Spec{raw: spec}
	switch {
	case spec == "stdout":
		sp.kind = "stdout"
	case strings.HasPrefix(spec, "file:"):
		sp.kind, sp.path = "file", strings.TrimPrefix(spec, "file:")
		if !strings.HasPrefix(sp.path, "/") {
			return Spec{}, fmt.Errorf("%q: the file must be an absolute path (file:/var/log/hsmkms/audit.log)", spec)
		}
	case spec == "syslog":
		sp.kind = "syslog"
	case strings.HasPrefix(spec, "syslog:"):
		sp.kind = "syslog"
		u, err := url.Parse(strings.TrimPrefix(spec, "syslog:"))
		if err != nil {
			return Spec{}, fmt.Errorf("%q: not syslog:unix:///path or syslog:udp://host:port", spec)
		}
		sp.network, sp.addr = u.Scheme, u.Host
		switch u.Scheme {
		case "unix", "unixgram":
			sp.addr = u.Path
		case "udp", "tcp":
		default:
			return Spec{}, fmt.Errorf("%q: the syslog transport must be unix, unixgram, udp or tcp", spec)
		}
		if sp.addr == "" {
			return Spec{}, fmt.Errorf("%q: no address", spec)
		}
	default:
		return Spec{}, fmt.Errorf("%q is not file:/path, stdout, syslog or syslog:<unix|unixgram|udp|tcp>://address", spec)
	}
	return sp, nil
}

// Kind is file, stdout or syslog.
func (sp Spec) Kind() string { return sp.kind }

// DefaultState is the state file of a sink without one set: next to a
// file sink ("<path>.state"); none for the others.
func (sp Spec) DefaultState() string {
	if sp.kind == "file" {
		return sp.path + ".state"
	}
	return ""
}

// Open opens the sink. The file is opened at once, so that a path kmsd
// cannot write stops it before it serves.
func (sp Spec) Open() (Sink, error) {
	switch sp.kind {
	case "stdout":
		return &writerSink{f: os.Stdout, name: "stdout"}, nil
	case "file":
		return openFile(sp.path)
	case "syslog":
		var w *syslog.Writer
		var err error
		if sp.network == "" {
			w, err = syslog.New(syslogPriority, syslogTag)
		} else {
			w, err = syslog.Dial(sp.network, sp.addr, syslogPriority, syslogTag)
		}
		if err != nil {
			return nil, fmt.Errorf("%q: cannot reach syslog: %v", sp.raw, err)
		}
		return &syslogSink{w: w, name: sp.raw}, nil
	}
	return nil, fmt.Errorf("%q: no sink", sp.raw)
}

// Syslog messages are audit records: facility auth, tag hsmkms (as Vault's
// syslog audit device).
const (
	syslogPriority = syslog.LOG_AUTH | syslog.LOG_INFO
	syslogTag      = "hsmkms"
)

// fileSink appends to a file and reopens it by name: logrotate moves the
// file and sends SIGHUP (create mode). copytruncate is not supported:
// records written between its copy and its truncation are lost
// (docs/operations.md, "Audit export").
type fileSink struct {
	path string
	mu   sync.Mutex
	f    *os.File
	// partial says the last write stopped inside a line: the next starts
	// with a newline, so one cut line does not swallow the next record.
	partial bool
	closed  bool // Close ran: a late SIGHUP's Reopen opens nothing
}

func openFile(path string) (*fileSink, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &fileSink{path: path, f: f, partial: cutLine(path)}, nil
}

// cutLine says whether the file ends inside a line (kmsd was killed in
// the middle of a write): the next record then starts on a line of its own.
func cutLine(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
		return false
	}
	b := make([]byte, 1)
	_, err = f.ReadAt(b, st.Size()-1)
	return err == nil && b[0] != '\n'
}

// openAppend opens path for appending, creating it with mode 0600. A FIFO
// is opened without waiting for a reader (none: an error, not a hang). A
// symbolic link is not followed (whoever can write the directory must not
// point kmsd's appends at another file, its database say), and a file
// every user may read or write is refused: the trail names principals,
// keys and credentials' ids (group access, for a forwarder, is allowed).
func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		if errors.Is(err, syscall.ENXIO) {
			return nil, fmt.Errorf("file:%s: a FIFO that no process reads", path)
		}
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("file:%s: a symbolic link (not followed: name the file itself)", path)
		}
		return nil, fmt.Errorf("file:%s: %v", path, errors.Unwrap(err))
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("file:%s: %v", path, err)
	}
	if st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("file:%s: a directory", path)
	}
	if st.Mode().IsRegular() && st.Mode().Perm()&0o007 != 0 {
		f.Close()
		return nil, fmt.Errorf("file:%s: mode %04o lets every user read or write the audit trail (chmod o-rwx)", path, st.Mode().Perm())
	}
	if st.Mode()&os.ModeNamedPipe == 0 {
		// O_NONBLOCK was for the open of a FIFO (Go polls a FIFO's
		// writes itself); a device is written as a file is.
		if err := syscall.SetNonblock(int(f.Fd()), false); err != nil {
			f.Close()
			return nil, fmt.Errorf("file:%s: %v", path, err)
		}
	}
	return f, nil
}

func (s *fileSink) Write(lines [][]byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return writeLines(s.f, lines, &s.partial)
}

// writeLines writes lines in one write and counts the whole ones written.
func writeLines(f *os.File, lines [][]byte, partial *bool) (int, error) {
	size := 0
	for _, l := range lines {
		size += len(l)
	}
	buf := make([]byte, 0, size+1)
	if *partial {
		buf = append(buf, '\n')
	}
	lead := len(buf)
	for _, l := range lines {
		buf = append(buf, l...)
	}
	n, err := f.Write(buf)
	if err == nil {
		*partial = false
		return len(lines), nil
	}
	if n < lead {
		return 0, err // not even the newline: still inside the cut line
	}
	n -= lead
	whole := 0
	for _, l := range lines {
		if n < len(l) {
			break
		}
		n -= len(l)
		whole++
	}
	*partial = n > 0
	return whole, err
}

// Reopen opens the file by its name again and switches to it; on failure
// the old file stays in use (records go on to the moved file, none lost).
// The old file is flushed to disk before it is closed: the export state
// saved next names records written to it, and must not run ahead of them.
func (s *fileSink) Reopen() error {
	f, err := openAppend(s.path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		f.Close()
		return fmt.Errorf("file:%s: the sink is closed", s.path)
	}
	old := s.f
	s.f, s.partial = f, cutLine(s.path)
	s.mu.Unlock()
	return errors.Join(syncFile(old), old.Close())
}

// Sync flushes the file to disk (before the export state is saved).
func (s *fileSink) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return syncFile(s.f)
}

// syncFile is f.Sync, where there is something to flush.
func syncFile(f *os.File) error {
	err := f.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EROFS) {
		return nil // a FIFO or a device: nothing to flush
	}
	return err
}

func (s *fileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return s.f.Close()
}
func (s *fileSink) String() string { return "file:" + s.path }

// writerSink writes to kmsd's standard output.
type writerSink struct {
	f       *os.File
	name    string
	partial bool
}

func (s *writerSink) Write(lines [][]byte) (int, error) { return writeLines(s.f, lines, &s.partial) }
func (s *writerSink) Reopen() error                     { return nil }
func (s *writerSink) Close() error                      { return nil } // not ours to close
func (s *writerSink) String() string                    { return s.name }

// syslogSink sends one message per record; log/syslog reconnects after
// an error at the next message.
type syslogSink struct {
	w    *syslog.Writer
	name string
}

func (s *syslogSink) Write(lines [][]byte) (int, error) {
	for i, l := range lines {
		if err := s.w.Info(strings.TrimSuffix(string(l), "\n")); err != nil {
			return i, err
		}
	}
	return len(lines), nil
}
func (s *syslogSink) Reopen() error  { return nil }
func (s *syslogSink) Close() error   { return s.w.Close() }
func (s *syslogSink) String() string { return s.name }
