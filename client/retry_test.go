package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// What is worth another try, and what no retry changes.
func TestTemporary(t *testing.T) {
	_, dialErr := net.Dial("tcp", "127.0.0.1:1")
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&Error{Status: 503, Code: "ServiceUnavailableException"}, true},
		{&Error{Status: 429, Code: "LimitExceededException"}, true},
		{&Error{Status: 409, Code: "ConflictException"}, true},
		{&Error{Status: 409, Code: "AlreadyExistsException"}, false},
		{&Error{Status: 409, Code: "DisabledException"}, false},
		{&Error{Status: 400, Code: "ValidationException"}, false},
		{&Error{Status: 500, Code: "InternalException"}, false},
		{fmt.Errorf("post: %w", dialErr), true},
		{context.DeadlineExceeded, false},
		{errors.New("x509: certificate signed by unknown authority"), false},
	} {
		if got := Temporary(tc.err); got != tc.want {
			t.Errorf("Temporary(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// The waits grow exponentially, jittered below their bound, never past Max;
// a Retry-After is followed up to Max.
func TestRetryWait(t *testing.T) {
	r := Retry{Attempts: 10, Base: 100 * time.Millisecond, Max: time.Second}
	for n := 1; n <= 8; n++ {
		bound := min(r.Base<<(n-1), r.Max)
		distinct := map[time.Duration]bool{}
		for range 50 {
			w := r.wait(n, &Error{Status: 503})
			if w <= 0 || w > bound {
				t.Fatalf("wait %d = %v, want in (0, %v]", n, w, bound)
			}
			distinct[w] = true
		}
		if len(distinct) < 10 {
			t.Errorf("wait %d: %d distinct values in 50: no jitter", n, len(distinct))
		}
	}
	if w := r.wait(1, &Error{Status: 503, retryAfter: 500 * time.Millisecond}); w != 500*time.Millisecond {
		t.Errorf("Retry-After 0.5s: wait %v", w)
	}
	if w := r.wait(1, &Error{Status: 503, retryAfter: time.Hour}); w != r.Max {
		t.Errorf("Retry-After 1h: wait %v, want the cap %v", w, r.Max)
	}
}

// Do retries what is safe to repeat, stops at Attempts, and gives up early
// when the context ends; a POST that creates something is sent once.
func TestDoRetries(t *testing.T) {
	var seen atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":{"code":"ServiceUnavailableException","message":"busy"}}`)
	}))
	defer srv.Close()
	c := New(srv.URL, "t", nil).WithRetry(Retry{Attempts: 3, Base: time.Millisecond, Max: 10 * time.Millisecond})
	ctx := context.Background()
	for _, tc := range []struct {
		method, path string
		want         int64
	}{
		{"GET", "/v1/keys", 3},
		{"POST", "/v1/encrypt", 3},
		{"PUT", "/v1/policies/p", 3},
		{"POST", "/v1/keys", 1},
		{"POST", "/v1/aliases", 1},
	} {
		seen.Store(0)
		err := c.Do(ctx, tc.method, tc.path, map[string]string{"a": "b"}, nil)
		if Code(err) != "ServiceUnavailableException" || seen.Load() != tc.want {
			t.Errorf("%s %s: %v after %d tries, want %d", tc.method, tc.path, err, seen.Load(), tc.want)
		}
	}
	// Without WithRetry, one try: the API of New is unchanged.
	seen.Store(0)
	New(srv.URL, "t", nil).Do(ctx, "GET", "/v1/keys", nil, nil)
	if seen.Load() != 1 {
		t.Errorf("a plain client tried %d times", seen.Load())
	}
	// A context that ends during a wait ends the retries with the last answer.
	seen.Store(0)
	slow := New(srv.URL, "t", nil).WithRetry(Retry{Attempts: 5, Base: time.Hour, Max: time.Hour})
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		for seen.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if err := slow.Do(cctx, "GET", "/v1/keys", nil, nil); Code(err) != "ServiceUnavailableException" || seen.Load() != 1 {
		t.Errorf("cancelled during the wait: %v after %d tries", err, seen.Load())
	}
}
