package hsm

import (
	"crypto/rand"
	"testing"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/internal/byok"
	"github.com/miekg/pkcs11"
)

// Attacks of issue 16 by someone else with the user PIN, through a PKCS#11
// session of their own on the same token (here beside p's pool; the
// attacks that depend on being another process run in one:
// pinholder_process_test.go).

// copyAttempt is C_CopyObject of h into a token object the attacker owns.
func (r *raw) copyAttempt(h pkcs11.ObjectHandle) error {
	r.t.Helper()
	cp, err := r.c.CopyObject(r.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, "copy")})
	if err == nil {
		r.c.DestroyObject(r.sh, cp)
	}
	return err
}

// Item 3: no object of this service can be copied, so none outlives its
// destruction in a copy.
func TestCopiesRefused(t *testing.T) {
	p := sharedToken(t)
	ctx := testCtx(t)
	r := rawSession(t, p)
	version := generated(t, p)

	wrapID := uuid.NewString()
	pub, err := p.GenerateWrappingKey(ctx, wrapID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.DestroyWrappingKey(testCtx(t), wrapID) })
	material := make([]byte, 32)
	rand.Read(material)
	alg := p.WrappingAlgorithms()[0]
	wrapped, err := byok.Wrap(alg, pub, material)
	if err != nil {
		t.Fatal(err)
	}
	imported := newRef()
	if err := p.Import(ctx, wrapID, alg, wrapped, imported); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Destroy(testCtx(t), imported) })
	_, wrapCKAID := wrapRef(wrapID)
	wrapKeys, err := findByID(r.c, r.sh, wrapCKAID, 0, 4)
	if err != nil || len(wrapKeys) == 0 {
		t.Fatalf("the wrapping key pair: %v, %v", wrapKeys, err)
	}

	objects := map[string]pkcs11.ObjectHandle{"version": r.one(version), "imported version": r.one(imported)}
	for i, h := range wrapKeys {
		objects["wrapping key "+string(rune('a'+i))] = h
	}
	for name, h := range objects {
		if err := r.copyAttempt(h); !hasCode(err, []uint{ckrActionProhibited}) {
			t.Errorf("C_CopyObject of the %s = %v, want CKR_ACTION_PROHIBITED", name, err)
		}
		if err := r.c.SetAttributeValue(r.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, true)}); err == nil {
			t.Errorf("the %s was made copyable again", name)
		}
	}
	if err := p.Destroy(ctx, version); err != nil {
		t.Fatal(err)
	}
	if hs := r.find(version); len(hs) != 0 {
		t.Errorf("%d objects with the destroyed version's id", len(hs))
	}
}
