package hsm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/miekg/pkcs11"
)

// The probe key is one token object that exists only so that Ping can use
// an object: an open, logged-in session proves little when the token's
// storage fails. SoftHSM 2.6.1 with its token directory unreadable or moved
// away still opens sessions and draws random numbers, while every object
// handle turns invalid and every search finds nothing; and it does not see
// its objects again when the directory comes back, until the module is
// finalized and initialised again (docs/pkcs11-pitfalls.md, item 58). The
// probe key is how this package tells "this key is missing" from "the
// token lost every object", and what it re-initialises on.
//
// It protects nothing: it encrypts a constant and is never used to
// decrypt. Its label is outside the hsmkms/ namespace, so Inventory (and
// the reconciler) never see it; a second one made by a replica starting at
// the same moment is harmless (the first found is used).
var (
	probeID    = []byte("hsmkms-probe-v1")
	probeLabel = "hsmkms-probe"
	probeData  = make([]byte, 16)
)

// minReinitInterval bounds how often the module is finalized and
// initialised again while the token's storage is failing: each time costs
// every session and a re-read of the token.
const minReinitInterval = time.Second

// errProbeMissing: the token shows no probe key. It is a "not found", so
// that withStorageCheck looks at the storage.
var errProbeMissing = fmt.Errorf("%w: the probe key", ErrObjectNotFound)

func probeTemplate() []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_ID, probeID),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, probeLabel),
	}
}

// Ping implements Token: one AES-GCM encryption of 16 bytes under the
// probe key, with its cached handle (about as costly as a request). When
// the token no longer shows the probe key its storage failed: the module
// is initialised again (at most once a second) and, if the token then
// answers without the key, the key is made again.
func (p *PKCS11) Ping(ctx context.Context) error {
	return translate("ping", p.checkStorage(ctx))
}

// checkStorage is Ping. reinit says the module was initialised again
// (every handle found before is gone): a caller that just missed an
// object searches again.
func (p *PKCS11) checkStorage(ctx context.Context) error {
	_, err := p.checkStorageReinit(ctx)
	return err
}

func (p *PKCS11) checkStorageReinit(ctx context.Context) (reinit bool, err error) {
	// After an initialisation that found no token, only another
	// C_Finalize makes SoftHSM look at its storage again: no probe then.
	if !p.refinalize.Load() {
		if err = p.probe(ctx); !errors.Is(err, errProbeMissing) {
			return false, err
		}
	}
	if rerr := p.reinit(ctx); rerr != nil {
		return false, fmt.Errorf("%w: the token shows none of its objects (storage fault?): %w", ErrUnavailable, rerr)
	}
	if err = p.probe(ctx); errors.Is(err, errProbeMissing) {
		// The module was initialised again and the token answers, so its
		// storage is readable: the key itself went (someone destroyed it).
		if err = p.ensureProbe(ctx); err == nil {
			err = p.probe(ctx)
		}
	}
	return true, err
}

// probe encrypts probeData under the probe key; errProbeMissing when the
// token shows no probe key.
func (p *PKCS11) probe(ctx context.Context) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var ch cachedHandle
		if ch, err = p.probeHandle(ctx); err != nil {
			if hasCode(err, staleHandleCodes) {
				continue
			}
			return err
		}
		err = p.doGen(ctx, ch.gen, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
			_, _, err := p.gcmEncrypt(c, sh, ch.h, probeData, nil)
			return err
		})
		if !hasCode(err, staleHandleCodes) {
			return err
		}
		p.hmu.Lock()
		if cur, ok := p.handles[string(probeID)]; ok && cur == ch {
			delete(p.handles, string(probeID))
		}
		p.hmu.Unlock()
	}
	return err
}

// probeHandle is the probe key's handle, cached like a version's.
func (p *PKCS11) probeHandle(ctx context.Context) (cachedHandle, error) {
	p.hmu.RLock()
	ch, ok := p.handles[string(probeID)]
	p.hmu.RUnlock()
	if ok {
		return ch, nil
	}
	p.mgmt.Lock()
	defer p.mgmt.Unlock()
	_, _, gen := p.current()
	var hs []pkcs11.ObjectHandle
	err := p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		var err error
		p.stats.searches.Add(1)
		if hs, err = findByID(c, sh, probeID, pkcs11.CKO_SECRET_KEY, 1); err == nil && len(hs) == 0 {
			err = loggedIn(c, sh) // a lost login hides private objects
		}
		return err
	})
	switch {
	case err != nil:
		return cachedHandle{}, err
	case len(hs) == 0:
		return cachedHandle{}, errProbeMissing
	}
	if _, _, now := p.current(); now != gen {
		return cachedHandle{}, pkcs11.Error(pkcs11.CKR_OBJECT_HANDLE_INVALID)
	}
	ch = cachedHandle{h: hs[0], gen: gen}
	p.hmu.Lock()
	p.handles[string(probeID)] = ch
	p.hmu.Unlock()
	return ch, nil
}

// ensureProbe makes the probe key unless the token has one (Open, and
// after it was destroyed).
func (p *PKCS11) ensureProbe(ctx context.Context) error {
	p.mgmt.Lock()
	defer p.mgmt.Unlock()
	err := p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		p.stats.searches.Add(1)
		hs, err := findByID(c, sh, probeID, pkcs11.CKO_SECRET_KEY, 1)
		if err != nil || len(hs) > 0 {
			return err
		}
		if err := loggedIn(c, sh); err != nil {
			return err
		}
		mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}
		_, err = c.GenerateKey(sh, mech, probeTemplate())
		return err
	})
	return p.translate("make the probe key", err)
}

// reinit finalizes the module and initialises it again, so that a token
// whose storage failed reads it again (SoftHSM keeps an in-memory view of
// the token that does not recover by itself). It waits for the calls in
// flight (the management lock, then every session slot), because
// C_Finalize under a running call is undefined. It does nothing, and says
// so, when the last one was less than minReinitInterval ago, or when
// another PKCS11 of this process uses the module (finalizing would pull it
// from under that one's calls).
func (p *PKCS11) reinit(ctx context.Context) error {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if since := time.Since(p.lastReinit); since < minReinitInterval {
		return fmt.Errorf("%w: the module was initialised again %s ago", ErrUnavailable, since.Round(time.Millisecond))
	}
	p.lastReinit = time.Now()
	if !soleUser(p.cfg.Module) {
		return fmt.Errorf("%w: the module is shared by several users in this process and is not initialised again", ErrUnavailable)
	}
	// Every caller of the module waits: management calls and the keeper
	// session (keeper.go) under mgmt, which comes first as in every
	// management call, then the pooled calls by their session slots.
	p.mgmt.Lock()
	defer p.mgmt.Unlock()
	timer := time.NewTimer(p.cfg.PoolWaitTimeout)
	defer timer.Stop()
	for taken := 0; taken < cap(p.pool.slots); taken++ {
		select {
		case <-p.pool.slots:
			defer func() { p.pool.slots <- struct{}{} }()
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for the calls in flight: %w", ErrUnavailable, ctx.Err())
		case <-timer.C:
			return fmt.Errorf("%w: calls still in flight after %s", ErrUnavailable, p.cfg.PoolWaitTimeout)
		case <-p.pool.done:
			return fmt.Errorf("%w: token closed", ErrUnavailable)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("%w: token closed", ErrUnavailable)
	}
	p.stats.reinits.Add(1)
	_ = p.ctx.Finalize()
	p.endGeneration(true)
	p.hardGen = p.gen
	if _, err := p.initModule(); err != nil {
		p.refinalize.Store(true)
		return fmt.Errorf("%w: initialising the module again: %w", ErrUnavailable, err)
	}
	p.refinalize.Store(false)
	return nil
}

// storageSuspect says err may come from a failed storage rather than from
// the object or the request: an object the caller expects is not there,
// the profile's storage-fault codes, or a token not found again since the
// last initialisation.
func (p *PKCS11) storageSuspect(err error) bool {
	if errors.Is(err, ErrDecryptFailed) {
		return false // SoftHSM's wrong tag is CKR_GENERAL_ERROR too
	}
	return errors.Is(err, ErrObjectNotFound) || hasCode(err, p.cfg.Profile.StorageFaultCodes) ||
		(p.refinalize.Load() && errors.Is(err, ErrUnavailable))
}

// withStorageCheck runs call, an idempotent token call. If it fails in a
// way a failed storage explains, the storage is checked (checkStorage):
// when the module was initialised again, call runs once more; when the
// check fails, that is the error (ErrUnavailable: "not found" from a token
// that shows none of its objects is no answer); when it passes, the
// call's own error stands.
func (p *PKCS11) withStorageCheck(ctx context.Context, call func() error) error {
	return p.storageChecked(ctx, true, call)
}

// storageChecked is withStorageCheck; without retry, call is not run a
// second time after a re-initialisation (the caller retries).
func (p *PKCS11) storageChecked(ctx context.Context, retry bool, call func() error) error {
	err := call()
	if err == nil || !p.storageSuspect(err) {
		return err
	}
	reinit, cerr := p.checkStorageReinit(ctx)
	switch {
	case cerr != nil:
		// Only the check's error is wrapped: the call's "not found" is no
		// answer from a token that shows none of its objects.
		return fmt.Errorf("%w (the call: %v)", p.translate("storage check", cerr), err)
	case reinit && retry:
		return call()
	}
	return err
}

// soleUser says whether exactly one PKCS11 of this process has path open.
func soleUser(path string) bool {
	modules.Lock()
	defer modules.Unlock()
	return modules.open[moduleKey(path)] == 1
}
