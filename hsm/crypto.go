package hsm

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"

	"github.com/miekg/pkcs11"
)

// minIVLength is the shortest GCM IV ever sent to the token. SoftHSM
// accepts an empty IV and then encrypts deterministically (pitfalls item
// 25), so a short IV must not reach it.
const minIVLength = 12

// MaxRandom is the largest Random request.
const MaxRandom = 1024

// gcm builds the CKM_AES_GCM mechanism; the caller frees params after the
// whole operation (C_EncryptInit and C_Encrypt), not before.
func (p *PKCS11) gcm(iv, aad []byte) (*pkcs11.GCMParams, []*pkcs11.Mechanism) {
	params := pkcs11.NewGCMParams(iv, aad, p.cfg.Profile.GCMTagBits)
	return params, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}
}

// Encrypt implements Token: AES-256-GCM in the token with a fresh random IV
// of the profile's length, on a pooled session and the cached handle (no
// search). Every failure is an error, never a panic; a decrypt-only version
// is ErrNotPermitted.
func (p *PKCS11) Encrypt(ctx context.Context, ref ObjectRef, plaintext, aad []byte) ([]byte, []byte, error) {
	var iv, out []byte
	err := p.withStorageCheck(ctx, func() error {
		return p.translate("encrypt "+ref.String(), p.withHandle(ctx, ref, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
			var err error
			iv, out, err = p.gcmEncrypt(c, sh, h, plaintext, aad)
			return err
		}))
	})
	if err != nil {
		return nil, nil, err
	}
	return iv, out, nil
}

// errNoTokenIV: the profile says the token generates GCM IVs, and it did not.
var errNoTokenIV = errors.New("hsm: the token did not generate a GCM IV (the profile says it does: turn the token-generated IV setting off for this token)")

// gcmEncrypt is one AES-GCM encryption under h: with a fresh random IV of
// the profile's length, or with the token's own IV, read back (the profile
// decides). It returns the IV and ciphertext||tag.
func (p *PKCS11) gcmEncrypt(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, plaintext, aad []byte) ([]byte, []byte, error) {
	iv := make([]byte, p.cfg.Profile.GCMIVLength)
	if len(iv) < minIVLength {
		return nil, nil, fmt.Errorf("hsm: IV length %d is below %d", len(iv), minIVLength)
	}
	if !p.cfg.Profile.TokenGeneratesIV {
		if _, err := rand.Read(iv); err != nil {
			return nil, nil, fmt.Errorf("hsm: drawing the IV: %w", err)
		}
	}
	params, mech := p.gcm(iv, aad)
	defer params.Free()
	if err := c.EncryptInit(sh, mech, h); err != nil {
		return nil, nil, err
	}
	out, err := p.gcmSeal(sh, plaintext)
	if err != nil {
		return nil, nil, err
	}
	if p.cfg.Profile.TokenGeneratesIV {
		// Fail closed: a token that ignored the request would leave the
		// zeroed buffer, and every blob would share one IV.
		got := params.IV()
		if len(got) != len(iv) || bytes.Equal(got, iv) {
			return nil, nil, errNoTokenIV
		}
		iv = got
	}
	return iv, out, nil
}

// Decrypt implements Token. Lengths are checked before the token is called;
// a tag that does not verify (wrong key, IV, aad, or altered or truncated
// ciphertext) is ErrDecryptFailed, recognised by the profile's codes and
// only from C_Decrypt itself.
func (p *PKCS11) Decrypt(ctx context.Context, ref ObjectRef, iv, ciphertext, aad []byte) ([]byte, error) {
	if len(iv) < minIVLength || len(iv) > 128 || len(ciphertext) < p.cfg.Profile.GCMTagBits/8 {
		return nil, fmt.Errorf("%w: %s: IV of %d bytes or ciphertext of %d bytes out of range", ErrDecryptFailed, ref, len(iv), len(ciphertext))
	}
	var out []byte
	err := p.withStorageCheck(ctx, func() error {
		var failedIn string
		err := p.withHandle(ctx, ref, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
			params, mech := p.gcm(iv, aad)
			defer params.Free()
			failedIn = "C_DecryptInit"
			if err := c.DecryptInit(sh, mech, h); err != nil {
				return err
			}
			failedIn = "C_Decrypt"
			var err error
			out, err = p.gcmOpen(sh, ciphertext)
			return err
		})
		if code, ok := ckrCode(err); ok && failedIn == "C_Decrypt" && slices.Contains(p.cfg.Profile.DecryptFailureCodes, code) {
			return &tokenError{op: "decrypt " + ref.String(), code: code, kind: ErrDecryptFailed}
		}
		return p.translate("decrypt "+ref.String(), err)
	})
	if err != nil {
		clear(out) // plaintext of an attempt that failed after C_Decrypt
		return nil, err
	}
	return out, nil
}

// Random implements Token with C_GenerateRandom; n must be in 1..MaxRandom.
func (p *PKCS11) Random(ctx context.Context, n int) ([]byte, error) {
	if n < 1 || n > MaxRandom {
		return nil, fmt.Errorf("hsm: random length %d out of 1..%d", n, MaxRandom)
	}
	var out []byte
	err := p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		var err error
		out, err = c.GenerateRandom(sh, n)
		if err != nil && !hasCode(err, sessionDeadCodes) && !p.moduleGone(err) {
			// NSS softoken does not look at the session here: after
			// C_Finalize it fails with CKR_ARGUMENTS_BAD (pitfalls item
			// 51). Ask the session, so that a dead one is recovered.
			if serr := loggedIn(c, sh); serr != nil {
				return serr
			}
		}
		return err
	})
	if err != nil {
		return nil, translate("C_GenerateRandom", err)
	}
	if len(out) != n {
		return nil, fmt.Errorf("hsm: token returned %d random bytes, want %d", len(out), n)
	}
	return out, nil
}
