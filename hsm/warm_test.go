package hsm

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/miekg/pkcs11"
)

// Warm caches the handle of every version the request path's search would
// take, from one scan: their first use afterwards searches nothing. What
// the search refuses (a planted key the token does not attest it
// generated, two objects under one name) is not cached, and its first use
// is refused as before.
func TestWarm(t *testing.T) {
	maker := openToken(t, nil)
	ctx := testCtx(t)
	var refs []ObjectRef
	for i := range 6 {
		ref := newRef() // a name without a nonce, as versions made before them
		if i%2 == 0 {
			var err error
			if ref, err = NewRef(uuid.New(), 1+i); err != nil {
				t.Fatal(err)
			}
		}
		if err := maker.GenerateKey(ctx, ref); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { maker.Destroy(context.Background(), ref) })
		refs = append(refs, ref)
	}
	r := rawSession(t, maker)
	planted, err := NewRef(uuid.New(), 1)
	if err != nil {
		t.Fatal(err)
	}
	plantKnownKey(t, maker, r, planted)
	dup := newRef()
	r.generate(dup)
	r.generate(dup)

	p := openToken(t, nil) // a fresh process's cache
	n, err := p.Warm(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n < len(refs) {
		t.Fatalf("Warm cached %d handles, want at least %d", n, len(refs))
	}
	before := p.Stats().Searches
	for _, ref := range refs {
		iv, ct, err := p.Encrypt(ctx, ref, []byte("warm"), nil)
		if err != nil {
			t.Fatalf("encrypt under %s after Warm: %v", ref, err)
		}
		if pt, err := maker.Decrypt(ctx, ref, iv, ct, nil); err != nil || string(pt) != "warm" {
			t.Fatalf("the warmed handle of %s is another key: %q %v", ref, pt, err)
		}
	}
	if s := p.Stats().Searches; s != before {
		t.Errorf("%d searches on the first use of warmed keys, want none", s-before)
	}

	probed := false // whether anything Warm left out was used below
	if p.cfg.Profile.ReportsLocal && !p.cfg.Profile.ReplacesDuplicateID {
		probed = true
		if _, _, err := p.Encrypt(ctx, planted, []byte("secret"), nil); !errors.Is(err, ErrAttributeMismatch) {
			t.Errorf("encrypt under a planted key after Warm = %v, want ErrAttributeMismatch", err)
		}
	}
	if !p.cfg.Profile.ReplacesDuplicateID {
		probed = true
		_, _, werr := p.Encrypt(ctx, dup, []byte("x"), nil)
		_, _, serr := openToken(t, nil).Encrypt(ctx, dup, []byte("x"), nil) // the search, unwarmed
		if werr == nil || serr == nil || werr.Error() != serr.Error() {
			t.Errorf("two objects under one name: after Warm %v, by search %v; want the same refusal", werr, serr)
		}
	}
	if s := p.Stats().Searches; probed && s == before {
		t.Error("what Warm left out was not searched on its first use")
	}
}

// refFromID inverts ObjectRef.ID and refuses what this service never names.
func TestRefFromID(t *testing.T) {
	withNonce, _ := NewRef(uuid.New(), 7)
	for _, ref := range []ObjectRef{newRef(), withNonce, {KeyID: uuid.New(), Version: 1<<31 - 1}} {
		got, ok := refFromID(ref.ID())
		if !ok || got != ref {
			t.Errorf("refFromID(%s.ID()) = %v %v", ref, got, ok)
		}
	}
	zeroVersion := newRef().ID()
	zeroVersion[19] = 0
	zeroNonce := append(newRef().ID(), make([]byte, NonceLen)...)
	for name, id := range map[string][]byte{"empty": nil, "short": make([]byte, 19), "odd length": make([]byte, 21),
		"version 0": zeroVersion, "all-zero nonce": zeroNonce} {
		if _, ok := refFromID(id); ok {
			t.Errorf("refFromID accepted %s", name)
		}
	}
}

// readWarm reads a version's name and attestation in one call: a key the
// token generated is attested, a planted one (imported material under a
// fresh name) is not, exactly as the one-by-one check decides.
func TestReadWarm(t *testing.T) {
	p := openToken(t, nil)
	ctx := testCtx(t)
	made, err := NewRef(uuid.New(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.GenerateKey(ctx, made); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Destroy(context.Background(), made) })
	planted, err := NewRef(uuid.New(), 1)
	if err != nil {
		t.Fatal(err)
	}
	plantKnownKey(t, p, rawSession(t, p), planted)
	for _, tt := range []struct {
		ref  ObjectRef
		want bool
	}{{made, true}, {planted, false}} {
		err := p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
			hs, err := p.findIn(c, sh, tt.ref)
			if err != nil || len(hs) != 1 {
				t.Fatalf("find %s: %v %d", tt.ref, err, len(hs))
			}
			id, attested, ok := readWarm(c, sh, hs[0], p.attestRules())
			if !ok || string(id) != string(tt.ref.ID()) {
				t.Errorf("%s: id %x ok %v", tt.ref, id, ok)
			}
			one := checkBools(c, sh, hs[0], p.attestRules(), tt.ref.String()) == nil
			if attested != tt.want || one != tt.want {
				t.Errorf("%s: attested in one call %v, one by one %v; want %v", tt.ref, attested, one, tt.want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
