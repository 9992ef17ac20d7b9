package hsm

import (
	"errors"
	"testing"

	"github.com/miekg/pkcs11"
)

// recoveryCase is a token reset done from outside p, in the same process.
type recoveryCase struct {
	name  string
	reset func(t *testing.T, r *raw)
}

var recoveryCases = []recoveryCase{
	{"C_CloseAllSessions", func(t *testing.T, r *raw) {
		// Closes every session of the process on the slot and logs out.
		if err := r.c.CloseAllSessions(r.slot); err != nil {
			t.Fatal(err)
		}
		r.gone = true
	}},
	{"C_Logout", func(t *testing.T, r *raw) {
		// Sessions stay open but lose the login: private objects vanish and
		// their handles fail with CKR_OBJECT_HANDLE_INVALID (pitfalls item 6).
		if err := r.c.Logout(r.sh); err != nil {
			t.Fatal(err)
		}
	}},
	{"C_Finalize then C_Initialize (token restart)", func(t *testing.T, r *raw) {
		if err := r.c.Finalize(); err != nil {
			t.Fatal(err)
		}
		if err := r.c.Initialize(r.init...); err != nil {
			t.Fatal(err)
		}
		r.gone = true
	}},
	{"C_Finalize (module finalized)", func(t *testing.T, r *raw) {
		if err := r.c.Finalize(); err != nil {
			t.Fatal(err)
		}
		r.gone = true
	}},
}

// TestRecovery: after each kind of reset the next calls succeed without
// reopening the PKCS11, and old ciphertexts still decrypt.
func TestRecovery(t *testing.T) {
	for _, tc := range recoveryCases {
		t.Run(tc.name, func(t *testing.T) {
			p := sharedToken(t)
			ctx := testCtx(t)
			ref := generated(t, p)
			iv, ct, err := p.Encrypt(ctx, ref, []byte("before"), []byte("aad"))
			if err != nil {
				t.Fatal(err)
			}
			resets := p.Stats().Resets
			tc.reset(t, rawSession(t, p))

			if _, _, err := p.Encrypt(ctx, ref, []byte("after"), []byte("aad")); err != nil {
				t.Fatalf("Encrypt after the reset: %v", err)
			}
			if pt, err := p.Decrypt(ctx, ref, iv, ct, []byte("aad")); err != nil || string(pt) != "before" {
				t.Fatalf("Decrypt after the reset = %q, %v", pt, err)
			}
			if got := p.Stats().Resets - resets; got < 1 {
				t.Errorf("Stats.Resets grew by %d, want at least 1", got)
			}
			for name, op := range map[string]func() error{
				"Ping":           func() error { return p.Ping(ctx) },
				"Random":         func() error { _, err := p.Random(ctx, 16); return err },
				"SetDecryptOnly": func() error { return p.SetDecryptOnly(ctx, ref) },
				"GenerateKey":    func() error { return p.GenerateKey(ctx, newRef()) },
			} {
				if err := op(); err != nil {
					t.Errorf("%s after the reset: %v", name, err)
				}
			}
			if inv := inventoryOf(t, p, ref); len(inv) != 1 || inv[0].Encrypt {
				t.Errorf("inventory after the reset = %+v", inv)
			}
		})
	}
}

// TestRecoveryOfEveryCall: each call, as the first after a reset, recovers.
func TestRecoveryOfEveryCall(t *testing.T) {
	p := sharedToken(t)
	ref := generated(t, p)
	ctx := testCtx(t)
	iv, ct, err := p.Encrypt(ctx, ref, []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, op := range map[string]func() error{
		"Encrypt": func() error { _, _, err := p.Encrypt(ctx, ref, []byte("x"), nil); return err },
		"Decrypt": func() error { _, err := p.Decrypt(ctx, ref, iv, ct, nil); return err },
		"Random":  func() error { _, err := p.Random(ctx, 8); return err },
		"Ping":    func() error { return p.Ping(ctx) },
		"Inventory": func() error {
			inv, err := p.Inventory(ctx)
			for _, o := range inv {
				if o.Ref == ref {
					return err
				}
			}
			return errors.Join(err, errors.New("the inventory misses the key"))
		},
		"GenerateKey":    func() error { return p.GenerateKey(ctx, ref) },
		"SetDecryptOnly": func() error { return p.SetDecryptOnly(ctx, generated(t, p)) },
		"Destroy":        func() error { return p.Destroy(ctx, generated(t, p)) },
	} {
		for _, tc := range recoveryCases {
			t.Run(name+" after "+tc.name, func(t *testing.T) {
				tc.reset(t, rawSession(t, p))
				if err := op(); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			})
		}
	}
}

// TestRecoveryFailure: when recovery cannot find the token, the call fails
// with ErrUnavailable after one retry (no loop), and a later call recovers.
func TestRecoveryFailure(t *testing.T) {
	p := openToken(t, nil)
	ctx := testCtx(t)
	ref := generated(t, p)
	r := rawSession(t, p)
	p.mu.Lock()
	label := p.cfg.TokenLabel
	p.cfg.TokenLabel, p.slot = "no-such-token", 0xdead // as if the token were gone
	p.mu.Unlock()
	if err := r.c.Finalize(); err != nil {
		t.Fatal(err)
	}
	r.gone = true
	for i := 0; i < 2; i++ {
		resets := p.Stats().Resets
		if _, _, err := p.Encrypt(ctx, ref, []byte("x"), nil); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Encrypt with the token gone = %v, want ErrUnavailable", err)
		}
		if got := p.Stats().Resets - resets; got != 1 {
			t.Errorf("one failed call made %d recovery attempts, want 1", got)
		}
	}
	if err := p.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping with the token gone = %v, want ErrUnavailable", err)
	}
	p.mu.Lock()
	p.cfg.TokenLabel = label // the token is back (the slot is found again)
	p.mu.Unlock()
	if _, _, err := p.Encrypt(ctx, ref, []byte("x"), nil); err != nil {
		t.Fatalf("Encrypt once the token is back: %v", err)
	}
}

// TestStaleHandleAfterReset: object handles are renumbered after a module
// reset; a handle of an older generation is never used.
func TestStaleHandleAfterReset(t *testing.T) {
	p := sharedToken(t)
	ctx := testCtx(t)
	ref := generated(t, p)
	if _, _, err := p.Encrypt(ctx, ref, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	p.hmu.RLock()
	old := p.handles[string(ref.ID())]
	p.hmu.RUnlock()
	recoveryCases[2].reset(t, rawSession(t, p))
	if err := p.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	err := p.doGen(ctx, old.gen, func(*pkcs11.Ctx, pkcs11.SessionHandle) error {
		t.Error("fn ran with a handle of an older generation")
		return nil
	})
	if !hasCode(err, staleHandleCodes) {
		t.Errorf("doGen with an old generation = %v, want a stale-handle code", err)
	}
}

// TestOldSessionIsNotClosedOnTheNewModuleInstance: a session borrowed
// before the module was initialised again and returned after it must not be
// closed by number: after C_Initialize the number names a new session,
// another caller's.
func TestOldSessionIsNotClosedOnTheNewModuleInstance(t *testing.T) {
	p := sharedToken(t)
	ctx := testCtx(t)
	if err := p.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// Hold every idle session, so that after the restart the pool opens
	// sessions whose numbers start again where the held ones were.
	var held []session
	for {
		p.pool.mu.Lock()
		n := len(p.pool.idle)
		p.pool.mu.Unlock()
		if n == 0 {
			break
		}
		s, err := p.pool.get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, s)
	}
	recoveryCases[2].reset(t, rawSession(t, p))
	// Another call finds the module restarted and recovers (hard reset);
	// then it opens a new session, likely with a held one's number.
	_, _, gen := p.current()
	if err := p.reset(gen, true); err != nil {
		t.Fatal(err)
	}
	if err := p.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range held {
		p.pool.put(s, nil)
	}
	resets := p.Stats().Resets
	for i := 0; i < 3; i++ {
		if err := p.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.Stats().Resets - resets; got != 0 {
		t.Errorf("returning old sessions closed new ones: %d more resets", got)
	}
}
