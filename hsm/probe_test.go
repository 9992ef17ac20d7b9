package hsm

import (
	"errors"
	"testing"

	"github.com/miekg/pkcs11"
)

// findProbe lists the probe keys on r's session.
func (r *raw) findProbe() []pkcs11.ObjectHandle {
	r.t.Helper()
	hs, err := findByID(r.c, r.sh, probeID, pkcs11.CKO_SECRET_KEY, 10)
	if err != nil {
		r.t.Fatalf("raw find of the probe key: %v", err)
	}
	return hs
}

// TestProbeKey: Open makes one probe key (sensitive, encrypt-only,
// outside the inventory), and Ping uses it without a search.
func TestProbeKey(t *testing.T) {
	p := sharedToken(t)
	ctx := testCtx(t)
	r := rawSession(t, p)
	hs := r.findProbe()
	if len(hs) < 1 {
		t.Fatal("Open made no probe key")
	}
	if err := checkBools(r.c, r.sh, hs[0], []boolRule{
		{pkcs11.CKA_TOKEN, "CKA_TOKEN", true, false},
		{pkcs11.CKA_SENSITIVE, "CKA_SENSITIVE", true, false},
		{pkcs11.CKA_EXTRACTABLE, "CKA_EXTRACTABLE", false, false},
		{pkcs11.CKA_DECRYPT, "CKA_DECRYPT", false, false},
	}, "probe key"); err != nil {
		t.Error(err)
	}
	inv, err := p.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range inv {
		if o.Label == probeLabel {
			t.Errorf("the inventory lists the probe key: %+v", o)
		}
	}
	if err := p.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	searches := p.Stats().Searches
	for i := 0; i < 20; i++ {
		if err := p.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.Stats().Searches - searches; got != 0 {
		t.Errorf("20 Pings searched the token %d times, want 0", got)
	}
}

// TestProbeKeyLost: a token that no longer shows the probe key is
// initialised again (when p is the module's only user in the process) and,
// as it then answers without the key, the key is made again; every key
// still works. With the module shared, Ping says unavailable instead of
// pulling the module from under its other user.
func TestProbeKeyLost(t *testing.T) {
	closeShared() // p must be the module's only user
	p := openToken(t, nil)
	ctx := testCtx(t)
	ref := generated(t, p)
	iv, ct, err := p.Encrypt(ctx, ref, []byte("kept"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	// Shared module: not initialised again, and Ping tells the truth.
	other := openToken(t, nil)
	r := rawSession(t, p)
	for _, h := range r.findProbe() {
		if err := r.c.DestroyObject(r.sh, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping without the probe key on a shared module = %v, want ErrUnavailable", err)
	}
	if got := p.Stats().Reinits; got != 0 {
		t.Fatalf("a shared module was initialised again (%d times)", got)
	}
	// A key missing from a token that shows none of its objects is no
	// answer: unavailable, never "not found".
	p.rmu.Lock()
	p.lastReinit = p.lastReinit.Add(-minReinitInterval)
	p.rmu.Unlock()
	if _, _, err := p.Encrypt(ctx, newRef(), []byte("x"), nil); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("Encrypt under a missing key while the probe key is missing = %v, want ErrUnavailable only", err)
	}
	if _, err := p.Inventory(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Inventory while the probe key is missing = %v, want ErrUnavailable", err)
	}
	other.Close()

	// Only user: initialised again, the key made again, everything works.
	p.rmu.Lock()
	p.lastReinit = p.lastReinit.Add(-minReinitInterval) // the attempt above counted
	p.rmu.Unlock()
	if err := p.Ping(ctx); err != nil {
		t.Fatalf("Ping once the module could be initialised again: %v", err)
	}
	r.gone = true // finalized: its session number may be someone else's now
	if got := p.Stats().Reinits; got != 1 {
		t.Errorf("Reinits = %d, want 1", got)
	}
	if n := len(rawSession(t, p).findProbe()); n != 1 {
		t.Errorf("%d probe keys after the repair, want 1", n)
	}
	if pt, err := p.Decrypt(ctx, ref, iv, ct, nil); err != nil || string(pt) != "kept" {
		t.Fatalf("Decrypt after the repair = %q, %v", pt, err)
	}
}
