package service

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sync/singleflight"
)

// TestSharedLoad: a shared database read has a deadline of its own (a hung
// database cannot hold it, nor the callers, past it), and each caller
// stops waiting at its own context.
func TestSharedLoad(t *testing.T) {
	hung := func(ctx context.Context) (any, error) { <-ctx.Done(); return nil, ctx.Err() }
	cases := []struct {
		name        string
		callerAfter time.Duration // the caller's own deadline (0: none)
		timeout     time.Duration // the load's
		want        error
		within      time.Duration
	}{
		{"the load's deadline ends a hung read", 0, 100 * time.Millisecond, context.DeadlineExceeded, 10 * time.Second},
		{"a caller stops waiting at its own deadline", 50 * time.Millisecond, 30 * time.Second, context.DeadlineExceeded, 10 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.callerAfter > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.callerAfter)
				defer cancel()
			}
			var g singleflight.Group
			start := time.Now()
			_, err := sharedLoad(ctx, &g, "k", tc.timeout, hung)
			if !errors.Is(err, tc.want) || time.Since(start) > tc.within {
				t.Fatalf("sharedLoad = %v after %s, want %v within %s", err, time.Since(start), tc.want, tc.within)
			}
		})
	}

}
