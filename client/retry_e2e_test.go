package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// fault is what faultProxy does to one request instead of forwarding it.
type fault struct {
	status int    // answer this, as kmsd answers it, without forwarding
	code   string // the API code of that answer
	reset  string // "before": reset the connection unforwarded; "after": forward, then reset instead of answering
}

// faultProxy stands on 127.0.0.1 between a client and a real kmsd stack:
// it applies its queued faults to the next requests, one each, and
// forwards the rest.
type faultProxy struct {
	rp   *httputil.ReverseProxy
	mu   sync.Mutex
	f    fault
	left int // requests still to get f; < 0: all
	seen atomic.Int64
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	return &faultProxy{rp: httputil.NewSingleHostReverseProxy(u)}
}

// inject queues n copies of f (n < 0: for every request from now on).
func (p *faultProxy) inject(f fault, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen.Store(0)
	p.f, p.left = f, n
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.seen.Add(1)
	p.mu.Lock()
	var f *fault
	if p.left != 0 {
		f = &fault{}
		*f = p.f
		p.left--
	}
	p.mu.Unlock()
	switch {
	case f == nil:
		p.rp.ServeHTTP(w, r)
	case f.reset != "":
		if f.reset == "after" {
			p.rp.ServeHTTP(httptest.NewRecorder(), r) // done by kmsd; the answer is lost
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		conn.(*net.TCPConn).SetLinger(0) // RST, not FIN
		conn.Close()
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(f.status)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": f.code, "message": "injected"}})
	}
}

// serve starts p on ln (a fresh 127.0.0.1 port when nil).
func (p *faultProxy) serve(t *testing.T, ln net.Listener) string {
	srv := httptest.NewUnstartedServer(p)
	if ln != nil {
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

var quick = client.Retry{Attempts: 3, Base: time.Millisecond, Max: 10 * time.Millisecond}

// Do retries what is safe to repeat, on the answers kmsd gives for "not
// now" (503 KeyUnavailableException, 429, 409 ConflictException) and on a
// cut connection; it stops at Attempts; a refusal no retry changes, and a
// POST that creates something, are sent once.
func TestDoRetries(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	p := newFaultProxy(t, s.URL)
	proxyURL := p.serve(t, nil)
	c := client.New(proxyURL, kmstest.AdminToken, nil).WithRetry(quick)
	ctx := context.Background()
	k, err := s.Client.CreateKey(ctx, client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	unavailable := fault{status: 503, code: "KeyUnavailableException"}
	calls := map[string]func() error{
		"list keys": func() error { _, err := c.ListKeys(ctx, 0, ""); return err },
		"encrypt":   func() error { _, err := c.Encrypt(ctx, k.KeyID, []byte("x"), nil); return err },
		"create key": func() error {
			_, err := c.CreateKey(ctx, client.CreateKeyRequest{})
			return err
		},
	}
	for _, tc := range []struct {
		call     string
		f        fault
		n        int
		wantCode string // "" for success
		wantSeen int64
	}{
		{"list keys", unavailable, 2, "", 3},
		{"list keys", unavailable, -1, "KeyUnavailableException", 3},
		{"list keys", fault{reset: "before"}, 2, "", 3},
		{"encrypt", fault{status: 429, code: "LimitExceededException"}, 2, "", 3},
		{"encrypt", fault{status: 409, code: "ConflictException"}, 1, "", 2},
		{"encrypt", fault{status: 409, code: "KMSInvalidStateException"}, 1, "KMSInvalidStateException", 1},
		{"encrypt", fault{reset: "after"}, 1, "", 2},
		{"create key", unavailable, 1, "KeyUnavailableException", 1},
		{"create key", fault{reset: "before"}, 1, "reset", 1},
	} {
		p.inject(tc.f, tc.n)
		err := calls[tc.call]()
		ok := client.Code(err) == tc.wantCode
		if tc.wantCode == "reset" {
			ok = errors.Is(err, syscall.ECONNRESET)
		}
		if !ok || p.seen.Load() != tc.wantSeen {
			t.Errorf("%s, %+v ×%d: %v after %d requests, want %q after %d", tc.call, tc.f, tc.n, err, p.seen.Load(), tc.wantCode, tc.wantSeen)
		}
	}
	// Without WithRetry, one try: the API of New is unchanged.
	p.inject(unavailable, -1)
	if _, err := client.New(proxyURL, kmstest.AdminToken, nil).ListKeys(ctx, 0, ""); client.Code(err) != "KeyUnavailableException" || p.seen.Load() != 1 {
		t.Errorf("a plain client: %v after %d tries", err, p.seen.Load())
	}
	// A context that ends during a wait ends the retries with the last answer.
	p.inject(unavailable, -1)
	slow := client.New(proxyURL, kmstest.AdminToken, nil).WithRetry(client.Retry{Attempts: 5, Base: time.Hour, Max: time.Hour})
	// Cancelled once the first answer is read whole (its connection goes
	// back to the pool): the client is then waiting, or about to.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cctx = httptrace.WithClientTrace(cctx, &httptrace.ClientTrace{PutIdleConn: func(error) { cancel() }})
	if _, err := slow.ListKeys(cctx, 0, ""); client.Code(err) != "KeyUnavailableException" || p.seen.Load() != 1 {
		t.Errorf("cancelled during the wait: %v after %d tries", err, p.seen.Load())
	}
}

// A DELETE whose answer was lost (the connection reset after kmsd deleted)
// is retried, finds nothing, and succeeded; a first try's 404 is still an
// error.
func TestRetriedDeleteFindingNothingSucceeded(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	p := newFaultProxy(t, s.URL)
	c := client.New(p.serve(t, nil), kmstest.AdminToken, nil).WithRetry(quick)
	ctx := context.Background()
	k, err := s.Client.CreateKey(ctx, client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client.CreateAlias(ctx, "alias/lost-answer", k.KeyID); err != nil {
		t.Fatal(err)
	}
	p.inject(fault{reset: "after"}, 1)
	if err := c.DeleteAlias(ctx, "alias/lost-answer"); err != nil || p.seen.Load() != 2 {
		t.Errorf("DELETE with its answer lost: %v after %d requests, want success after 2", err, p.seen.Load())
	}
	if page, err := s.Client.ListAliases(ctx, k.KeyID, 0, ""); err != nil || len(page.Aliases) != 0 {
		t.Errorf("the alias is still there: %+v %v", page, err)
	}
	p.inject(fault{}, 0)
	if err := c.DeleteAlias(ctx, "alias/lost-answer"); client.Code(err) != "NotFoundException" || p.seen.Load() != 1 {
		t.Errorf("DELETE of nothing, first try: %v after %d requests, want NotFoundException after 1", err, p.seen.Load())
	}
	// One that answers a resource has no answer to give: its 404 stays.
	p.inject(fault{reset: "before"}, 1)
	if _, err := c.DeleteImportedKeyMaterial(ctx, "alias/none"); client.Code(err) != "NotFoundException" || p.seen.Load() != 2 {
		t.Errorf("DELETE key material of no key, retried: %v after %d requests", err, p.seen.Load())
	}
}

// Nothing listens yet: the dial is refused, the call is retried, and
// succeeds once the server is up.
func TestRetryUntilTheServerListens(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := newFaultProxy(t, s.URL)
	var refused atomic.Int64
	var once sync.Once
	dialer := &net.Dialer{}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, network, a)
		if errors.Is(err, syscall.ECONNREFUSED) {
			refused.Add(1)
			// The server comes up after the first refusal.
			once.Do(func() {
				l, lerr := net.Listen("tcp", addr)
				if lerr != nil {
					t.Errorf("listen again on %s: %v", addr, lerr)
					return
				}
				p.serve(t, l)
			})
		}
		return conn, err
	}}
	t.Cleanup(tr.CloseIdleConnections)
	c := client.New("http://"+addr, kmstest.AdminToken, &http.Client{Transport: tr}).WithRetry(quick)
	if _, err := c.ListKeys(context.Background(), 0, ""); err != nil || refused.Load() != 1 || p.seen.Load() != 1 {
		t.Errorf("ListKeys: %v after %d refused dials and %d requests, want success after 1 and 1", err, refused.Load(), p.seen.Load())
	}
}
