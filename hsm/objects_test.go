package hsm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/miekg/pkcs11"
)

// TestKeyMaterialStaysInside: the token, not this code, refuses to reveal
// the key or to make it exportable.
func TestKeyMaterialStaysInside(t *testing.T) {
	p := sharedToken(t)
	ref := generated(t, p)
	r := rawSession(t, p)
	h := r.one(ref)

	if v, err := r.c.GetAttributeValue(r.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}); !hasCode(err, []uint{pkcs11.CKR_ATTRIBUTE_SENSITIVE}) {
		t.Errorf("reading CKA_VALUE = %v, %v; want CKR_ATTRIBUTE_SENSITIVE", v, err)
	}
	for _, tc := range []struct {
		name string
		attr *pkcs11.Attribute
	}{
		{"CKA_EXTRACTABLE=true", pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)},
		{"CKA_SENSITIVE=false", pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false)},
	} {
		err := r.c.SetAttributeValue(r.sh, h, []*pkcs11.Attribute{tc.attr})
		if !hasCode(err, []uint{pkcs11.CKR_ATTRIBUTE_READ_ONLY}) {
			t.Errorf("setting %s = %v, want CKR_ATTRIBUTE_READ_ONLY", tc.name, err)
		}
	}
	got, err := r.c.GetAttributeValue(r.sh, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_ID, nil), pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[0].Value, ref.ID()) || string(got[1].Value) != ref.Label() {
		t.Errorf("CKA_ID %x, CKA_LABEL %q; want %x, %q", got[0].Value, got[1].Value, ref.ID(), ref.Label())
	}
	inv := inventoryOf(t, p, ref)
	want := ObjectInfo{Ref: ref, Label: ref.Label(), Encrypt: true, Decrypt: true, Sensitive: true,
		NeverExtractable: true, AlwaysSensitive: true, Local: true}
	if len(inv) != 1 || inv[0] != want {
		t.Errorf("inventory = %+v, want [%+v]", inv, want)
	}
}

func TestGenerateKeyIsIdempotent(t *testing.T) {
	p := sharedToken(t)
	ref := generated(t, p)
	if err := p.GenerateKey(testCtx(t), ref); err != nil {
		t.Fatalf("second GenerateKey: %v", err)
	}
	// A restarted process (empty cache) finishing a crashed rotation.
	if err := openToken(t, nil).GenerateKey(testCtx(t), ref); err != nil {
		t.Fatalf("GenerateKey from a fresh PKCS11: %v", err)
	}
	if n := len(inventoryOf(t, p, ref)); n != 1 {
		t.Errorf("%d objects after three GenerateKey calls, want 1", n)
	}
}

// TestGenerateKeyRefusesForeignObject: an existing object with the id but
// weaker attributes is refused, and left for the operator (not destroyed).
func TestGenerateKeyRefusesForeignObject(t *testing.T) {
	p := sharedToken(t)
	r := rawSession(t, p)
	for _, tc := range []struct {
		name string
		attr *pkcs11.Attribute
	}{
		{"extractable", pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)},
		{"not sensitive", pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false)},
		{"can wrap", pkcs11.NewAttribute(pkcs11.CKA_WRAP, true)},
		{"can derive", pkcs11.NewAttribute(pkcs11.CKA_DERIVE, true)},
		{"not private", pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false)},
		{"session object", pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false)},
		{"AES-128", pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 16)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := newRef()
			r.generate(ref, tc.attr)
			err := p.GenerateKey(testCtx(t), ref)
			if !errors.Is(err, ErrAttributeMismatch) {
				t.Fatalf("GenerateKey = %v, want ErrAttributeMismatch", err)
			}
			if n := len(r.find(ref)); n != 1 {
				t.Errorf("%d objects after the refusal, want the 1 foreign object kept", n)
			}
		})
	}
}

// TestAmbiguousObject: two objects with one CKA_ID fail closed everywhere.
func TestAmbiguousObject(t *testing.T) {
	p := sharedToken(t)
	r := rawSession(t, p)
	ref := newRef()
	r.generate(ref)
	r.generate(ref)
	ctx := testCtx(t)
	if _, _, err := p.Encrypt(ctx, ref, []byte("x"), nil); !errors.Is(err, ErrAmbiguousObject) {
		t.Errorf("Encrypt = %v, want ErrAmbiguousObject", err)
	}
	if err := p.GenerateKey(ctx, ref); !errors.Is(err, ErrAmbiguousObject) {
		t.Errorf("GenerateKey = %v, want ErrAmbiguousObject", err)
	}
	if err := p.SetDecryptOnly(ctx, ref); !errors.Is(err, ErrAmbiguousObject) {
		t.Errorf("SetDecryptOnly = %v, want ErrAmbiguousObject", err)
	}
	if err := p.Destroy(ctx, ref); !errors.Is(err, ErrAmbiguousObject) {
		t.Errorf("Destroy = %v, want ErrAmbiguousObject", err)
	}
	if n := len(r.find(ref)); n != 2 {
		t.Errorf("%d objects left, want both", n)
	}
}

func TestSetDecryptOnly(t *testing.T) {
	p := sharedToken(t)
	ref := generated(t, p)
	ctx := testCtx(t)
	iv, ct, err := p.Encrypt(ctx, ref, []byte("before"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // idempotent
		if err := p.SetDecryptOnly(ctx, ref); err != nil {
			t.Fatalf("SetDecryptOnly #%d: %v", i+1, err)
		}
	}
	if _, _, err := p.Encrypt(ctx, ref, []byte("after"), nil); !errors.Is(err, ErrNotPermitted) {
		t.Errorf("Encrypt with a decrypt-only version = %v, want ErrNotPermitted", err)
	}
	if pt, err := p.Decrypt(ctx, ref, iv, ct, []byte("aad")); err != nil || string(pt) != "before" {
		t.Errorf("Decrypt of an earlier ciphertext = %q, %v", pt, err)
	}
	if inv := inventoryOf(t, p, ref); len(inv) != 1 || inv[0].Encrypt || !inv[0].Decrypt {
		t.Errorf("inventory = %+v, want Encrypt=false Decrypt=true", inv)
	}
	// Anyone with the PIN can turn it back on; the inventory shows it, so
	// the reconciler can turn it off again.
	r := rawSession(t, p)
	if err := r.c.SetAttributeValue(r.sh, r.one(ref), []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true)}); err != nil {
		t.Fatal(err)
	}
	if inv := inventoryOf(t, p, ref); len(inv) != 1 || !inv[0].Encrypt {
		t.Errorf("inventory after the outsider = %+v, want Encrypt=true", inv)
	}
	if err := p.SetDecryptOnly(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if err := p.SetDecryptOnly(ctx, newRef()); !errors.Is(err, ErrObjectNotFound) {
		t.Errorf("SetDecryptOnly of a missing object = %v, want ErrObjectNotFound", err)
	}
}

func TestSetDecryptOnlyWithoutFlipSupport(t *testing.T) {
	p := openToken(t, func(c *Config) { c.Profile.SupportsEncryptFlip = false })
	ref := generated(t, p)
	if err := p.SetDecryptOnly(testCtx(t), ref); err != nil {
		t.Fatal(err)
	}
	if inv := inventoryOf(t, p, ref); len(inv) != 1 || !inv[0].Encrypt {
		t.Errorf("inventory = %+v; without flip support the object is left as it is", inv)
	}
}

func TestDestroy(t *testing.T) {
	p := sharedToken(t)
	ctx := testCtx(t)
	ref := generated(t, p)
	if _, _, err := p.Encrypt(ctx, ref, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := p.Destroy(ctx, ref); err != nil {
			t.Fatalf("Destroy #%d: %v", i+1, err)
		}
	}
	if inv := inventoryOf(t, p, ref); len(inv) != 0 {
		t.Errorf("inventory after Destroy = %+v", inv)
	}
	if _, _, err := p.Encrypt(ctx, ref, []byte("x"), nil); !errors.Is(err, ErrObjectNotFound) {
		t.Errorf("Encrypt after Destroy = %v, want ErrObjectNotFound", err)
	}
	if err := p.Destroy(ctx, newRef()); err != nil {
		t.Errorf("Destroy of an object that never existed = %v", err)
	}
}

func TestInventoryListsOnlyOurObjects(t *testing.T) {
	p := sharedToken(t)
	ours := []ObjectRef{generated(t, p), generated(t, p)}
	foreign := newRef()
	rawSession(t, p).generate(foreign, pkcs11.NewAttribute(pkcs11.CKA_LABEL, "someone-else/key"))
	inv, err := p.Inventory(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[ObjectRef]bool{}
	for _, o := range inv {
		seen[o.Ref] = true
		if o.Label != o.Ref.Label() {
			t.Errorf("entry %+v: label does not match ref", o)
		}
	}
	for _, ref := range ours {
		if !seen[ref] {
			t.Errorf("inventory misses %s", ref)
		}
	}
	if seen[foreign] {
		t.Error("inventory lists an object with a foreign label")
	}
}

// TestHandleInvalidation: the object is destroyed behind the cache's back
// and made again by another PKCS11; the stale handle is dropped and the
// object found again, with one search.
func TestHandleInvalidation(t *testing.T) {
	p := sharedToken(t)
	ctx := testCtx(t)
	ref := generated(t, p)
	if _, _, err := p.Encrypt(ctx, ref, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	r := rawSession(t, p)
	if err := r.c.DestroyObject(r.sh, r.one(ref)); err != nil {
		t.Fatal(err)
	}
	if err := openToken(t, nil).GenerateKey(ctx, ref); err != nil {
		t.Fatal(err)
	}
	before := p.Stats().Searches
	iv, ct, err := p.Encrypt(ctx, ref, []byte("again"), nil)
	if err != nil {
		t.Fatalf("Encrypt after the object was re-made: %v", err)
	}
	if got := p.Stats().Searches - before; got != 1 {
		t.Errorf("%d searches to re-find the object, want 1", got)
	}
	if pt, err := p.Decrypt(ctx, ref, iv, ct, nil); err != nil || string(pt) != "again" {
		t.Errorf("Decrypt = %q, %v", pt, err)
	}
}
