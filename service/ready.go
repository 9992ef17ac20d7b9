package service

import (
	"context"
	"sync"
	"time"
)

// Readiness bounds. A load balancer polls /readyz often: the answer is
// cached for ReadyCacheTTL, and one check takes at most ReadyTimeout
// however the token or the database hangs (a SIGSTOPped PostgreSQL, a
// token whose storage fails), so that /readyz answers within 2 s.
const (
	ReadyCacheTTL = 500 * time.Millisecond
	ReadyTimeout  = 1500 * time.Millisecond
)

// readiness is Ready's cache. Concurrent callers share one check: mu is
// held during it, and whoever waited finds its fresh result.
type readiness struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

// Ready reports whether the token can be used (it encrypts under its probe
// key, hsm.Token.Ping) and the database answers, both within ReadyTimeout;
// the answer is at most ReadyCacheTTL old.
func (s *Service) Ready(ctx context.Context) error {
	r := &s.ready
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.at.IsZero() && time.Since(r.at) < ReadyCacheTTL {
		return r.err
	}
	r.err = s.check(ctx)
	r.at = time.Now()
	return r.err
}

// check runs both pings at once and gives up on one still running at
// ReadyTimeout: a call that ignores its context (a token's C function
// blocked in the driver) must not hold /readyz.
func (s *Service) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ReadyTimeout)
	defer cancel()
	tokenErr, storeErr := make(chan error, 1), make(chan error, 1)
	go func() { tokenErr <- s.token.Ping(ctx) }()
	go func() { storeErr <- s.store.Ping(ctx) }()
	var terr, serr error
	for range 2 {
		select {
		case terr = <-tokenErr:
			if terr != nil {
				return s.tokenErr(terr)
			}
			tokenErr = nil
		case serr = <-storeErr:
			if serr != nil {
				return s.storeErr(serr)
			}
			storeErr = nil
		case <-ctx.Done():
			if tokenErr != nil {
				return s.tokenErr(ctx.Err())
			}
			return s.storeErr(ctx.Err())
		}
	}
	return nil
}
