package hsm

import (
	"context"
	"fmt"
	"slices"

	"github.com/miekg/pkcs11"
)

// The keeper session holds this process's wrapping keys. They are session
// objects (CKA_TOKEN=false): PKCS#11 shows a session object only to the
// application that made it, so another process with the user PIN cannot
// find, let alone use, them. With a token wrapping key that process could
// unwrap a pending import's material itself: straight into a readable key,
// or (RSA-AES key wrap) into an ephemeral key allowed to unwrap, and then
// the material under it with a template of its own, which no
// CKA_UNWRAP_TEMPLATE can forbid on SoftHSM 2.6.1 (it refuses nested
// templates). See docs/byok.md.
//
// A session object lives as long as its session. The keeper is therefore
// a session of its own, outside the pool (which closes sessions after
// failures), opened on first use and closed by Close; when it dies (token
// reset, a new generation) its wrapping keys die with it, and an import
// with one of them fails with ErrObjectNotFound: the customer gets new
// import parameters. Wrapping keys never survive a restart, and each
// replica has its own.

// onKeeper runs fn on the keeper session of the current generation; create
// says it may be opened (GenerateWrappingKey), else a missing keeper is
// ErrObjectNotFound. The caller holds mgmt, which guards p.keeper.
func (p *PKCS11) onKeeper(create bool, fn func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error) error {
	c, slot, gen := p.current()
	if c == nil {
		return fmt.Errorf("%w: token closed", ErrUnavailable)
	}
	if p.keeper != nil && p.keeper.gen != gen {
		p.dropKeeper(c)
	}
	if p.keeper == nil {
		if !create {
			return fmt.Errorf("%w: no wrapping key survives in this process (restarted, or the token was reset)", ErrObjectNotFound)
		}
		s, err := p.pool.open(context.Background(), c, slot, gen) // a retried login waits at most 0.5 s
		if err != nil {
			return err
		}
		p.keeper = &s
	}
	err := fn(c, p.keeper.h)
	if dead, hard := hasCode(err, sessionDeadCodes), hasCode(err, moduleDeadCodes); dead || hard {
		kgen := p.keeper.gen
		p.dropKeeper(c)
		_ = p.reset(kgen, hard) // the pool's sessions are most likely dead too
		return fmt.Errorf("%w: the wrapping keys were lost with their session (%v)", ErrObjectNotFound, err)
	}
	return err
}

// dropKeeper closes the keeper session (its objects go with it), or only
// forgets it when its module instance was initialised again.
func (p *PKCS11) dropKeeper(c *pkcs11.Ctx) {
	if p.keeper == nil {
		return
	}
	if !p.outlived(p.keeper.gen) && c != nil {
		_ = c.CloseSession(p.keeper.h)
	}
	p.stats.sessionsClosed.Add(1)
	p.keeper = nil
}

// unwrapTemplate is CKA_UNWRAP_TEMPLATE of a wrapping private key: what
// it unwraps, the material or the ephemeral key of RSA-AES key wrap, is an
// AES key that is sensitive, not extractable, not copyable and cannot wrap,
// derive, sign or verify. The templates of Import and of the ephemeral key
// repeat every attribute (SoftHSM refuses an unwrap whose template leaves
// one out).
func (p *PKCS11) unwrapTemplate() []*pkcs11.Attribute {
	return append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
	}, p.notCopyable()...)
}

// checkUnwrapTemplate proves that the token enforces the wrapping key's
// CKA_UNWRAP_TEMPLATE: a throwaway session key wrapped under the public
// key must not unwrap into a readable key. The types the token reports of
// the template are checked first (miekg/pkcs11 cannot read the values of
// an attribute array). Profile.IgnoresUnwrapTemplate skips the proof.
func (p *PKCS11) checkUnwrapTemplate(c *pkcs11.Ctx, sh pkcs11.SessionHandle, pub, priv pkcs11.ObjectHandle, label string) error {
	b, err := attr(c, sh, priv, pkcs11.CKA_UNWRAP_TEMPLATE)
	if err != nil {
		return err
	}
	types, ok := templateTypes(b)
	want := p.unwrapTemplate()
	if !ok || len(types) != len(want) {
		return fmt.Errorf("%w: wrapping key %s has a CKA_UNWRAP_TEMPLATE of %d bytes, want %d attributes", ErrAttributeMismatch, label, len(b), len(want))
	}
	for _, a := range want { // in the token's order (SoftHSM: by type)
		if !slices.Contains(types, a.Type) {
			return fmt.Errorf("%w: wrapping key %s: CKA_UNWRAP_TEMPLATE lacks attribute 0x%X", ErrAttributeMismatch, label, a.Type)
		}
	}
	if p.cfg.Profile.IgnoresUnwrapTemplate {
		return nil
	}
	probe, err := c.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	})
	if err != nil {
		return err
	}
	defer c.DestroyObject(sh, probe)
	wrapped, err := c.WrapKey(sh, []*pkcs11.Mechanism{oaep(p.cfg.Profile.OAEPSHA256)}, pub, probe)
	if err != nil {
		return err
	}
	h, err := c.UnwrapKey(sh, []*pkcs11.Mechanism{oaep(p.cfg.Profile.OAEPSHA256)}, priv, wrapped, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	})
	if err == nil {
		_ = c.DestroyObject(sh, h)
		return fmt.Errorf("%w: token %q ignores the CKA_UNWRAP_TEMPLATE of wrapping key %s (a readable key was unwrapped)", ErrAttributeMismatch, p.cfg.TokenLabel, label)
	}
	if hasCode(err, sessionDeadCodes) || hasCode(err, moduleDeadCodes) {
		return err
	}
	return nil
}
