package kmstest

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// StatusLine sends request (a whole HTTP/1.1 request, as bytes on the wire)
// to addr and returns the status line of the answer, e.g.
// "HTTP/1.1 431 Request Header Fields Too Large". The request is written
// from its own goroutine and a write error is ignored: a server that answers
// and closes before reading all of a large request resets the connection,
// and net/http's client then reports the broken write rather than the
// answer it was sent, whereas here the answer is read all the same.
func StatusLine(t testing.TB, addr, request string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() { _, _ = io.WriteString(conn, request) }()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer from %s: %v", addr, err)
	}
	return strings.TrimSpace(line)
}
