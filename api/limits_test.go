package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// serveLimited serves the stack's service on a real socket within l, as
// kmsd does, and returns the address.
func serveLimited(t *testing.T, s *kmstest.Stack, l api.Limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewHTTPServer(api.New(api.Config{Service: s.Service, Logger: kmstest.Logger()}), l)
	go func() { _ = srv.Serve(api.LimitListener(ln, l)) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// slowRequest sends the request line and headers of a POST whose declared
// body is 200 bytes (or the Content-Length among headers), then feeds the
// body one byte per second. It returns
// the status line the server answers with ("" when it closes without one),
// its request id, and how long after the dial that came, and after how long
// the server closed the connection (0 when it did not within limit). It
// gives up after limit.
func slowRequest(t *testing.T, addr, path string, headers []string, limit time.Duration) (status, id string, answered, closed time.Duration) {
	t.Helper()
	start := time.Now()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head := "POST " + path + " HTTP/1.1\r\nHost: kms\r\n" + strings.Join(headers, "") + "\r\n"
	if !strings.Contains(head, "\r\nContent-Length: ") {
		head = strings.Replace(head, "\r\n", "\r\nContent-Length: 200\r\n", 1)
	}
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	_ = conn.SetReadDeadline(start.Add(limit))
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	elapsed := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("POST %s: held open for %s with no answer", path, limit)
	}
	for {
		h, err := br.ReadString('\n')
		if err != nil || strings.TrimSpace(h) == "" {
			break
		}
		if name, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(name, "X-Request-Id") {
			id = strings.TrimSpace(v)
		}
	}
	if _, err := io.Copy(io.Discard, br); !errors.As(err, &ne) || !ne.Timeout() {
		closed = time.Since(start)
	}
	return strings.TrimSpace(line), id, elapsed, closed
}

// A body fed one byte per second is cut off at the read timeout, even
// from an authenticated caller, and the key is not used.
func TestSlowBodyIsCutAtTheReadTimeout(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	const readTimeout = 2 * time.Second
	addr := serveLimited(t, s, api.Limits{ReadTimeout: readTimeout})
	status, id, took, _ := slowRequest(t, addr, "/v1/encrypt", []string{
		"Authorization: Bearer " + kmstest.AdminToken + "\r\n", "Content-Type: application/json\r\n"}, 40*time.Second)
	// Measured from before the dial, so never below the timeout; the upper
	// bound leaves a loaded CI machine 15 s.
	if took < readTimeout-100*time.Millisecond || took > readTimeout+15*time.Second {
		t.Errorf("slow body answered after %s, want about the read timeout (%s)", took, readTimeout)
	}
	if !strings.Contains(status, " 400 ") {
		t.Errorf("slow body: %q, want 400 (the body did not arrive in time)", status)
	}
	// The request's context ended with its connection's read: its audit
	// record is written all the same.
	var found bool
	for _, rec := range listAudit(t, newCaller(t, s.URL, kmstest.AdminToken), "") {
		found = found || rec["request_id"] == id && rec["action"] == "kms:Encrypt" && rec["outcome"] == "failed"
	}
	if !found {
		t.Errorf("no audit record of the slow request %s", id)
	}
	t.Logf("slow body: %q after %s (read timeout %s)", status, took.Round(time.Millisecond), readTimeout)
}

// A request that cannot be served is refused without reading its body: a
// missing or wrong token is 401, a body of another media type 415, a
// declared body over the 64 KiB limit 413, at once and not when the body
// (200 s at this pace) or the read timeout (60 s) ends. (Up to 256 KiB
// net/http would otherwise read the rest of the body before answering.)
// The connection then lingers for what the client still sends, but not
// for the rest of a slow body: it closes within a few seconds.
func TestRefusalDoesNotWaitForTheBody(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	addr := serveLimited(t, s, api.Limits{ReadTimeout: 60 * time.Second})
	for _, tc := range []struct {
		name    string
		headers []string
		want    string
	}{
		{"no token", []string{"Content-Type: application/json\r\n"}, " 401 "},
		{"wrong token", []string{"Authorization: Bearer not-a-token-of-anyone\r\n", "Content-Type: application/json\r\n"}, " 401 "},
		{"unknown route, wrong token", []string{"Authorization: Bearer not-a-token-of-anyone\r\n"}, " 401 "},
		{"text/plain", []string{"Authorization: Bearer " + kmstest.AdminToken + "\r\n", "Content-Type: text/plain\r\n"}, " 415 "},
		{"65 KiB body", []string{"Authorization: Bearer " + kmstest.AdminToken + "\r\n", "Content-Type: application/json\r\n", "Content-Length: 66560\r\n"}, " 413 "},
		{"200 KiB body", []string{"Authorization: Bearer " + kmstest.AdminToken + "\r\n", "Content-Type: application/json\r\n", "Content-Length: 204800\r\n"}, " 413 "},
		{"1 MiB body", []string{"Authorization: Bearer " + kmstest.AdminToken + "\r\n", "Content-Type: application/json\r\n", "Content-Length: 1048576\r\n"}, " 413 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := "/v1/encrypt"
			if strings.HasPrefix(tc.name, "unknown route") {
				path = "/v1/nothing-here"
			}
			status, _, took, closed := slowRequest(t, addr, path, tc.headers, 20*time.Second)
			if !strings.Contains(status, tc.want) {
				t.Errorf("%q, want%s", status, tc.want)
			}
			// The linger is 2 s; the bound leaves a loaded machine the rest.
			if closed == 0 || closed > 15*time.Second {
				t.Errorf("connection still open 20 s after the refusal (closed after %s)", closed)
			}
			t.Logf("%q after %s, closed after %s", status, took.Round(time.Millisecond), closed.Round(time.Millisecond))
		})
	}
}

// smallBuffers shrinks a socket's kernel buffers to a few KiB, so a body
// of tens of KiB cannot sit in them: its writer is still writing when the
// server answers, as over a real network.
func smallBuffers(_, _ string, rc syscall.RawConn) error {
	var err error
	cerr := rc.Control(func(fd uintptr) {
		if err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096); err == nil {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}
	})
	return errors.Join(cerr, err)
}

// A client that is still sending its body when it is refused, as Go's
// net/http and curl do, reads the refusal instead of a broken pipe: the
// server drains what it sends after answering. (Closing with the body
// unread reset the connection under the writing client.)
func TestRefusalReachesAClientStillSendingItsBody(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ln, err := (&net.ListenConfig{Control: smallBuffers}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewHTTPServer(api.New(api.Config{Service: s.Service, Logger: kmstest.Logger()}), api.Limits{})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()
	// Within the 64 KiB limit for the refusals that come after it; over it,
	// but below the 256 KiB past which net/http itself half-closes and
	// waits before the close.
	const within, over = 60 << 10, 100 << 10
	for _, tc := range []struct {
		name, path, token, contentType string
		size                           int
		declared                       bool
		status                         int
		code                           string
	}{
		{"no token", "/v1/encrypt", "", "application/json", within, true, 401, "UnauthenticatedException"},
		{"wrong token", "/v1/encrypt", "not-a-token-of-anyone", "application/json", within, true, 401, "UnauthenticatedException"},
		{"unknown route, wrong token", "/v1/nothing-here", "not-a-token-of-anyone", "application/json", within, true, 401, "UnauthenticatedException"},
		{"text/plain", "/v1/encrypt", kmstest.AdminToken, "text/plain", within, true, 415, "UnsupportedMediaTypeException"},
		{"declared over the limit", "/v1/encrypt", kmstest.AdminToken, "application/json", over, true, 413, "ValidationException"},
		{"chunked over the limit", "/v1/encrypt", kmstest.AdminToken, "application/json", over, false, 413, "ValidationException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 3 {
				var body io.Reader = strings.NewReader(strings.Repeat(" ", tc.size))
				if !tc.declared {
					body = struct{ io.Reader }{body} // no length: sent chunked
				}
				req, err := http.NewRequest("POST", "http://"+addr+tc.path, body)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", tc.contentType)
				if tc.token != "" {
					req.Header.Set("Authorization", "Bearer "+tc.token)
				}
				c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
					DialContext: (&net.Dialer{Control: smallBuffers}).DialContext}}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("got %v, want %d %s", err, tc.status, tc.code)
				}
				var e struct {
					Error struct{ Code, Message string }
				}
				err = json.NewDecoder(resp.Body).Decode(&e)
				resp.Body.Close()
				if err != nil || resp.StatusCode != tc.status || e.Error.Code != tc.code || e.Error.Message == "" {
					t.Fatalf("got %d %+v (%v), want %d %s", resp.StatusCode, e.Error, err, tc.status, tc.code)
				}
			}
		})
	}
}

// Request headers are capped (16 KiB): the 900 KB that net/http's default
// allows is 431, an ordinary request with a few KB of headers is served.
func TestRequestHeadersAreCapped(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	addr := serveLimited(t, s, api.Limits{})
	for _, tc := range []struct {
		size int
		want int
	}{{900 << 10, http.StatusRequestHeaderFieldsTooLarge}, {64 << 10, http.StatusRequestHeaderFieldsTooLarge}, {8 << 10, http.StatusOK}} {
		// Sent raw: a 900 KiB header does not fit in the socket buffers, and
		// net/http's client would report its broken write, not the 431.
		status := kmstest.StatusLine(t, addr, "GET /v1/keys HTTP/1.1\r\nHost: kms\r\nAuthorization: Bearer "+kmstest.AdminToken+
			"\r\nX-Padding: "+strings.Repeat("p", tc.size)+"\r\nConnection: close\r\n\r\n")
		if want := fmt.Sprintf(" %d ", tc.want); !strings.Contains(status+" ", want) {
			t.Errorf("%d-byte header: %q, want%s", tc.size, status, want)
		}
	}
}

// Open connections are capped: with the cap held by clients that never
// finish their headers, a further client is not served until one of them
// goes; then it is.
func TestConnectionsAreCapped(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	const maxConns = 3
	addr := serveLimited(t, s, api.Limits{MaxConnections: maxConns, ReadHeaderTimeout: 5 * time.Minute, ReadTimeout: 5 * time.Minute})
	var held []net.Conn
	for range maxConns {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: kms\r\n"); err != nil {
			t.Fatal(err)
		}
		held = append(held, conn)
	}
	answered := make(chan error, 1)
	go func() {
		hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Minute}
		resp, err := hc.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		answered <- err
	}()
	// Over the cap nothing is answered (a short wait can only miss a
	// defect, never fail a correct server).
	select {
	case err := <-answered:
		t.Fatalf("a connection over the cap of %d was served (%v)", maxConns, err)
	case <-time.After(time.Second):
	}
	held[0].Close()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("after a slot freed: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("still not served a minute after a slot freed")
	}
}

// Over HTTP/2 too, a refusal does not wait for a slow body, and it does
// not tear down the connection that other requests share.
func TestRefusalOverHTTP2(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	srv := httptest.NewUnstartedServer(api.New(api.Config{Service: s.Service, Logger: kmstest.Logger()}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	hc := srv.Client()

	body, feed := io.Pipe()
	defer feed.Close()
	go func() {
		for range 60 {
			if _, err := feed.Write([]byte(" ")); err != nil {
				return
			}
			time.Sleep(time.Second)
		}
	}()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/encrypt", body)
	req.Header.Set("Authorization", "Bearer not-a-token-of-anyone")
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 401 || time.Since(start) > 15*time.Second {
		t.Fatalf("HTTP/%d %d after %s, want HTTP/2 401 at once", resp.ProtoMajor, resp.StatusCode, time.Since(start))
	}
	var reused bool
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	req, _ = http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", srv.URL+"/v1/keys", nil)
	req.Header.Set("Authorization", "Bearer "+kmstest.AdminToken)
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !reused {
		t.Errorf("the next request: %d, on the same connection: %v", resp.StatusCode, reused)
	}
}
