package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

// A database that does not answer in time is reported as the retryable
// ErrUnavailable by the store itself, on every path (a read, a write in a
// transaction, a ping); a cancelled request is not.
func TestUnavailableIsClassifiedByTheStore(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		expired, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
		defer cancel()
		cancelled, stop := context.WithCancel(t.Context())
		stop()
		calls := []struct {
			name string
			call func(ctx context.Context) error
		}{
			{"GetKey", func(ctx context.Context) error { _, err := s.GetKey(ctx, "k1"); return err }},
			{"ListKeys", func(ctx context.Context) error { _, err := s.ListKeys(ctx, service.Page{Limit: 10}); return err }},
			{"InTx", func(ctx context.Context) error {
				return s.InTx(ctx, func(q service.Queries) error { return q.InsertKey(ctx, newKey("k2")) })
			}},
			{"Ping", s.Ping},
		}
		for _, c := range calls {
			if err := c.call(expired); !errors.Is(err, service.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s past its deadline: %v, want ErrUnavailable wrapping DeadlineExceeded", c.name, err)
			}
			if err := c.call(cancelled); err == nil || errors.Is(err, service.ErrUnavailable) {
				t.Errorf("%s cancelled: %v, want an error that is not ErrUnavailable", c.name, err)
			}
		}
		if _, err := s.GetKey(t.Context(), "k2"); !errors.Is(err, service.ErrNotFound) {
			t.Errorf("the transaction past its deadline wrote: %v", err)
		}
	})
}

func TestClassify(t *testing.T) {
	_, dialErr := net.DialTimeout("tcp", "127.0.0.1:1", time.Second) // nothing listens on port 1
	if dialErr == nil {
		t.Skip("something listens on 127.0.0.1:1")
	}
	for _, tc := range []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"connection refused", fmt.Errorf("query: %w", dialErr), true},
		{"bad connection", fmt.Errorf("query: %w", driver.ErrBadConn), true},
		{"connection done", sql.ErrConnDone, true},
		{"deadline", context.DeadlineExceeded, true},
		{"no rows", sql.ErrNoRows, false},
		{"cancelled", context.Canceled, false},
		{"other", errors.New("syntax error"), false},
	} {
		got := classify(tc.err)
		if errors.Is(got, service.ErrUnavailable) != tc.unavailable || !errors.Is(got, tc.err) {
			t.Errorf("%s: classify(%v) = %v, unavailable %v want %v", tc.name, tc.err, got, errors.Is(got, service.ErrUnavailable), tc.unavailable)
		}
		if again := classify(got); again != got {
			t.Errorf("%s: classifying twice wrapped twice: %v", tc.name, again)
		}
	}
	if classify(nil) != nil {
		t.Error("classify(nil) is not nil")
	}
}
