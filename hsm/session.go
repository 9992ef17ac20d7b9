package hsm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/miekg/pkcs11"
)

// session is one open, logged-in R/W session of a generation.
type session struct {
	h   pkcs11.SessionHandle
	gen uint64
}

// sessionPool lends long-lived sessions: at most max in use, opened lazily,
// reused (never opened and closed per request), dropped when dead.
type sessionPool struct {
	p     *PKCS11
	slots chan struct{} // one token per session that may be in use
	done  chan struct{} // closed by Close: waiters give up at once
	wait  time.Duration

	mu   sync.Mutex
	idle []session
}

func newSessionPool(p *PKCS11, max int, wait time.Duration) *sessionPool {
	sp := &sessionPool{p: p, slots: make(chan struct{}, max), done: make(chan struct{}), wait: wait}
	for i := 0; i < max; i++ {
		sp.slots <- struct{}{}
	}
	return sp
}

// get waits for a free slot (honouring ctx and the pool timeout) and
// returns an idle session of the current generation or opens one. The
// error of a timeout wraps ErrUnavailable (and ctx.Err() when ctx ended).
func (sp *sessionPool) get(ctx context.Context) (session, error) {
	select {
	case <-sp.done:
		return session{}, fmt.Errorf("%w: token closed", ErrUnavailable)
	default:
	}
	select {
	case <-sp.slots:
	default:
		timer := time.NewTimer(sp.wait)
		defer timer.Stop()
		select {
		case <-sp.slots:
		case <-sp.done:
			return session{}, fmt.Errorf("%w: token closed", ErrUnavailable)
		case <-ctx.Done():
			return session{}, fmt.Errorf("%w: waiting for a session: %w", ErrUnavailable, ctx.Err())
		case <-timer.C:
			return session{}, fmt.Errorf("%w: no free session within %s", ErrUnavailable, sp.wait)
		}
	}
	c, slot, gen := sp.p.current()
	if c == nil {
		sp.slots <- struct{}{}
		return session{}, fmt.Errorf("%w: token closed", ErrUnavailable)
	}
	for {
		sp.mu.Lock()
		if len(sp.idle) == 0 {
			sp.mu.Unlock()
			break
		}
		s := sp.idle[len(sp.idle)-1]
		sp.idle = sp.idle[:len(sp.idle)-1]
		sp.mu.Unlock() // retire takes p.mu, which reset holds while it takes sp.mu
		if s.gen == gen {
			return s, nil
		}
		sp.retire(c, s) // put back just as its generation ended
	}
	s, err := sp.open(ctx, c, slot, gen)
	if err != nil {
		sp.slots <- struct{}{}
		return session{}, err
	}
	return s, nil
}

// loginAttempts bounds the logins open tries when the token answers one
// of Profile.LoginRetryCodes, waiting one more loginRetryStep before each
// retry (0.5 s in all).
const (
	loginAttempts  = 5
	loginRetryStep = 50 * time.Millisecond
)

// open opens a session and logs in. Login is per application, so
// CKR_USER_ALREADY_LOGGED_IN is success; after a wrong PIN no further login
// is attempted until the process restarts.
func (sp *sessionPool) open(ctx context.Context, c *pkcs11.Ctx, slot uint, gen uint64) (session, error) {
	if sp.p.loginFailed.Load() {
		return session{}, fmt.Errorf("%w: an earlier login was refused; fix the PIN and restart", ErrLogin)
	}
	h, err := c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return session{}, translate("C_OpenSession", err)
	}
	sp.p.stats.sessionsOpened.Add(1)
	err = c.Login(h, pkcs11.CKU_USER, sp.p.cfg.PIN)
	for attempt := 1; hasCode(err, sp.p.cfg.Profile.LoginRetryCodes) && attempt < loginAttempts; attempt++ {
		if serr := sleepCtx(ctx, time.Duration(attempt)*loginRetryStep); serr != nil {
			break
		}
		err = c.Login(h, pkcs11.CKU_USER, sp.p.cfg.PIN)
	}
	if err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		sp.closeSession(c, h)
		terr := translate("C_Login", err) // the PIN is never part of it
		if errors.Is(terr, ErrLogin) {
			sp.p.loginFailed.Store(true)
		}
		return session{}, terr
	}
	return session{h: h, gen: gen}, nil
}

// put returns a session after use. A session that failed with a dead-session
// code, or whose generation ended meanwhile, is not reused: it is closed, or
// only forgotten when the token says the handle no longer exists.
func (sp *sessionPool) put(s session, err error) {
	defer func() { sp.slots <- struct{}{} }()
	c, _, gen := sp.p.current()
	switch {
	case hasCode(err, goneSessionCodes), s.gen != gen && sp.p.outlived(s.gen):
		sp.p.stats.sessionsClosed.Add(1) // gone with its module instance: forget it
	case c == nil, hasCode(err, sessionDeadCodes), sp.p.moduleGone(err), s.gen != gen,
		err != nil && !hasCode(err, cleanFailureCodes) && !hasCode(err, sp.p.cfg.Profile.DecryptFailureCodes) &&
			!hasCode(err, sp.p.cfg.Profile.NotPermittedCodes):
		sp.closeSession(c, s.h)
	default:
		sp.mu.Lock()
		sp.idle = append(sp.idle, s)
		sp.mu.Unlock()
	}
}

// retire ends a session of an ended generation: closed, or only forgotten
// when its module instance was initialised again.
func (sp *sessionPool) retire(c *pkcs11.Ctx, s session) {
	if sp.p.outlived(s.gen) {
		sp.p.stats.sessionsClosed.Add(1)
		return
	}
	sp.closeSession(c, s.h)
}

// closeSession closes h, best effort (it may be dead already).
func (sp *sessionPool) closeSession(c *pkcs11.Ctx, h pkcs11.SessionHandle) {
	sp.p.stats.sessionsClosed.Add(1)
	if c != nil {
		_ = c.CloseSession(h)
	}
}

// forgetIdle drops every idle session without closing it: after a hard
// reset their numbers may name other callers' sessions.
func (sp *sessionPool) forgetIdle() {
	sp.mu.Lock()
	n := len(sp.idle)
	sp.idle = nil
	sp.mu.Unlock()
	sp.p.stats.sessionsClosed.Add(uint64(n))
}

// closeIdle closes every idle session; the caller holds p.mu (hence c is
// passed in). When one session died, e.g. after C_CloseAllSessions, the
// others most likely died with it.
func (sp *sessionPool) closeIdle(c *pkcs11.Ctx) {
	sp.mu.Lock()
	idle := sp.idle
	sp.idle = nil
	sp.mu.Unlock()
	for _, s := range idle {
		sp.closeSession(c, s.h)
	}
}

// drain stops new borrowers and takes every slot, so that no call is in
// flight; false if some slot was not returned within wait. Only Close
// drains: the slots are kept.
func (sp *sessionPool) drain(wait time.Duration) bool {
	close(sp.done)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for i := 0; i < cap(sp.slots); i++ {
		select {
		case <-sp.slots:
		case <-timer.C:
			return false
		}
	}
	return true
}

func (sp *sessionPool) usage() (idle, inUse int) {
	sp.mu.Lock()
	idle = len(sp.idle)
	sp.mu.Unlock()
	return idle, cap(sp.slots) - len(sp.slots)
}

// do runs fn on a pooled session. When fn (or opening the session) fails
// because the session, the login or the module is dead, it recovers (reset)
// and runs fn once more; a second failure is returned, and translates to
// ErrUnavailable. Other errors are returned raw, for the caller to translate.
func (p *PKCS11) do(ctx context.Context, fn func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error) error {
	return p.doGen(ctx, anyGen, fn)
}

// run calls fn on s and returns s to the pool even if fn panics (the slot
// would be lost, and Close would wait for it forever); a panic closes the
// session and goes on up.
func (p *PKCS11) run(c *pkcs11.Ctx, s session, fn func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error) (err error) {
	done := false
	defer func() {
		if !done {
			p.pool.put(s, errPanicked)
		}
	}()
	err = fn(c, s.h)
	done = true
	p.pool.put(s, err)
	return err
}

var errPanicked = errors.New("hsm: panic during a token call")

// anyGen lets doGen run fn in whatever generation is current.
const anyGen = ^uint64(0)

// doGen is do for work bound to a generation (it uses an object handle):
// if the session's generation is not want, fn is not run and the handle is
// reported stale (CKR_OBJECT_HANDLE_INVALID), so the caller finds it again.
// A handle is never used in another generation, where its number may name
// a different object (SoftHSM renumbers objects after C_Initialize).
func (p *PKCS11) doGen(ctx context.Context, want uint64, fn func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error) error {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		c, _, seen := p.current()
		var s session
		if s, err = p.pool.get(ctx); err == nil {
			if want != anyGen && want != s.gen {
				p.pool.put(s, nil)
				return pkcs11.Error(pkcs11.CKR_OBJECT_HANDLE_INVALID)
			}
			err = p.run(c, s, fn)
			seen = s.gen
		}
		hard := p.moduleGone(err)
		if !hard && !hasCode(err, sessionDeadCodes) {
			return err
		}
		if attempt == 0 {
			if rerr := p.reset(seen, hard); rerr != nil {
				return rerr
			}
		}
	}
	return err
}
