package hsm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// keyTemplate is the template of a key version: every security attribute
// set explicitly (pitfalls item 9), only encrypt and decrypt. Made with
// notCopyable (CKA_COPYABLE defaults to true, and a copy made by someone
// with the PIN would outlive the version's destruction) and allowedAttr.
func keyTemplate(ref ObjectRef) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_ID, ref.ID()),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, ref.Label()),
	}
}

// required are the boolean attributes every key version must have, read
// back after generation (CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE
// attest generation inside the token, as CKA_LOCAL does where
// Profile.ReportsLocal). optional ones may be absent
// (CKR_ATTRIBUTE_TYPE_INVALID): a usage a token does not know is not granted.
var required = []boolRule{
	{pkcs11.CKA_TOKEN, "CKA_TOKEN", true, false},
	{pkcs11.CKA_PRIVATE, "CKA_PRIVATE", true, false},
	{pkcs11.CKA_SENSITIVE, "CKA_SENSITIVE", true, false},
	{pkcs11.CKA_EXTRACTABLE, "CKA_EXTRACTABLE", false, false},
	{pkcs11.CKA_ALWAYS_SENSITIVE, "CKA_ALWAYS_SENSITIVE", true, false},
	{pkcs11.CKA_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE", true, false},
	{pkcs11.CKA_ENCRYPT, "CKA_ENCRYPT", true, false},
	{pkcs11.CKA_DECRYPT, "CKA_DECRYPT", true, false},
	{pkcs11.CKA_WRAP, "CKA_WRAP", false, true},
	{pkcs11.CKA_UNWRAP, "CKA_UNWRAP", false, true},
	{pkcs11.CKA_DERIVE, "CKA_DERIVE", false, true},
	{pkcs11.CKA_SIGN, "CKA_SIGN", false, true},
	{pkcs11.CKA_VERIFY, "CKA_VERIFY", false, true},
	{pkcs11.CKA_COPYABLE, "CKA_COPYABLE", false, false},
}

// GenerateKey implements Token. The search, the generation and the
// read-back run as one unit on one session, under the management lock; the
// handle it checks (or destroys, when the check fails) is never one of
// another generation, where its number may name another object.
//
// An object of a version is never adopted: one that exists already under
// ref's name (with a nonce, which this service drew for this generation
// only) was not made by this call, and is refused with ErrAmbiguousObject.
// Only when this call's own earlier attempt may have made it (the unit is
// retried after its session died) is it destroyed and made again. A name
// without a nonce (made before nonces: the audit seal key of an existing
// installation) is still taken if the token attests that it generated the
// object (CKA_LOCAL where truthful, CKA_ALWAYS_SENSITIVE,
// CKA_NEVER_EXTRACTABLE), so that a key someone derived or imported under
// it is refused; two processes making such a name at once end with one
// object between them (generateFixed, which also confirms after the unit).
func (p *PKCS11) GenerateKey(ctx context.Context, ref ObjectRef) error {
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}
	tmpl := append(append(keyTemplate(ref), p.notCopyable()...), p.allowedAttr(p.versionMechanisms(false)...)...)
	// No second try after a re-initialisation: an object this call may
	// have made would be refused as not its own. The storage is checked,
	// so that the caller's retry finds a working token.
	return p.storageChecked(ctx, false, func() error { return p.generate(ctx, ref, mech, tmpl, p.verify) })
}

// generateChecked makes one object from mech and tmpl and reads it back
// with check; an object that comes out other than the template asked is
// destroyed at once (it was this call's own: its handle proves it).
func generateChecked(c *pkcs11.Ctx, sh pkcs11.SessionHandle, mech []*pkcs11.Mechanism, tmpl []*pkcs11.Attribute, ref ObjectRef,
	check func(*pkcs11.Ctx, pkcs11.SessionHandle, pkcs11.ObjectHandle, ObjectRef) error) (pkcs11.ObjectHandle, error) {
	h, err := c.GenerateKey(sh, mech, tmpl)
	if err != nil {
		return 0, err
	}
	if err := check(c, sh, h, ref); err != nil {
		if errors.Is(err, ErrAttributeMismatch) {
			_ = c.DestroyObject(sh, h)
		}
		return h, err
	}
	return h, nil
}

// generate is GenerateKey for any secret key: tmpl made with mech, checked
// by check after generation (and, for a name without a nonce, before it is
// taken: generateFixed).
func (p *PKCS11) generate(ctx context.Context, ref ObjectRef, mech []*pkcs11.Mechanism, tmpl []*pkcs11.Attribute,
	check func(*pkcs11.Ctx, pkcs11.SessionHandle, pkcs11.ObjectHandle, ObjectRef) error) error {
	p.mgmt.Lock()
	defer p.mgmt.Unlock()
	if ref.Legacy() {
		return p.generateFixed(ctx, ref, mech, tmpl, check)
	}
	var h pkcs11.ObjectHandle
	_, _, gen := p.current()
	attempted := false
	err := p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		hs, err := p.findIn(c, sh, ref)
		if err != nil {
			return err
		}
		switch {
		case len(hs) > 0 && !attempted:
			return fmt.Errorf("%w: %s exists already (not made by this service for this version: never adopted)", ErrAmbiguousObject, ref)
		case len(hs) > 0:
			for _, old := range hs {
				if err := c.DestroyObject(sh, old); err != nil && !hasCode(err, staleHandleCodes) {
					return err
				}
			}
		}
		attempted = true
		h, err = generateChecked(c, sh, mech, tmpl, ref, check)
		return err
	})
	if err != nil {
		return p.translate("generate "+ref.String(), err)
	}
	if _, _, now := p.current(); now == gen {
		p.cache(ref, cachedHandle{h: h, gen: gen}) // else the next use finds it again
	}
	return nil
}

// boolRule is one boolean attribute an object must have (or, when
// optional, may lack: a usage a token does not know is not granted).
type boolRule struct {
	attr     uint
	name     string
	want     bool
	optional bool
}

// checkBools reads rules' attributes of h, one per call, and names the
// first that does not match; what names the object in messages.
func checkBools(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, rules []boolRule, what string) error {
	for _, r := range rules {
		v, present, err := boolAttr(c, sh, h, r.attr)
		if err != nil {
			return translate("read "+r.name+" of "+what, err)
		}
		if (present || !r.optional) && v != r.want {
			return fmt.Errorf("%w: %s has %s=%v", ErrAttributeMismatch, what, r.name, v)
		}
	}
	return nil
}

// verify reads the security attributes and the key type and length back,
// one attribute per call (a token answers a whole template with an error
// if one attribute is unreadable: pitfalls item 14), and refuses an object
// that does not match. CKA_VALUE is never asked for.
func (p *PKCS11) verify(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, ref ObjectRef) error {
	if err := checkBools(c, sh, h, required, ref.String()); err != nil {
		return err
	}
	if p.cfg.Profile.ReportsLocal {
		if err := checkBools(c, sh, h, []boolRule{{pkcs11.CKA_LOCAL, "CKA_LOCAL", true, false}}, ref.String()); err != nil {
			return err
		}
	}
	if err := p.checkAllowed(c, sh, h, p.versionMechanisms(false), ref.String()); err != nil {
		return err
	}
	for _, r := range []struct {
		attr uint
		name string
		want uint
	}{{pkcs11.CKA_CLASS, "CKA_CLASS", pkcs11.CKO_SECRET_KEY}, {pkcs11.CKA_KEY_TYPE, "CKA_KEY_TYPE", pkcs11.CKK_AES}, {pkcs11.CKA_VALUE_LEN, "CKA_VALUE_LEN", 32}} {
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

// attr reads one attribute of h on session sh.
func attr(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, attr uint) ([]byte, error) {
	out, err := c.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(attr, nil)})
	if err != nil {
		return nil, err
	}
	if len(out) != 1 {
		return nil, fmt.Errorf("hsm: token returned %d values for attribute 0x%X", len(out), attr)
	}
	return out[0].Value, nil
}

// boolAttr reads one CK_BBOOL attribute; present is false when the token
// does not know it (CKR_ATTRIBUTE_TYPE_INVALID).
func boolAttr(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, a uint) (v, present bool, err error) {
	b, err := attr(c, sh, h, a)
	if hasCode(err, []uint{pkcs11.CKR_ATTRIBUTE_TYPE_INVALID}) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	if len(b) != 1 {
		return false, false, fmt.Errorf("%w: attribute 0x%X is not a boolean", ErrAttributeMismatch, a)
	}
	return b[0] != 0, true, nil
}

// ulong decodes a CK_ULONG attribute value (native byte order and size).
func ulong(b []byte) (uint, bool) {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b)), true
	case 4:
		return uint(binary.NativeEndian.Uint32(b)), true
	}
	return 0, false
}

// findIn lists up to two secret keys with ref's CKA_ID on session sh. No
// result on a session that is not logged in is CKR_USER_NOT_LOGGED_IN, not
// "not found": private objects are invisible after a logout (pitfalls item
// 6), and that is a dead login to recover from. The caller holds mgmt.
func (p *PKCS11) findIn(c *pkcs11.Ctx, sh pkcs11.SessionHandle, ref ObjectRef) ([]pkcs11.ObjectHandle, error) {
	p.stats.searches.Add(1)
	hs, err := findByID(c, sh, ref.ID(), pkcs11.CKO_SECRET_KEY, 2)
	if err != nil {
		return nil, err
	}
	if len(hs) == 0 {
		if err := loggedIn(c, sh); err != nil {
			return nil, err
		}
	}
	return hs, nil
}

// findByID lists up to max objects with the CKA_ID (and class, when not
// 0): the one FindObjects helper, for key versions (findIn) and wrapping
// key pairs alike. FindObjectsFinal runs whatever happened.
func findByID(c *pkcs11.Ctx, sh pkcs11.SessionHandle, ckaID []byte, class uint, max int) ([]pkcs11.ObjectHandle, error) {
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, ckaID)}
	if class != 0 {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_CLASS, class))
	}
	if err := c.FindObjectsInit(sh, tmpl); err != nil {
		return nil, err
	}
	hs, _, err := c.FindObjects(sh, max)
	if ferr := c.FindObjectsFinal(sh); err == nil {
		err = ferr
	}
	return hs, err
}

// loggedIn reports CKR_USER_NOT_LOGGED_IN for a session without the user's
// login (someone called C_Logout, or the last session was closed).
func loggedIn(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
	info, err := c.GetSessionInfo(sh)
	if err != nil {
		return err
	}
	if info.State != pkcs11.CKS_RW_USER_FUNCTIONS {
		return pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN)
	}
	return nil
}

// exactlyOne fails closed: zero objects is ErrObjectNotFound, two or more
// ErrAmbiguousObject (pitfalls item 10).
func exactlyOne(ref ObjectRef, hs []pkcs11.ObjectHandle) error {
	switch len(hs) {
	case 0:
		return fmt.Errorf("%w: %s", ErrObjectNotFound, ref)
	case 1:
		return nil
	}
	if ref.Legacy() {
		return fmt.Errorf("%w: %s (%s)", ErrAmbiguousObject, ref, ambiguousHint)
	}
	return fmt.Errorf("%w: %s", ErrAmbiguousObject, ref)
}

// search finds the one object with ref's CKA_ID. The caller holds mgmt.
// The object of a generated version with a nonce must be attested as
// generated by the token (attestRules): someone with the PIN who destroyed
// it and put another under its name gets a refusal, not their key used.
func (p *PKCS11) search(ctx context.Context, ref ObjectRef) (pkcs11.ObjectHandle, error) {
	var hs []pkcs11.ObjectHandle
	err := p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		var err error
		if hs, err = p.findIn(c, sh, ref); err != nil || len(hs) != 1 || ref.Legacy() || ref.Imported() {
			return err
		}
		return checkBools(c, sh, hs[0], p.attestRules(), ref.String())
	})
	if err != nil {
		if errors.Is(err, ErrAttributeMismatch) {
			return 0, err
		}
		return 0, p.translate("find "+ref.String(), err)
	}
	if err := exactlyOne(ref, hs); err != nil {
		return 0, err
	}
	return hs[0], nil
}

// attestRules are what the token says of a key it generated and never let
// out: CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE, and CKA_LOCAL where the
// profile trusts it (a derived key has the first two).
func (p *PKCS11) attestRules() []boolRule {
	rs := []boolRule{
		{pkcs11.CKA_ALWAYS_SENSITIVE, "CKA_ALWAYS_SENSITIVE", true, false},
		{pkcs11.CKA_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE", true, false},
	}
	if p.cfg.Profile.ReportsLocal {
		rs = append(rs, boolRule{pkcs11.CKA_LOCAL, "CKA_LOCAL", true, false})
	}
	return rs
}
