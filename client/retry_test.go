package client

import (
	"context"
	"errors"
	"fmt"
	"net"
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
		{&Error{Status: 503, Code: "KeyUnavailableException"}, true},
		{&Error{Status: 429, Code: "LimitExceededException"}, true},
		{&Error{Status: 409, Code: "ConflictException"}, true},
		{&Error{Status: 409, Code: "AlreadyExistsException"}, false},
		{&Error{Status: 409, Code: "DisabledException"}, false},
		{&Error{Status: 409, Code: "KMSInvalidStateException"}, false},
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
