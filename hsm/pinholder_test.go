package hsm

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"unsafe"

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
	if p.cfg.Profile.LacksCopyable {
		t.Skipf("profile %s: the token does not know CKA_COPYABLE, and copies its objects", p.cfg.Profile.Name)
	}
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

// Item 4: a version can do AES-GCM and nothing else. AES-ECB (which gives
// GCM's hash key E_K(0)) is refused; switching CKA_DERIVE on, which SoftHSM
// allows, still derives nothing (an ECB oracle that would ignore
// CKA_ENCRYPT=false); the allowed mechanisms cannot be widened. The
// inventory reports the switched attribute and Repair sets it back.
func TestVersionOnlyDoesGCM(t *testing.T) {
	p := sharedToken(t)
	if p.cfg.Profile.LacksAllowedMechanisms {
		t.Skipf("profile %s: the token does not know CKA_ALLOWED_MECHANISMS", p.cfg.Profile.Name)
	}
	ctx := testCtx(t)
	r := rawSession(t, p)
	ref := generated(t, p)
	h := r.one(ref)

	ecb := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}
	if err := r.c.EncryptInit(r.sh, ecb, h); !hasCode(err, []uint{pkcs11.CKR_MECHANISM_INVALID}) {
		t.Errorf("C_EncryptInit(CKM_AES_ECB) = %v, want CKR_MECHANISM_INVALID", err)
	}
	widen := pkcs11.NewAttribute(pkcs11.CKA_ALLOWED_MECHANISMS, mechanismList(pkcs11.CKM_AES_GCM, pkcs11.CKM_AES_ECB))
	if err := r.c.SetAttributeValue(r.sh, h, []*pkcs11.Attribute{widen}); err == nil {
		t.Error("CKA_ALLOWED_MECHANISMS was widened")
	}
	if err := r.c.SetAttributeValue(r.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_DERIVE, true)}); err != nil {
		t.Fatalf("switching CKA_DERIVE on (SoftHSM allows it): %v", err)
	}
	derive := ecbDerive(t, make([]byte, 32))
	derived, err := r.c.DeriveKey(r.sh, derive, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
	})
	if err == nil {
		r.c.DestroyObject(r.sh, derived)
		t.Error("C_DeriveKey(CKM_AES_ECB_ENCRYPT_DATA) from the version succeeded: an ECB oracle")
	} else if !hasCode(err, []uint{pkcs11.CKR_MECHANISM_INVALID}) {
		t.Errorf("C_DeriveKey(CKM_AES_ECB_ENCRYPT_DATA) = %v, want CKR_MECHANISM_INVALID", err)
	}

	inv := inventoryOf(t, p, ref)
	if len(inv) != 1 || inv[0].Drift != "CKA_DERIVE=true" || !inv[0].Generated {
		t.Fatalf("inventory = %+v, want Drift CKA_DERIVE=true, Generated", inv)
	}
	fixed, err := p.Repair(ctx, ref)
	if err != nil || len(fixed) != 1 || fixed[0] != "CKA_DERIVE=false" {
		t.Fatalf("Repair = %v, %v; want [CKA_DERIVE=false]", fixed, err)
	}
	if v, _, err := boolAttr(r.c, r.sh, h, pkcs11.CKA_DERIVE); err != nil || v {
		t.Errorf("CKA_DERIVE after Repair = %v, %v", v, err)
	}
	if inv := inventoryOf(t, p, ref); len(inv) != 1 || inv[0].Drift != "" {
		t.Errorf("inventory after Repair = %+v, want no drift", inv)
	}
	if fixed, err := p.Repair(ctx, ref); err != nil || len(fixed) != 0 {
		t.Errorf("second Repair = %v, %v; want nothing to do", fixed, err)
	}
}

// An object made before CKA_ALLOWED_MECHANISMS and CKA_COPYABLE=false were
// set (or planted without them) is reported, and Repair says it cannot set
// them back.
func TestRepairReportsWhatItCannotSet(t *testing.T) {
	p := sharedToken(t)
	if p.cfg.Profile.LacksCopyable || p.cfg.Profile.LacksAllowedMechanisms {
		t.Skipf("profile %s: the token does not know CKA_COPYABLE or CKA_ALLOWED_MECHANISMS", p.cfg.Profile.Name)
	}
	r := rawSession(t, p)
	ref := newRef()
	r.generate(ref, pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, true), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true))
	inv := inventoryOf(t, p, ref)
	want := "CKA_SIGN=true, CKA_COPYABLE=true, CKA_ALLOWED_MECHANISMS empty (every mechanism)"
	if len(inv) != 1 || inv[0].Drift != want {
		t.Fatalf("inventory = %+v, want the drift %q", inv, want)
	}
	fixed, err := p.Repair(testCtx(t), ref)
	if !errors.Is(err, ErrAttributeMismatch) || len(fixed) != 1 || fixed[0] != "CKA_SIGN=false" {
		t.Fatalf("Repair = %v, %v; want [CKA_SIGN=false] and ErrAttributeMismatch", fixed, err)
	}
}

// Wrapping keys are session objects of the keeper session: they end with
// it (a token reset, Close, a restart), and an import with one is then
// ErrObjectNotFound, which tells the customer to get new parameters. A
// new wrapping key works at once.
func TestWrappingKeysEndWithTheKeeper(t *testing.T) {
	p := openToken(t, nil)
	ctx := testCtx(t)
	id := uuid.NewString()
	pub, err := p.GenerateWrappingKey(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	material := make([]byte, 32)
	rand.Read(material)
	alg := p.WrappingAlgorithms()[0]
	wrapped, _ := byok.Wrap(alg, pub, material)
	_, _, gen := p.current()
	if err := p.reset(gen, false); err != nil {
		t.Fatal(err)
	}
	ref := newRef()
	if err := p.Import(ctx, id, alg, wrapped, ref); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("import after a reset = %v, want ErrObjectNotFound", err)
	}
	r := rawSession(t, p)
	_, ckaID := wrapRef(id)
	if hs, err := findByID(r.c, r.sh, ckaID, 0, 4); err != nil || len(hs) != 0 {
		t.Errorf("the old wrapping key pair: %d objects, %v; want none", len(hs), err)
	}
	if err := p.DestroyWrappingKey(ctx, id); err != nil {
		t.Errorf("destroying a wrapping key that ended: %v", err)
	}
	id2 := uuid.NewString()
	pub2, err := p.GenerateWrappingKey(ctx, id2)
	if err != nil {
		t.Fatal(err)
	}
	wrapped2, _ := byok.Wrap(alg, pub2, material)
	if err := p.Import(ctx, id2, alg, wrapped2, ref); err != nil {
		t.Fatalf("import with a new wrapping key: %v", err)
	}
	t.Cleanup(func() { p.Destroy(context.Background(), ref) })
}

// ecbDerive is CKM_AES_ECB_ENCRYPT_DATA with data: its
// CK_KEY_DERIVATION_STRING_DATA {pData, ulLen} has the layout of a
// one-attribute template without its type.
func ecbDerive(t *testing.T, data []byte) []*pkcs11.Mechanism {
	param, release := attrTemplate([]*pkcs11.Attribute{{Value: data}})
	t.Cleanup(release)
	return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB_ENCRYPT_DATA, param[unsafe.Sizeof(uint(0)):])}
}

// plantKnownKey is the attack of issue 16, item 1: the PIN holder derives
// an AES key whose value it knows (AES-ECB, under a key of its own, of
// data it chose) and gives it ref's id and label, hoping the service takes
// it as ref's version. It returns the key's value, proven by a GCM
// encryption in the token that Go opens with it.
func plantKnownKey(t *testing.T, p *PKCS11, r *raw, ref ObjectRef) []byte {
	t.Helper()
	base, err := r.c.GenerateKey(r.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true), pkcs11.NewAttribute(pkcs11.CKA_DERIVE, true)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.c.DestroyObject(r.sh, base)
	data := make([]byte, 32)
	rand.Read(data)
	if err := r.c.EncryptInit(r.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}, base); err != nil {
		t.Fatal(err)
	}
	value, err := r.c.Encrypt(r.sh, data)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := append(keyTemplate(ref), p.notCopyable()...) // as this service makes versions
	tmpl = append(tmpl, p.allowedAttr(p.versionMechanisms(false)...)...)
	h, err := r.c.DeriveKey(r.sh, ecbDerive(t, data), base, tmpl)
	if err != nil {
		t.Fatalf("C_DeriveKey: %v", err)
	}
	t.Cleanup(func() { r.c.DestroyObject(r.sh, h) })
	var iv, ct []byte
	err = p.do(testCtx(t), func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		iv, ct, err = p.gcmEncrypt(c, sh, h, []byte("planted"), nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(value)
	gcm, _ := cipher.NewGCM(block)
	if pt, err := gcm.Open(nil, iv, ct, nil); err != nil || string(pt) != "planted" {
		t.Fatalf("the planted key is not the one the attacker knows: %v", err)
	}
	return value
}

// Item 1, token side: a planted object is never taken for a version. A
// name with a nonce is never adopted at all, whatever the object's
// attributes and whether or not the token reports CKA_LOCAL truthfully;
// a name without one (the audit seal key of an installation made before
// nonces) is taken only if the token attests it generated the object, and
// SoftHSM's CKA_LOCAL=false gives the derived key away.
func TestPlantedVersionIsNotAdopted(t *testing.T) {
	p := sharedToken(t)
	r := rawSession(t, p)
	noLocal := openToken(t, func(c *Config) { c.Profile.ReportsLocal = false }) // as NSS softoken

	legacy := newRef()
	plantKnownKey(t, p, r, legacy)
	inv := inventoryOf(t, p, legacy)
	if len(inv) != 1 || inv[0].Local || inv[0].Generated {
		t.Fatalf("inventory of the planted key = %+v, want Local and Generated false", inv)
	}
	if err := p.GenerateKey(testCtx(t), legacy); !errors.Is(err, ErrAttributeMismatch) {
		t.Errorf("GenerateKey over a planted key without a nonce = %v, want ErrAttributeMismatch (CKA_LOCAL=false)", err)
	}

	for name, q := range map[string]*PKCS11{"CKA_LOCAL reported": p, "CKA_LOCAL not reported": noLocal} {
		ref, err := NewRef(uuid.New(), 2)
		if err != nil {
			t.Fatal(err)
		}
		plantKnownKey(t, p, r, ref)
		if err := q.GenerateKey(testCtx(t), ref); !errors.Is(err, ErrAmbiguousObject) {
			t.Errorf("%s: GenerateKey over a planted key with the nonce = %v, want ErrAmbiguousObject", name, err)
		}
	}
}

// Names with a nonce: the label carries it, and ParseLabel gives it back;
// a name without one keeps the form versions had before nonces.
func TestRefNonce(t *testing.T) {
	ref, err := NewRef(uuid.New(), 7)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Legacy() || len(ref.ID()) != 20+NonceLen {
		t.Fatalf("NewRef = %+v (id of %d bytes)", ref, len(ref.ID()))
	}
	other, _ := NewRef(ref.KeyID, 7)
	if other == ref {
		t.Fatal("two NewRef calls drew the same nonce")
	}
	for _, r := range []ObjectRef{ref, {KeyID: ref.KeyID, Version: 7}} {
		got, err := ParseLabel(r.Label())
		if err != nil || got != r {
			t.Errorf("ParseLabel(%q) = %+v, %v; want %+v", r.Label(), got, err, r)
		}
	}
	if l := (ObjectRef{KeyID: ref.KeyID, Version: 7}).Label(); l != LabelPrefix+ref.KeyID.String()+"/v7" {
		t.Errorf("a name without a nonce changed: %q", l)
	}
	for _, bad := range []string{ref.Label() + "00", ref.Label()[:len(ref.Label())-2], LabelPrefix + ref.KeyID.String() + "/v7/", LabelPrefix + ref.KeyID.String() + "/v7/" + strings.Repeat("0", 2*NonceLen)} {
		if _, err := ParseLabel(bad); err == nil {
			t.Errorf("ParseLabel(%q) accepted", bad)
		}
	}
}

// Item 1, after the version exists: its name is visible in the token.
// Someone with the PIN destroys the object and plants a key they know
// under the same name; the next use searches again and refuses the planted
// object (the token does not attest it generated it) instead of encrypting
// under the attacker's key. Where the token does not report CKA_LOCAL
// truthfully the derived key passes: docs/access.md says so.
func TestReplacedVersionIsRefused(t *testing.T) {
	p := sharedToken(t)
	if !p.cfg.Profile.ReportsLocal || p.cfg.Profile.ReplacesDuplicateID {
		t.Skipf("profile %s: a derived key is not told apart from a generated one", p.cfg.Profile.Name)
	}
	ctx := testCtx(t)
	r := rawSession(t, p)
	ref, err := NewRef(uuid.New(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.GenerateKey(ctx, ref); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Destroy(context.Background(), ref) })
	if _, _, err := p.Encrypt(ctx, ref, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	if err := r.c.DestroyObject(r.sh, r.one(ref)); err != nil {
		t.Fatal(err)
	}
	known := plantKnownKey(t, p, r, ref)
	iv, ct, err := p.Encrypt(ctx, ref, []byte("secret"), nil)
	if !errors.Is(err, ErrAttributeMismatch) {
		block, _ := aes.NewCipher(known)
		gcm, _ := cipher.NewGCM(block)
		_, oerr := gcm.Open(nil, iv, ct, nil)
		t.Fatalf("encrypt after the replacement = %v (opens with the attacker's key: %v), want ErrAttributeMismatch", err, oerr == nil)
	}
	// An imported version's name says so: its object (not generated) is found.
	imp, _ := NewImportRef(uuid.New(), 1)
	if !imp.Imported() || ref.Imported() {
		t.Fatalf("Imported: %v %v", imp.Imported(), ref.Imported())
	}
}
