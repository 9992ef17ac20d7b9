package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/hsmkms/hsmkms/wire"
)

// Retry says how a client retries the calls the server turned away for now
// (503 KeyUnavailableException, 429 LimitExceeded, 409 ConflictException)
// and connection failures. Only calls that are safe to repeat are retried:
// reads (GET, HEAD), replacements (PUT, DELETE) and the cryptographic
// operations, which change nothing. A retried DELETE that finds nothing
// (404) succeeded: an earlier try did it (see goneAlready). A zero Retry
// retries nothing.
type Retry struct {
	Attempts int           // tries in all, including the first; < 2 is no retry
	Base     time.Duration // the first wait; each next one doubles, up to Max
	Max      time.Duration // the longest wait, also the cap on Retry-After
}

// DefaultRetry is what kmsctl uses: four tries within about 3.5 seconds.
var DefaultRetry = Retry{Attempts: 4, Base: 200 * time.Millisecond, Max: 2 * time.Second}

// WithRetry returns a copy of c that retries as r says.
func (c *Client) WithRetry(r Retry) *Client {
	cp := *c
	cp.retry = r
	return &cp
}

// cryptoPaths are the POSTs that change no state: repeating one is safe.
var cryptoPaths = map[string]bool{
	"/v1/encrypt": true, "/v1/decrypt": true, "/v1/re-encrypt": true,
	"/v1/generate-data-key": true, "/v1/generate-data-key-without-plaintext": true,
	"/v1/generate-random": true,
}

func repeatable(method, path string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
		return true
	case http.MethodPost:
		return cryptoPaths[path]
	}
	return false
}

// goneAlready reports whether err, the answer to a retried DELETE, means
// the earlier try did the deletion: an attempt cut off (a connection reset,
// a proxy's 503) may have been carried out, and the retry then finds
// nothing (404 NotFoundException). Such a DELETE succeeded. Only for a
// DELETE that answers nothing (out nil): one that answers a resource, like
// DeleteImportedKeyMaterial, has no answer to give, and its 404 stays an
// error.
func goneAlready(method string, out any, err error) bool {
	var e *Error
	return method == http.MethodDelete && out == nil && errors.As(err, &e) &&
		e.Status == http.StatusNotFound && e.Code == "NotFoundException"
}

// Temporary reports whether err is the server turning a call away for now
// (or not answering at all): trying again later may succeed.
func Temporary(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		switch e.Status {
		case http.StatusServiceUnavailable, http.StatusTooManyRequests:
			return true
		case http.StatusConflict:
			// 409 is also AlreadyExists, Disabled and KMSInvalidState, which
			// no retry changes; only a lock conflict is temporary.
			return e.Code == wire.CodeConflict
		}
		return false
	}
	// No answer at all: nothing listens (yet), or the connection was cut.
	// A TLS or certificate error is no such thing: it stays an error.
	var oe *net.OpError
	return (errors.As(err, &oe) && oe.Op == "dial") ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// wait is the pause before try number n+1 (n from 1): full jitter over an
// exponential bound, or the server's Retry-After when it gives one.
func (r Retry) wait(n int, err error) time.Duration {
	var e *Error
	if errors.As(err, &e) && e.retryAfter > 0 {
		return min(e.retryAfter, r.Max)
	}
	bound := r.Base << (n - 1)
	if bound <= 0 || bound > r.Max {
		bound = r.Max
	}
	if bound <= 0 {
		return 0
	}
	return rand.N(bound) + 1
}

func retryAfter(h http.Header) time.Duration {
	s, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || s < 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
