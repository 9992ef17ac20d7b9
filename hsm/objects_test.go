package hsm

import (
	"bytes"
	"errors"
	"strings"
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
	// CKA_LOCAL as the token reports it: NSS softoken says false for the
	// keys it generated (pitfalls item 52), so nothing relies on it.
	want := ObjectInfo{Ref: ref, Label: ref.Label(), Encrypt: true, Decrypt: true, Sensitive: true,
		NeverExtractable: true, AlwaysSensitive: true, Local: p.cfg.Profile.ReportsLocal, Generated: true}
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
// A token that makes every secret key sensitive and private whatever the
// template says (NSS softoken, Profile.ForcesSensitive) gives a key that
// is as strong as one of ours: it truly cannot be read, and is reused.
func TestGenerateKeyRefusesForeignObject(t *testing.T) {
	p := sharedToken(t)
	r := rawSession(t, p)
	for _, tc := range []struct {
		name   string
		attr   *pkcs11.Attribute
		forced bool // the token ignores the attribute when ForcesSensitive
	}{
		{"extractable", pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true), false},
		{"not sensitive", pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false), true},
		{"can wrap", pkcs11.NewAttribute(pkcs11.CKA_WRAP, true), false},
		{"can derive", pkcs11.NewAttribute(pkcs11.CKA_DERIVE, true), false},
		{"not private", pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false), true},
		{"session object", pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), false},
		{"AES-128", pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 16), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := newRef()
			h := r.generate(ref, tc.attr)
			err := p.GenerateKey(testCtx(t), ref)
			if tc.forced && p.cfg.Profile.ForcesSensitive {
				if err != nil {
					t.Fatalf("GenerateKey over a key the token made sensitive and private anyway: %v", err)
				}
				if _, err := attr(r.c, r.sh, h, pkcs11.CKA_VALUE); !hasCode(err, []uint{pkcs11.CKR_ATTRIBUTE_SENSITIVE}) {
					t.Fatalf("the token said the key is sensitive, but reading CKA_VALUE = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrAttributeMismatch) {
				t.Fatalf("GenerateKey = %v, want ErrAttributeMismatch", err)
			}
			if n := len(r.find(ref)); n != 1 {
				t.Errorf("%d objects after the refusal, want the 1 foreign object kept", n)
			}
		})
	}
}

// TestGenerateKeyRefusesPlantedMaterial: a key created from known material
// (C_CreateObject with a CKA_VALUE) under a version's id, even sensitive
// and not extractable, is never adopted: its CKA_ALWAYS_SENSITIVE and
// CKA_NEVER_EXTRACTABLE are false on both tokens. (CKA_LOCAL would say the
// same on SoftHSM, but NSS softoken reports it false for its own keys too.)
func TestGenerateKeyRefusesPlantedMaterial(t *testing.T) {
	p := sharedToken(t)
	r := rawSession(t, p)
	ref := newRef()
	tmpl := append(keyTemplate(ref), pkcs11.NewAttribute(pkcs11.CKA_VALUE, make([]byte, 32)))
	for i, a := range tmpl {
		if a.Type == pkcs11.CKA_VALUE_LEN { // not allowed in C_CreateObject
			tmpl = append(tmpl[:i], tmpl[i+1:]...)
			break
		}
	}
	h, err := r.c.CreateObject(r.sh, tmpl)
	if err != nil {
		t.Fatalf("raw C_CreateObject: %v", err)
	}
	t.Cleanup(func() { r.c.DestroyObject(r.sh, h) })
	if err := p.GenerateKey(testCtx(t), ref); !errors.Is(err, ErrAttributeMismatch) {
		t.Fatalf("GenerateKey over planted material = %v, want ErrAttributeMismatch", err)
	}
	if n := len(r.find(ref)); n != 1 {
		t.Errorf("%d objects after the refusal, want the planted one kept for the operator", n)
	}
}

// TestAmbiguousObject: two objects with one CKA_ID fail closed everywhere.
// On a token that replaces a token object of the same class and id
// (Profile.ReplacesDuplicateID: NSS softoken) the second is a session
// object.
func TestAmbiguousObject(t *testing.T) {
	p := sharedToken(t)
	r := rawSession(t, p)
	ref := newRef()
	r.generate(ref)
	if p.cfg.Profile.ReplacesDuplicateID {
		r.generate(ref, pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false))
	} else {
		r.generate(ref)
	}
	ctx := testCtx(t)
	// A name without a nonce: the error says what it means and where the
	// remedy is; GenerateKey waits for a race to settle, then refuses
	// too, destroying neither.
	_, _, err := p.Encrypt(ctx, ref, []byte("x"), nil)
	if !errors.Is(err, ErrAmbiguousObject) || !strings.Contains(err.Error(), "docs/operations.md") {
		t.Errorf("Encrypt = %v, want ErrAmbiguousObject naming the remedy", err)
	}
	if err := p.GenerateKey(ctx, ref); !errors.Is(err, ErrAmbiguousObject) || !strings.Contains(err.Error(), "docs/operations.md") {
		t.Errorf("GenerateKey = %v, want ErrAmbiguousObject naming the remedy", err)
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
