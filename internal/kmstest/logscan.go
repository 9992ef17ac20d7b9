package kmstest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"sync"
)

// Every log line a test stack writes is kept in memory, so that the test
// binary can prove at the end that none of them holds a secret: a
// plaintext, a bearer token or the PIN (Secret registers them).
var logs = &logSink{}

type logSink struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	secrets map[string]bool
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// LogWriter is where test stacks log (and, with HSMKMS_TEST_LOG set,
// stderr too). Subprocess tests copy kmsd's output here as well.
func LogWriter() io.Writer {
	if os.Getenv("HSMKMS_TEST_LOG") != "" {
		return io.MultiWriter(logs, os.Stderr)
	}
	return logs
}

// Secret registers a value that must never appear in any log: the check
// looks for it as it is and in base64.
func Secret(s string) {
	if len(s) < 4 {
		return // too short to search for without false alarms
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if logs.secrets == nil {
		logs.secrets = map[string]bool{}
	}
	logs.secrets[s] = true
}

// CheckLogs reports every registered secret found in the logs.
func CheckLogs() error {
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if logs.buf.Len() == 0 {
		return fmt.Errorf("log scan: no log output was captured; the scan would prove nothing")
	}
	text := logs.buf.Bytes()
	var found []string
	for s := range logs.secrets {
		for _, form := range []string{s, base64.StdEncoding.EncodeToString([]byte(s)), base64.RawURLEncoding.EncodeToString([]byte(s))} {
			if bytes.Contains(text, []byte(form)) {
				found = append(found, fmt.Sprintf("%.6s... (%d bytes)", s, len(s)))
				break
			}
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("log scan: %d secret(s) appear in the log output: %v", len(found), found)
	}
	return nil
}

// Logs returns the captured log output so far.
func Logs() string {
	logs.mu.Lock()
	defer logs.mu.Unlock()
	return logs.buf.String()
}

// LogBytes is the size of the captured log output.
func LogBytes() int {
	logs.mu.Lock()
	defer logs.mu.Unlock()
	return logs.buf.Len()
}
