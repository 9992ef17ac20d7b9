package service

import (
	"context"
	"time"

	"golang.org/x/sync/singleflight"
)

// dbCtx is ctx bounded by the database timeout.
func (s base) dbCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.dbTimeout)
}

// sharedLoad runs load once for every concurrent caller with key (single
// flight). The load outlives the caller that started it, so it does not
// take that caller's context: it gets a deadline of its own, timeout, and
// each caller stops waiting at its own context.
func sharedLoad(ctx context.Context, g *singleflight.Group, key string, timeout time.Duration, load func(ctx context.Context) (any, error)) (any, error) {
	ch := g.DoChan(key, func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		return load(lctx)
	})
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
