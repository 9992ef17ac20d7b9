package hsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"
	"golang.org/x/sync/singleflight"
)

// PKCS11 is the token behind a PKCS#11 module, on miekg/pkcs11.
type PKCS11 struct {
	cfg Config

	// mu guards the module context, the slot, the generation and closed. A
	// generation ends when a session or the module is found dead (token
	// reset, C_CloseAllSessions, logout, module finalized); sessions and
	// handles of an old generation are never used again.
	mu     sync.RWMutex
	ctx    *pkcs11.Ctx
	slot   uint
	gen    uint64
	closed bool
	// hardGen is the first generation after the last hard reset: sessions
	// of older generations belong to a module instance that was
	// initialised again, and their numbers may name new sessions now.
	hardGen uint64

	pool *sessionPool
	// direct calls C_Encrypt and C_Decrypt with buffers this package sizes
	// (direct.go); initArgs is Config.InitArgs as a C string, kept for
	// every C_Initialize.
	direct   *direct
	initArgs *initArgs
	// wrap is what the token offers for BYOK (probeWrapping, at Open).
	wrap wrapSupport
	// keeper holds the wrapping keys, session objects (keeper.go); mgmt
	// guards it.
	keeper *session

	// mgmt serialises key-management writes and token searches: SoftHSM
	// 2.6.1 races C_FindObjects against object creation (pitfalls item 30).
	// The data path (encrypt, decrypt, random) never takes it.
	mgmt sync.Mutex

	hmu     sync.RWMutex
	handles map[string]cachedHandle // CKA_ID -> handle and its generation
	finds   singleflight.Group

	// rmu serialises reinit; lastReinit rate-limits it. refinalize says
	// the last initialisation found no token: SoftHSM looks at its
	// storage again only after another C_Finalize (probe.go).
	rmu        sync.Mutex
	lastReinit time.Time
	refinalize atomic.Bool

	// loginFailed stops further login attempts after a wrong PIN: a retry
	// loop would lock the token (letsencrypt/pkcs11key).
	loginFailed atomic.Bool

	stats     counters
	closeOnce sync.Once
}

var _ Token = (*PKCS11)(nil)

// Open loads the module, finds the token by label, logs in and checks that
// the token offers the mechanisms the service needs. Every failure is one
// clear error; a wrong PIN wraps ErrLogin. Nothing is retried but a
// login the profile says failed in passing (Profile.LoginRetryCodes).
func Open(ctx context.Context, cfg Config) (*PKCS11, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(cfg.Module); err != nil {
		return nil, fmt.Errorf("hsm: PKCS#11 module %s: %w", cfg.Module, errors.Unwrap(err))
	}
	p := &PKCS11{cfg: cfg, handles: map[string]cachedHandle{}}
	p.pool = newSessionPool(p, cfg.MaxSessions, cfg.PoolWaitTimeout)
	var err error
	p.ctx = pkcs11.New(cfg.Module)
	if p.ctx == nil {
		return nil, fmt.Errorf("hsm: cannot load PKCS#11 module %s (not a PKCS#11 library, wrong architecture, or missing dependencies)", cfg.Module)
	}
	acquireModule(cfg.Module)
	p.initArgs = newInitArgs(cfg.InitArgs)
	if p.direct, err = openDirect(cfg.Module); err != nil {
		p.Close()
		return nil, err
	}
	if _, err := p.initModule(); err != nil {
		p.Close()
		return nil, err
	}
	if err := p.checkMechanisms(); err != nil {
		p.Close()
		return nil, err
	}
	p.probeWrapping()
	// Log in now, so that a wrong PIN fails start-up rather than the first
	// request; then make sure Ping has its probe key.
	if err := translate("login", p.do(ctx, loggedIn)); err != nil {
		p.Close()
		return nil, err
	}
	if err := p.ensureProbe(ctx); err != nil {
		p.Close()
		return nil, err
	}
	if err := p.checkIVMode(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// initModule initialises the module (an already initialised one is fine:
// another PKCS11 or library of the process may share it) and finds the
// slot by token label. Called at Open and on a hard reset, with mu held.
// reinit says C_Initialize started a new module instance: the sessions and
// handles of the old one are gone, and their numbers may be reused.
func (p *PKCS11) initModule() (reinit bool, err error) {
	err = p.ctx.Initialize(p.initArgs.options()...)
	reinit = err == nil
	if err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		return false, translate("C_Initialize", err)
	}
	slots, err := p.ctx.GetSlotList(true)
	if err != nil {
		return reinit, translate("C_GetSlotList", err)
	}
	var found []uint
	for _, s := range slots {
		ti, err := p.ctx.GetTokenInfo(s)
		if err == nil && ti.Label == p.cfg.TokenLabel {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return reinit, fmt.Errorf("hsm: no token labelled %q in module %s (%d tokens present)", p.cfg.TokenLabel, p.cfg.Module, len(slots))
	case 1:
		p.slot = found[0]
		return reinit, nil
	}
	return reinit, fmt.Errorf("hsm: %d tokens are labelled %q; labels must be unique", len(found), p.cfg.TokenLabel)
}

// checkMechanisms refuses a token without AES key generation or AES-GCM
// encrypt and decrypt (pitfalls item 17).
func (p *PKCS11) checkMechanisms() error {
	need := []struct {
		mech  uint
		name  string
		flags uint
	}{
		{pkcs11.CKM_AES_KEY_GEN, "CKM_AES_KEY_GEN", pkcs11.CKF_GENERATE},
		{pkcs11.CKM_AES_GCM, "CKM_AES_GCM", pkcs11.CKF_ENCRYPT | pkcs11.CKF_DECRYPT},
	}
	for _, n := range need {
		info, err := p.ctx.GetMechanismInfo(p.slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(n.mech, nil)})
		if err != nil {
			return fmt.Errorf("hsm: token %q does not offer %s: %w", p.cfg.TokenLabel, n.name, translate("C_GetMechanismInfo", err))
		}
		if info.Flags&n.flags != n.flags {
			return fmt.Errorf("hsm: token %q offers %s without the needed functions (flags 0x%X)", p.cfg.TokenLabel, n.name, info.Flags)
		}
	}
	return nil
}

// reset ends generation seen, unless another goroutine already did: idle
// sessions are closed, the handle cache is emptied, and on a hard reset
// (module or token gone) the module is initialised again and the slot
// found again by label. The module is never finalized here: its state is
// shared by everything in the process that loaded it (pitfalls item 7).
// The next session opened logs in again.
func (p *PKCS11) reset(seen uint64, hard bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("%w: token closed", ErrUnavailable)
	}
	bumped := false
	if p.gen == seen {
		p.stats.resets.Add(1)
		p.endGeneration(hard)
		bumped = true
	} else if !hard {
		return nil
	}
	if hard {
		reinit, err := p.initModule()
		if err != nil {
			p.refinalize.Store(true)
			return fmt.Errorf("%w: recovering the token: %w", ErrUnavailable, err)
		}
		p.refinalize.Store(false)
		if reinit && !bumped {
			// A new module instance under sessions of the current
			// generation (opened after another goroutine's soft reset).
			p.endGeneration(true)
		}
		// Sessions of older generations are never closed by number from
		// now on: after a hard reset that number may name a new session,
		// another caller's. (On a module that was alive after all, they
		// are left open: a bounded leak, never someone else's session.)
		p.hardGen = p.gen
	}
	return nil
}

// endGeneration starts a new generation: idle sessions are closed (on a
// hard reset only forgotten) and the handle cache is emptied. mu is held.
func (p *PKCS11) endGeneration(hard bool) {
	if hard {
		p.pool.forgetIdle()
	} else {
		p.pool.closeIdle(p.ctx)
	}
	p.gen++
	p.hmu.Lock()
	p.handles = map[string]cachedHandle{}
	p.hmu.Unlock()
}

// outlived says whether a session of generation gen belongs to a module
// instance that was initialised again since: it must be forgotten, never
// closed (its number may name another caller's new session).
func (p *PKCS11) outlived(gen uint64) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return gen < p.hardGen
}

// current returns the module context, slot and generation; c is nil once
// the token is closed.
func (p *PKCS11) current() (c *pkcs11.Ctx, slot uint, gen uint64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return nil, p.slot, p.gen
	}
	return p.ctx, p.slot, p.gen
}

// Close closes the idle sessions and, when this is the last PKCS11 of the
// process on the module, finalizes and unloads it. It waits up to
// PoolWaitTimeout for calls in flight (unloading under them would crash);
// calls after Close fail with ErrUnavailable. It is idempotent. It never
// calls C_Logout: login state belongs to the whole process.
func (p *PKCS11) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		drained := p.pool.drain(p.cfg.PoolWaitTimeout)
		p.mgmt.Lock() // before mu, as every holder of mgmt takes them
		defer p.mgmt.Unlock()
		p.dropKeeper(p.ctx)
		p.mu.Lock()
		defer p.mu.Unlock()
		p.pool.closeIdle(p.ctx)
		last := releaseModule(p.cfg.Module)
		if !drained {
			err = fmt.Errorf("hsm: close: sessions still in use after %s; module left loaded", p.cfg.PoolWaitTimeout)
			return
		}
		if last {
			_ = p.ctx.Finalize()
		}
		p.ctx.Destroy()
		p.direct.close()
		p.initArgs.free()
	})
	return err
}

// modules counts the open PKCS11 values per module file. C_Finalize acts on
// the library's process-wide state, so only the last Close may call it;
// paths are resolved so that differently spelled ones count together.
var modules = struct {
	sync.Mutex
	open map[string]int
}{open: map[string]int{}}

func moduleKey(path string) string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		return real
	}
	return filepath.Clean(path)
}

func acquireModule(path string) {
	modules.Lock()
	modules.open[moduleKey(path)]++
	modules.Unlock()
}

// releaseModule reports whether path's last user has gone.
func releaseModule(path string) bool {
	modules.Lock()
	defer modules.Unlock()
	k := moduleKey(path)
	modules.open[k]--
	if modules.open[k] > 0 {
		return false
	}
	delete(modules.open, k)
	return true
}

// checkIVMode proves the profile's GCM IV mode against the token, with a
// session key that never becomes a token object: one encryption and its
// decryption. A token that refuses caller-chosen IVs (FIPS mode), or one
// said to generate IVs that does not, fails Open with a clear message
// instead of the first request (or, worse, with every blob on one IV).
func (p *PKCS11) checkIVMode(ctx context.Context) error {
	p.mgmt.Lock()
	defer p.mgmt.Unlock()
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
	}
	err := p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		h, err := c.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl)
		if err != nil {
			return err
		}
		defer c.DestroyObject(sh, h)
		probe := []byte("hsmkms GCM IV mode probe")
		iv, ct, err := p.gcmEncrypt(c, sh, h, probe, nil)
		if err != nil {
			return err
		}
		params, mech := p.gcm(iv, nil)
		defer params.Free()
		if err := c.DecryptInit(sh, mech, h); err != nil {
			return err
		}
		pt, err := p.gcmOpen(sh, ct)
		if err != nil {
			return err
		}
		if !bytes.Equal(pt, probe) {
			return fmt.Errorf("hsm: a GCM round trip on token %q did not return its plaintext", p.cfg.TokenLabel)
		}
		return nil
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNoTokenIV):
		return fmt.Errorf("hsm: token %q does not generate GCM IVs itself: use caller-chosen IVs with it (profile %s)", p.cfg.TokenLabel, p.cfg.Profile.Name)
	case !p.cfg.Profile.TokenGeneratesIV && hasCode(err, []uint{pkcs11.CKR_MECHANISM_PARAM_INVALID}):
		return fmt.Errorf("hsm: token %q refuses caller-chosen GCM IVs (FIPS mode?): let it generate them (token-generated IV setting)", p.cfg.TokenLabel)
	}
	return fmt.Errorf("hsm: AES-GCM on token %q: %w", p.cfg.TokenLabel, translate("GCM probe", err))
}
