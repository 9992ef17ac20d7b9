package hsm

import (
	"context"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// MAC is an optional token capability: keyed hashes under a secret that
// never leaves the token. The service keys what it must be able to
// recompute but must not store in a form the database alone reveals (the
// secrets of AWS access keys; the hashes of bearer tokens) with it.
// *PKCS11 implements it; a wrapper of a Token implements it by forwarding.
type MAC interface {
	// GenerateMACKey creates ref's HMAC key in the token: a 256-bit generic
	// secret, sensitive, non-extractable, usable only to sign. Like
	// GenerateKey it is idempotent: an existing object with ref's CKA_ID is
	// checked and reused; processes making one at the same moment (no
	// database lock spans two installations) end with one object
	// (generateFixed).
	GenerateMACKey(ctx context.Context, ref ObjectRef) error
	// HMACSHA256 returns HMAC-SHA256 of data under ref's key, computed in the
	// token (CKM_SHA256_HMAC).
	HMACSHA256(ctx context.Context, ref ObjectRef, data []byte) ([]byte, error)
}

var _ MAC = (*PKCS11)(nil)

// ErrNoMAC: the token (or a wrapper around it) offers no MAC capability.
var ErrNoMAC = errors.New("hsm: this token offers no HMAC capability")

// macTemplate is the complete template of an HMAC key: sign only.
func macTemplate(ref ObjectRef) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_ID, ref.ID()),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, ref.Label()),
	}
}

// macRequired are the attributes an HMAC key must have, read back.
var macRequired = []boolRule{
	{pkcs11.CKA_TOKEN, "CKA_TOKEN", true, false},
	{pkcs11.CKA_PRIVATE, "CKA_PRIVATE", true, false},
	{pkcs11.CKA_SENSITIVE, "CKA_SENSITIVE", true, false},
	{pkcs11.CKA_EXTRACTABLE, "CKA_EXTRACTABLE", false, false},
	{pkcs11.CKA_ALWAYS_SENSITIVE, "CKA_ALWAYS_SENSITIVE", true, true},
	{pkcs11.CKA_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE", true, true},
	{pkcs11.CKA_SIGN, "CKA_SIGN", true, false},
	{pkcs11.CKA_ENCRYPT, "CKA_ENCRYPT", false, true},
	{pkcs11.CKA_DECRYPT, "CKA_DECRYPT", false, true},
	{pkcs11.CKA_WRAP, "CKA_WRAP", false, true},
	{pkcs11.CKA_UNWRAP, "CKA_UNWRAP", false, true},
	{pkcs11.CKA_DERIVE, "CKA_DERIVE", false, true},
	{pkcs11.CKA_VERIFY, "CKA_VERIFY", false, true},
}

// verifyMAC reads an HMAC key's attributes, type and length back, and
// requires what the token attests of a key it generated (attestRules): the
// MAC key's name has no nonce, so a key a PIN holder derived under it must
// be told apart by these alone.
func (p *PKCS11) verifyMAC(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, ref ObjectRef) error {
	if err := checkBools(c, sh, h, macRequired, ref.String()); err != nil {
		return err
	}
	if err := checkBools(c, sh, h, p.attestRules(), ref.String()); err != nil {
		return err
	}
	if err := p.checkAllowed(c, sh, h, []uint{pkcs11.CKM_SHA256_HMAC}, ref.String()); err != nil {
		return err
	}
	for _, r := range []struct {
		attr uint
		name string
		want uint
	}{{pkcs11.CKA_KEY_TYPE, "CKA_KEY_TYPE", pkcs11.CKK_GENERIC_SECRET}, {pkcs11.CKA_VALUE_LEN, "CKA_VALUE_LEN", 32}} {
		v, err := attr(c, sh, h, r.attr)
		if err != nil {
			return translate("read "+r.name+" of "+ref.String(), err)
		}
		if n, ok := ulong(v); !ok || n != r.want {
			return fmt.Errorf("%w: %s has %s=%x, want %d", ErrAttributeMismatch, ref, r.name, v, r.want)
		}
	}
	return nil
}

// GenerateMACKey implements MAC, as GenerateKey does for AES keys.
func (p *PKCS11) GenerateMACKey(ctx context.Context, ref ObjectRef) error {
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_GENERIC_SECRET_KEY_GEN, nil)}
	tmpl := append(append(macTemplate(ref), p.notCopyable()...), p.allowedAttr(pkcs11.CKM_SHA256_HMAC)...)
	return p.generate(ctx, ref, mech, tmpl, p.verifyMAC)
}

// HMACSHA256 implements MAC on a pooled session and the cached handle. A
// key without a value yet (CKR_KEY_SIZE_RANGE: another process is making
// it, and SoftHSM sets the value in a second step: generateFixed) is
// found again after a while, a bounded number of times.
func (p *PKCS11) HMACSHA256(ctx context.Context, ref ObjectRef, data []byte) ([]byte, error) {
	var out []byte
	var err error
	for attempt := 1; ; attempt++ {
		err = p.withHandle(ctx, ref, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
			if err := c.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_HMAC, nil)}, h); err != nil {
				return err
			}
			var err error
			out, err = c.Sign(sh, data)
			return err
		})
		if !ref.Legacy() || attempt == halfMadeAttempts || !hasCode(err, []uint{pkcs11.CKR_KEY_SIZE_RANGE}) {
			break
		}
		p.forgetAny(ref)
		if serr := sleepCtx(ctx, settleMin<<(attempt-1)); serr != nil {
			break
		}
	}
	if err != nil {
		return nil, translate("hmac "+ref.String(), err)
	}
	if len(out) != 32 {
		return nil, fmt.Errorf("hsm: token returned an HMAC-SHA256 of %d bytes", len(out))
	}
	return out, nil
}
