package hsm

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
)

// Bring your own key. A customer wraps their AES-256 material under an
// RSA-3072 public key whose private half was generated in the token and
// never leaves it; the token unwraps it straight into a key version object.
// The material never exists in this process's memory.
//
// Two wrappings (the algorithm names of docs/API.md):
//   - RSAES_OAEP_SHA_1 / _SHA_256: RSA-OAEP of the 32 bytes of material.
//   - RSA_AES_KEY_WRAP_SHA_1 / _SHA_256: RSA-OAEP of a fresh AES-256 key,
//     followed by the material wrapped under that key with AES key wrap with
//     padding (RFC 5649). The token unwraps both, the first into a session
//     object that is destroyed at once.
//
// The token does not check the length of unwrapped material (pitfalls item
// 21), and SoftHSM reports CKA_VALUE_LEN 0 for unwrapped keys: the length
// is checked from the wrapped bytes where the format allows it (RFC 5649:
// 40 bytes for 32), and otherwise from CKA_VALUE_LEN where the token
// reports it; a token that can do neither does not offer the algorithm.

// WrappingLabelPrefix starts the CKA_LABEL of wrapping key pairs. It is not
// LabelPrefix: wrapping keys are not key versions, and the inventory and
// the reconciler ignore them.
const WrappingLabelPrefix = "hsmkms-wrap/"

// WrappingBits is the size of wrapping keys (docs/API.md: RSA_3072).
const WrappingBits = 3072

// Wrapping algorithms.
const (
	RSAESOAEPSHA1         = "RSAES_OAEP_SHA_1"
	RSAESOAEPSHA256       = "RSAES_OAEP_SHA_256"
	RSAAESKeyWrapSHA1     = "RSA_AES_KEY_WRAP_SHA_1"
	RSAAESKeyWrapSHA256   = "RSA_AES_KEY_WRAP_SHA_256"
	wrappedKWPMaterialLen = 40 // RFC 5649 of 32 bytes: 32 + 8
)

// ErrUnwrapFailed: the wrapped material does not unwrap under this key
// (wrapped with another public key, damaged, another algorithm or length).
var ErrUnwrapFailed = errors.New("hsm: the wrapped key material cannot be unwrapped")

// WrappingAlgorithmNames are every wrapping algorithm of API.md, in the
// order WrappingAlgorithms lists them.
var WrappingAlgorithmNames = []string{RSAESOAEPSHA256, RSAESOAEPSHA1, RSAAESKeyWrapSHA256, RSAAESKeyWrapSHA1}

// WrappingAlgorithms lists what this token can unwrap: what the profile
// allows and the start-up probe (probeWrapping) found the token to offer.
func (p *PKCS11) WrappingAlgorithms() []string {
	var out []string
	for _, a := range WrappingAlgorithmNames {
		if p.supportsWrapping(a) {
			out = append(out, a)
		}
	}
	return out
}

// probeWrapping asks the token, at Open, for the mechanisms BYOK needs
// (C_GetMechanismInfo, no objects made): RSA key pair generation, RSA-OAEP
// unwrap, and the profile's AES key wrap with padding unwrap. What it
// lacks is not offered, whatever the profile says: SoftHSM numbers KWP
// 0x210A, NSS softoken and the spec 0x210B (pitfalls items 18 and 55).
// The probe cannot tell what a number means (NSS offers 0x210A too, as
// PKCS#7-padded key wrap): which one is RFC 5649 is the profile's.
func (p *PKCS11) probeWrapping() {
	has := func(mech, flags uint) bool {
		info, err := p.ctx.GetMechanismInfo(p.slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)})
		return err == nil && info.Flags&flags == flags
	}
	rsaOK := has(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR) && has(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.CKF_UNWRAP)
	p.wrap = wrapSupport{
		oaep: rsaOK,
		kwp:  rsaOK && p.cfg.Profile.KWPMechanism != 0 && has(p.cfg.Profile.KWPMechanism, pkcs11.CKF_UNWRAP),
	}
}

// wrapSupport is what probeWrapping found.
type wrapSupport struct{ oaep, kwp bool }

func (p *PKCS11) supportsWrapping(alg string) bool {
	prof := p.cfg.Profile
	hashOK := func(sha256 bool) bool {
		if sha256 {
			return prof.OAEPSHA256
		}
		return true
	}
	switch alg {
	case RSAESOAEPSHA1, RSAESOAEPSHA256:
		// The length of plain OAEP material is known only from the token.
		return p.wrap.oaep && prof.ReportsUnwrappedLength && hashOK(alg == RSAESOAEPSHA256)
	case RSAAESKeyWrapSHA1, RSAAESKeyWrapSHA256:
		return p.wrap.kwp && hashOK(alg == RSAAESKeyWrapSHA256)
	}
	return false
}

func wrapRef(id string) (label string, ckaID []byte) {
	return WrappingLabelPrefix + id, []byte("wrap:" + id)
}

// GenerateWrappingKey makes an RSA-3072 key pair in the token for one
// import, as session objects of the keeper session (keeper.go): the
// private key is sensitive, non-extractable, not modifiable, can only
// unwrap, and only into keys its CKA_UNWRAP_TEMPLATE allows; the public key
// is returned to be given to the customer.
func (p *PKCS11) GenerateWrappingKey(ctx context.Context, id string) (*rsa.PublicKey, error) {
	label, ckaID := wrapRef(id)
	pub := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), // a session object: keeper.go
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, WrappingBits),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_ID, ckaID),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	ut, release := attrTemplate(p.unwrapTemplate())
	defer release()
	priv := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), // a session object: keeper.go
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		// SoftHSM defaults it to true: with CKM_RSA_X_509 sign-recover, a
		// holder of the PIN would run the raw private-key operation on a
		// wrapped blob and read the customer's material.
		pkcs11.NewAttribute(pkcs11.CKA_SIGN_RECOVER, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP_TEMPLATE, ut),
		pkcs11.NewAttribute(pkcs11.CKA_ID, ckaID),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	pub = append(pub, p.notCopyable()...)
	priv = append(append(priv, p.notCopyable()...), p.allowedAttr(pkcs11.CKM_RSA_PKCS_OAEP)...)
	var key *rsa.PublicKey
	p.mgmt.Lock()
	defer p.mgmt.Unlock()
	err := p.onKeeper(true, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		// Two pairs with one CKA_ID would make every import fail.
		if err := destroyByID(c, sh, ckaID); err != nil {
			return err
		}
		ph, vh, err := c.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pub, priv)
		if err != nil {
			return err
		}
		err = p.verifyUnwrapOnly(c, sh, vh, label)
		if err == nil {
			err = p.checkUnwrapTemplate(c, sh, ph, vh, label)
		}
		if err != nil {
			_ = c.DestroyObject(sh, vh)
			_ = c.DestroyObject(sh, ph)
			return err
		}
		attrs, err := c.GetAttributeValue(sh, ph, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil)})
		if err != nil {
			return err
		}
		key = &rsa.PublicKey{N: new(big.Int).SetBytes(attrs[0].Value), E: int(new(big.Int).SetBytes(attrs[1].Value).Int64())}
		return nil
	})
	if err != nil {
		return nil, translate("generate wrapping key "+label, err)
	}
	return key, nil
}

// DestroyWrappingKey removes a wrapping key pair (missing is not an error):
// the keeper's, and a token object pair made before wrapping keys were
// session objects.
func (p *PKCS11) DestroyWrappingKey(ctx context.Context, id string) error {
	_, ckaID := wrapRef(id)
	p.mgmt.Lock()
	defer p.mgmt.Unlock()
	err := p.onKeeper(false, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error { return destroyByID(c, sh, ckaID) })
	if err != nil && !errors.Is(err, ErrObjectNotFound) {
		return translate("destroy wrapping key "+id, err)
	}
	err = p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error { return destroyByID(c, sh, ckaID) })
	return translate("destroy wrapping key "+id, err)
}

// destroyByID destroys every object with the CKA_ID.
func destroyByID(c *pkcs11.Ctx, sh pkcs11.SessionHandle, ckaID []byte) error {
	hs, err := findByID(c, sh, ckaID, 0, 4)
	if err != nil {
		return err
	}
	for _, h := range hs {
		if err := c.DestroyObject(sh, h); err != nil && !hasCode(err, staleHandleCodes) {
			return err
		}
	}
	return nil
}

// wrappingRequired are the attributes of a wrapping private key, read back
// after generation: a token that ignores a template attribute is caught.
var wrappingRequired = []boolRule{
	{pkcs11.CKA_TOKEN, "CKA_TOKEN", false, false},
	{pkcs11.CKA_PRIVATE, "CKA_PRIVATE", true, false},
	{pkcs11.CKA_SENSITIVE, "CKA_SENSITIVE", true, false},
	{pkcs11.CKA_EXTRACTABLE, "CKA_EXTRACTABLE", false, false},
	{pkcs11.CKA_MODIFIABLE, "CKA_MODIFIABLE", false, false},
	{pkcs11.CKA_UNWRAP, "CKA_UNWRAP", true, false},
	{pkcs11.CKA_DECRYPT, "CKA_DECRYPT", false, false},
	{pkcs11.CKA_SIGN, "CKA_SIGN", false, false},
	{pkcs11.CKA_SIGN_RECOVER, "CKA_SIGN_RECOVER", false, true},
	{pkcs11.CKA_DERIVE, "CKA_DERIVE", false, true},
	{pkcs11.CKA_COPYABLE, "CKA_COPYABLE", false, false},
}

// verifyUnwrapOnly checks that the private key h can unwrap and do nothing
// else, and cannot leave the token.
func (p *PKCS11) verifyUnwrapOnly(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, label string) error {
	if err := checkBools(c, sh, h, wrappingRequired, "wrapping key "+label); err != nil {
		return err
	}
	return p.checkAllowed(c, sh, h, []uint{pkcs11.CKM_RSA_PKCS_OAEP}, "wrapping key "+label)
}

// importRequired is required without CKA_ALWAYS_SENSITIVE and
// CKA_NEVER_EXTRACTABLE, false for imported material by the spec
// (pitfalls item 20).
var importRequired = func() []boolRule {
	var rs []boolRule
	for _, r := range required {
		if r.attr != pkcs11.CKA_ALWAYS_SENSITIVE && r.attr != pkcs11.CKA_NEVER_EXTRACTABLE {
			rs = append(rs, r)
		}
	}
	return rs
}()

func oaep(sha256 bool) *pkcs11.Mechanism {
	hash, mgf := uint(pkcs11.CKM_SHA_1), uint(pkcs11.CKG_MGF1_SHA1)
	if sha256 {
		hash, mgf = pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256
	}
	return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.NewOAEPParams(hash, mgf, pkcs11.CKZ_DATA_SPECIFIED, nil))
}

// importTemplate is keyTemplate without CKA_VALUE_LEN, which a token sets
// itself on unwrap (and refuses in the template: pitfalls item 21), with
// the mechanisms of an imported version.
func (p *PKCS11) importTemplate(ref ObjectRef) []*pkcs11.Attribute {
	var out []*pkcs11.Attribute
	for _, a := range keyTemplate(ref) {
		if a.Type != pkcs11.CKA_VALUE_LEN {
			out = append(out, a)
		}
	}
	return append(append(out, p.notCopyable()...), p.allowedAttr(p.versionMechanisms(true)...)...)
}

// Import unwraps material wrapped with algorithm alg under wrapping key id
// into ref's key version object inside the token, checks its security
// attributes and length, and refuses (destroying it) what does not pass.
// Nothing of the material passes through this process.
func (p *PKCS11) Import(ctx context.Context, id string, alg string, wrapped []byte, ref ObjectRef) error {
	if !p.supportsWrapping(alg) {
		return fmt.Errorf("hsm: this token cannot unwrap %s", alg)
	}
	_, ckaID := wrapRef(id)
	sha256 := alg == RSAESOAEPSHA256 || alg == RSAAESKeyWrapSHA256
	kwp := alg == RSAAESKeyWrapSHA1 || alg == RSAAESKeyWrapSHA256
	rsaLen := WrappingBits / 8
	if kwp && len(wrapped) != rsaLen+wrappedKWPMaterialLen {
		return fmt.Errorf("%w: %s of AES-256 material is %d bytes, got %d", ErrUnwrapFailed, alg, rsaLen+wrappedKWPMaterialLen, len(wrapped))
	}
	if !kwp && len(wrapped) != rsaLen {
		return fmt.Errorf("%w: %s is %d bytes, got %d", ErrUnwrapFailed, alg, rsaLen, len(wrapped))
	}
	p.mgmt.Lock()
	defer p.mgmt.Unlock()
	var h pkcs11.ObjectHandle
	err := p.onKeeper(false, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		privs, err := findPrivate(c, sh, ckaID)
		if err != nil {
			return err
		}
		if existing, err := p.findIn(c, sh, ref); err != nil {
			return err
		} else if len(existing) > 0 {
			return fmt.Errorf("%w: %s exists already", ErrAmbiguousObject, ref)
		}
		if !kwp {
			h, err = c.UnwrapKey(sh, []*pkcs11.Mechanism{oaep(sha256)}, privs, wrapped, p.importTemplate(ref))
			if err != nil {
				return p.unwrapErr(err)
			}
			return p.keepImported(c, sh, h, ref, true)
		}
		// The ephemeral AES key: a session object, only for unwrapping.
		eph, err := c.UnwrapKey(sh, []*pkcs11.Mechanism{oaep(sha256)}, privs, wrapped[:rsaLen], p.ephemeralTemplate())
		if err != nil {
			return p.unwrapErr(err)
		}
		defer c.DestroyObject(sh, eph)
		h, err = c.UnwrapKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(p.cfg.Profile.KWPMechanism, nil)}, eph, wrapped[rsaLen:], p.importTemplate(ref))
		if err != nil {
			return p.unwrapErr(err)
		}
		return p.keepImported(c, sh, h, ref, false)
	})
	if err != nil {
		if errors.Is(err, ErrUnwrapFailed) || errors.Is(err, ErrAmbiguousObject) || errors.Is(err, ErrAttributeMismatch) {
			return err
		}
		return translate("import "+ref.String(), err)
	}
	p.forgetAny(ref)
	return nil
}

// ephemeralTemplate is the template of RSA-AES key wrap's ephemeral AES
// key: a session object that can only unwrap, with AES key wrap with
// padding.
func (p *PKCS11) ephemeralTemplate() []*pkcs11.Attribute {
	return append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
	}, append(p.notCopyable(), p.allowedAttr(p.cfg.Profile.KWPMechanism)...)...)
}

// keepImported checks an unwrapped object on the session that made it and
// destroys it there when it does not pass: the handle is never used on
// another session, or in another generation of the module.
func (p *PKCS11) keepImported(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, ref ObjectRef, lengthFromToken bool) error {
	err := p.verifyImported(c, sh, h, ref, lengthFromToken)
	if errors.Is(err, ErrUnwrapFailed) || errors.Is(err, ErrAttributeMismatch) {
		_ = c.DestroyObject(sh, h)
	}
	return err
}

// findPrivate finds the wrapping private key with the CKA_ID: a session
// object, never a token object (one made before, or planted by someone
// else with the PIN).
func findPrivate(c *pkcs11.Ctx, sh pkcs11.SessionHandle, ckaID []byte) (pkcs11.ObjectHandle, error) {
	all, err := findByID(c, sh, ckaID, pkcs11.CKO_PRIVATE_KEY, 4)
	if err != nil {
		return 0, err
	}
	var hs []pkcs11.ObjectHandle
	for _, h := range all {
		onToken, _, err := boolAttr(c, sh, h, pkcs11.CKA_TOKEN)
		if err != nil {
			return 0, err
		}
		if !onToken {
			hs = append(hs, h)
		}
	}
	if len(hs) != 1 {
		return 0, fmt.Errorf("%w: wrapping key %s (%d found)", ErrObjectNotFound, ckaID, len(hs))
	}
	return hs[0], nil
}

// unwrapErr turns the token's refusals of the wrapped bytes into
// ErrUnwrapFailed; other errors stay token errors.
func (p *PKCS11) unwrapErr(err error) error {
	if err == nil {
		return nil
	}
	if hasCode(err, p.cfg.Profile.UnwrapFailureCodes) || hasCode(err, []uint{pkcs11.CKR_WRAPPED_KEY_INVALID, pkcs11.CKR_WRAPPED_KEY_LEN_RANGE, pkcs11.CKR_ENCRYPTED_DATA_INVALID,
		pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE, pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_DATA_INVALID, pkcs11.CKR_DATA_LEN_RANGE,
		pkcs11.CKR_ARGUMENTS_BAD}) {
		return fmt.Errorf("%w (%v)", ErrUnwrapFailed, err)
	}
	return err
}

// verifyImported checks an unwrapped version: sensitive, not extractable,
// encrypt/decrypt only, AES, 32 bytes long when the token says (required
// when the wrapping does not fix the length), and able to do AES-256-GCM.
// The trial encryption catches what a token that does not report
// CKA_VALUE_LEN (SoftHSM 2.6.1) lets through: RFC 5649 pads 25 to 32 bytes
// of material to the same length, and only 32 make an AES-256 key.
func (p *PKCS11) verifyImported(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, ref ObjectRef, lengthFromToken bool) error {
	if err := checkBools(c, sh, h, importRequired, "imported "+ref.String()); err != nil {
		return err
	}
	if err := p.checkAllowed(c, sh, h, p.versionMechanisms(true), "imported "+ref.String()); err != nil {
		return err
	}
	v, err := attr(c, sh, h, pkcs11.CKA_VALUE_LEN)
	if err != nil {
		return translate("read CKA_VALUE_LEN of "+ref.String(), err)
	}
	n, _ := ulong(v)
	if n != 0 && n != 32 || (n == 0 && lengthFromToken) {
		return fmt.Errorf("%w: imported material of %s is %d bytes, want 32 (AES-256)", ErrUnwrapFailed, ref, n)
	}
	_, _, err = p.gcmEncrypt(c, sh, h, make([]byte, 16), nil) // in the profile's IV mode
	switch {
	case hasCode(err, sessionDeadCodes), p.moduleGone(err):
		return err // the unit is retried
	case err != nil:
		return fmt.Errorf("%w: imported material of %s is not an AES-256 key (%v)", ErrUnwrapFailed, ref, translate("trial encryption", err))
	}
	return nil
}

// KeyCheckValue is 8 bytes that identify an AES key without revealing it,
// computed in the token; it tells whether re-imported material is the same
// as before. By default it is the start of the key's AES-GCM encryption of
// 16 zero bytes under the all-zero IV (a fixed IV is harmless here: it
// encrypts one known block, never data, and random 96-bit IVs do not
// collide with it). A token that generates its own GCM IVs cannot make a
// deterministic GCM value, so under TokenGeneratesIV it is the classic
// check value instead: the start of AES-ECB of one zero block. (The two
// differ: material imported under one mode is matched under the same mode.)
func (p *PKCS11) KeyCheckValue(ctx context.Context, ref ObjectRef) ([]byte, error) {
	var out []byte
	err := p.withHandle(ctx, ref, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		if p.cfg.Profile.TokenGeneratesIV {
			if err := c.EncryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}, h); err != nil {
				return err
			}
			ct, err := c.Encrypt(sh, make([]byte, 16))
			if err != nil {
				return err
			}
			if len(ct) < 8 {
				return fmt.Errorf("hsm: the token returned %d bytes for a 16-byte encryption", len(ct))
			}
			out = ct[:8]
			return nil
		}
		params, gcm := p.gcm(make([]byte, 12), nil)
		defer params.Free()
		if err := c.EncryptInit(sh, gcm, h); err != nil {
			return err
		}
		ct, err := p.gcmSeal(sh, make([]byte, 16))
		if err != nil {
			return err
		}
		if len(ct) < 8 {
			return fmt.Errorf("hsm: the token returned %d bytes for a 16-byte encryption", len(ct))
		}
		out = ct[:8]
		return nil
	})
	if err != nil {
		return nil, translate("key check value of "+ref.String(), err)
	}
	return out, nil
}
