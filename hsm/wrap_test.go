package hsm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/internal/byok"
	"github.com/miekg/pkcs11"
)

// Import round trip: material wrapped by a customer under the token's
// wrapping key is unwrapped into a version object that encrypts exactly as
// the material does in Go; its key check value matches; wrong keys and
// wrong lengths are refused and leave nothing behind.
func TestImportRoundTrip(t *testing.T) {
	p := sharedToken(t)
	ctx := testCtx(t)
	algs := p.WrappingAlgorithms()
	if len(algs) == 0 {
		t.Fatal("the token offers no wrapping algorithm")
	}
	id := uuid.NewString()
	pub, err := p.GenerateWrappingKey(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.DestroyWrappingKey(testCtx(t), id) })
	if pub.N.BitLen() != WrappingBits {
		t.Fatalf("wrapping key of %d bits", pub.N.BitLen())
	}
	material := make([]byte, 32)
	rand.Read(material)
	for _, alg := range algs {
		t.Run(alg, func(t *testing.T) {
			wrapped, err := byok.Wrap(alg, pub, material)
			if err != nil {
				t.Fatal(err)
			}
			ref := newRef()
			if err := p.Import(ctx, id, alg, wrapped, ref); err != nil {
				t.Fatalf("import: %v", err)
			}
			t.Cleanup(func() { p.Destroy(testCtx(t), ref) })
			iv, ct, err := p.Encrypt(ctx, ref, []byte("imported"), []byte("aad"))
			if err != nil {
				t.Fatal(err)
			}
			block, _ := aes.NewCipher(material)
			gcm, _ := cipher.NewGCM(block)
			if pt, err := gcm.Open(nil, iv, ct, []byte("aad")); err != nil || string(pt) != "imported" {
				t.Fatalf("the token's object is not the imported material: %v", err)
			}
			kcv, err := p.KeyCheckValue(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if want := gcm.Seal(nil, make([]byte, 12), make([]byte, 16), nil)[:8]; !bytes.Equal(kcv, want) {
				t.Errorf("key check value %x, want %x", kcv, want)
			}
			// AES-ECB, which gives GCM's hash key, is refused on imported
			// versions under caller-chosen IVs.
			// (A token without CKA_ALLOWED_MECHANISMS allows it: docs/access.md.)
			r := rawSession(t, p)
			err = r.c.EncryptInit(r.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}, r.one(ref))
			if err == nil {
				r.c.Encrypt(r.sh, make([]byte, 16)) // ends the operation
			}
			if !p.cfg.Profile.LacksAllowedMechanisms && !hasCode(err, []uint{pkcs11.CKR_MECHANISM_INVALID}) {
				t.Errorf("C_EncryptInit(CKM_AES_ECB) on the imported version = %v, want CKR_MECHANISM_INVALID", err)
			}
			inv, _ := p.Inventory(ctx)
			for _, o := range inv {
				if o.Ref == ref && (o.Extractable || !o.Sensitive || o.Local) {
					t.Errorf("imported object: %+v (want sensitive, not extractable, not local)", o)
				}
			}
		})
	}

	other, _ := rsa.GenerateKey(rand.Reader, WrappingBits)
	for _, alg := range algs { // every bad input, under every algorithm the token offers
		wrongKey, _ := byok.Wrap(alg, &other.PublicKey, material)
		short, _ := byok.Wrap(alg, pub, material[:16])
		// RFC 5649 pads 25 to 32 bytes to one length: only the token's trial
		// encryption tells 25 or 31 bytes from an AES-256 key on SoftHSM.
		odd25, _ := byok.Wrap(alg, pub, material[:25])
		odd31, _ := byok.Wrap(alg, pub, material[:31])
		for name, wrapped := range map[string][]byte{"another public key": wrongKey, "AES-128 material": short,
			"25-byte material": odd25, "31-byte material": odd31,
			"damaged": append([]byte{1}, wrongKey[1:]...), "empty": nil} {
			ref := newRef()
			err := p.Import(ctx, id, alg, wrapped, ref)
			if !errors.Is(err, ErrUnwrapFailed) {
				t.Errorf("%s, %s: %v, want ErrUnwrapFailed", alg, name, err)
			}
			if _, _, err := p.Encrypt(ctx, ref, []byte("x"), nil); !errors.Is(err, ErrObjectNotFound) {
				t.Errorf("%s, %s: an object was left behind: %v", alg, name, err)
			}
		}
	}
	wrongKey, _ := byok.Wrap(algs[len(algs)-1], &other.PublicKey, material)
	if err := p.Import(ctx, uuid.NewString(), algs[len(algs)-1], wrongKey, newRef()); !errors.Is(err, ErrObjectNotFound) {
		t.Errorf("an unknown wrapping key: %v, want ErrObjectNotFound", err)
	}
	// A destroyed wrapping key unwraps nothing, and destroying it twice is fine.
	good, _ := byok.Wrap(algs[len(algs)-1], pub, material)
	if err := p.DestroyWrappingKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := p.DestroyWrappingKey(ctx, id); err != nil {
		t.Errorf("destroying a missing wrapping key: %v", err)
	}
	if err := p.Import(ctx, id, algs[len(algs)-1], good, newRef()); !errors.Is(err, ErrObjectNotFound) {
		t.Errorf("import with a destroyed wrapping key: %v, want ErrObjectNotFound", err)
	}
}

// Under token-generated IVs the key check value is AES-ECB of a zero block
// (the token cannot make a deterministic GCM value then), so imported
// versions allow AES-ECB besides AES-GCM there, and only there. SoftHSM
// cannot import under that profile (its trial encryption would need the
// token's IV), so the check value is taken of an object with known
// material and the imported versions' mechanisms.
func TestKeyCheckValueUnderTokenIVs(t *testing.T) {
	p := openToken(t, nil)
	p.cfg.Profile.TokenGeneratesIV = true
	if got := p.versionMechanisms(true); !slices.Equal(got, []uint{pkcs11.CKM_AES_GCM, pkcs11.CKM_AES_ECB}) {
		t.Fatalf("imported versions under token IVs allow %x", got)
	}
	if got := p.versionMechanisms(false); !slices.Equal(got, []uint{pkcs11.CKM_AES_GCM}) {
		t.Fatalf("generated versions under token IVs allow %x", got)
	}
	r := rawSession(t, p)
	material := make([]byte, 32)
	rand.Read(material)
	ref := newRef()
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, material)}
	for _, a := range p.importTemplate(ref) {
		if a.Type != pkcs11.CKA_TOKEN {
			tmpl = append(tmpl, a)
		}
	}
	h, err := r.c.CreateObject(r.sh, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.c.DestroyObject(r.sh, h) })
	kcv, err := p.KeyCheckValue(testCtx(t), ref)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(material)
	zero := make([]byte, 16)
	block.Encrypt(zero, zero)
	if !bytes.Equal(kcv, zero[:8]) {
		t.Errorf("token-IV key check value %x, want %x", kcv, zero[:8])
	}
}

// The wrapping private key can unwrap and nothing else: not decrypt, sign
// or sign-recover (SoftHSM's default for CKA_SIGN_RECOVER is true), and it
// is sensitive and never leaves the token.
func TestWrappingKeyOnlyUnwraps(t *testing.T) {
	p := sharedToken(t)
	ctx := testCtx(t)
	id := uuid.NewString()
	if _, err := p.GenerateWrappingKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.DestroyWrappingKey(testCtx(t), id) })
	_, ckaID := wrapRef(id)
	err := p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		h, err := findPrivate(c, sh, ckaID)
		if err != nil {
			return err
		}
		for _, r := range wrappingRequired {
			v, present, err := boolAttr(c, sh, h, r.attr)
			if err != nil {
				return err
			}
			if (!present && !(r.attr == pkcs11.CKA_COPYABLE && p.cfg.Profile.LacksCopyable)) || v != r.want {
				t.Errorf("%s = %v (present %v), want %v", r.name, v, present, r.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestWrappingAlgorithmsFollowProfile: the token offers exactly what its
// profile allows (SoftHSM 2.6.1: RSA_AES_KEY_WRAP_SHA_1 alone; NSS
// softoken: all four), and the start-up probe removes what the token's
// mechanism list lacks.
func TestWrappingAlgorithmsFollowProfile(t *testing.T) {
	p := sharedToken(t)
	prof := p.cfg.Profile
	var want []string
	for _, a := range WrappingAlgorithmNames {
		sha256 := a == RSAESOAEPSHA256 || a == RSAAESKeyWrapSHA256
		plain := a == RSAESOAEPSHA1 || a == RSAESOAEPSHA256
		if (!sha256 || prof.OAEPSHA256) && (plain && prof.ReportsUnwrappedLength || !plain && prof.KWPMechanism != 0) {
			want = append(want, a)
		}
	}
	if got := p.WrappingAlgorithms(); !slices.Equal(got, want) {
		t.Errorf("WrappingAlgorithms() = %v, want %v (profile %s)", got, want, prof.Name)
	}
	// A KWP number the token does not offer is probed away.
	q := openToken(t, func(c *Config) { c.Profile.KWPMechanism = 0x80000001 })
	for _, a := range q.WrappingAlgorithms() {
		if a == RSAAESKeyWrapSHA1 || a == RSAAESKeyWrapSHA256 {
			t.Errorf("%s offered with a KWP mechanism the token lacks", a)
		}
	}
	if err := q.Import(testCtx(t), uuid.NewString(), RSAAESKeyWrapSHA1, make([]byte, 424), newRef()); err == nil {
		t.Error("Import with an algorithm that is not offered succeeded")
	}
}
