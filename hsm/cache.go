package hsm

import (
	"context"
	"fmt"

	"github.com/miekg/pkcs11"
)

// cachedHandle is a handle and the generation it was found in: a handle is
// never used in another generation, where its number may name a different
// object (SoftHSM renumbers objects after a logout or C_Initialize).
type cachedHandle struct {
	h   pkcs11.ObjectHandle
	gen uint64
}

// cache remembers ref's handle.
func (p *PKCS11) cache(ref ObjectRef, ch cachedHandle) {
	p.hmu.Lock()
	p.handles[string(ref.ID())] = ch
	p.hmu.Unlock()
}

// forget drops ref's entry if it is still ch (a concurrent caller may
// already have cached a fresh handle).
func (p *PKCS11) forget(ref ObjectRef, ch cachedHandle) {
	id := string(ref.ID())
	p.hmu.Lock()
	if cur, ok := p.handles[id]; ok && cur == ch {
		delete(p.handles, id)
	}
	p.hmu.Unlock()
}

// forgetAny drops ref's entry whatever it is (destroy).
func (p *PKCS11) forgetAny(ref ObjectRef) {
	p.hmu.Lock()
	delete(p.handles, string(ref.ID()))
	p.hmu.Unlock()
}

// handle returns ref's handle from memory, or finds it once however many
// callers miss at the same time (single flight). "Not found" is never
// cached: an object created later, or by another replica, is found on the
// next call (pitfalls item 11).
func (p *PKCS11) handle(ctx context.Context, ref ObjectRef) (cachedHandle, error) {
	id := string(ref.ID())
	p.hmu.RLock()
	ch, ok := p.handles[id]
	p.hmu.RUnlock()
	if ok {
		p.stats.cacheHits.Add(1)
		return ch, nil
	}
	p.stats.cacheMisses.Add(1)
	// The search is shared, so it does not end with this caller's ctx; the
	// pool wait timeout still bounds it. This caller stops waiting at ctx.
	res := p.finds.DoChan(id, func() (any, error) {
		p.mgmt.Lock()
		defer p.mgmt.Unlock()
		// A flight that ended just before this one began may have cached
		// the handle after this caller missed: then there is nothing to find.
		p.hmu.RLock()
		ch, ok := p.handles[id]
		p.hmu.RUnlock()
		if ok {
			return ch, nil
		}
		return p.searchAndCache(context.WithoutCancel(ctx), ref)
	})
	select {
	case r := <-res:
		if r.Err != nil {
			return cachedHandle{}, r.Err
		}
		return r.Val.(cachedHandle), nil
	case <-ctx.Done():
		return cachedHandle{}, fmt.Errorf("%w: waiting for the search of %s: %w", ErrUnavailable, ref, ctx.Err())
	}
}

// searchAndCache finds ref and caches the handle with the generation it
// was found in. The caller holds mgmt.
func (p *PKCS11) searchAndCache(ctx context.Context, ref ObjectRef) (cachedHandle, error) {
	_, _, gen := p.current()
	h, err := p.search(ctx, ref)
	if err != nil {
		return cachedHandle{}, err
	}
	if _, _, now := p.current(); now != gen {
		// A reset happened during the search; the handle's generation is
		// unknown. Report it stale so the caller finds it again.
		return cachedHandle{}, pkcs11.Error(pkcs11.CKR_OBJECT_HANDLE_INVALID)
	}
	ch := cachedHandle{h: h, gen: gen}
	p.cache(ref, ch)
	return ch, nil
}

// withHandle runs fn with ref's handle. If the handle went stale (the
// object was destroyed and re-created, the user was logged out, or the
// token was reset) it forgets it, finds the object again and retries; the
// request path searches the token only then.
func (p *PKCS11) withHandle(ctx context.Context, ref ObjectRef, fn func(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) error) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var ch cachedHandle
		if ch, err = p.handle(ctx, ref); err != nil {
			if hasCode(err, staleHandleCodes) {
				continue
			}
			return err
		}
		err = p.doGen(ctx, ch.gen, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error { return fn(c, sh, ch.h) })
		if !hasCode(err, staleHandleCodes) {
			return err
		}
		p.forget(ref, ch)
	}
	return err
}
