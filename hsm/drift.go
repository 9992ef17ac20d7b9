package hsm

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/pkcs11"
)

// Drift: someone with the user PIN can change the modifiable attributes of
// an object after it was made (CKA_DERIVE=true gives an AES-ECB oracle that
// ignores CKA_ENCRYPT=false; CKA_DECRYPT=false stops decryption). The
// inventory reports every difference from the template of a key version,
// and Repair sets back what the token lets it set back.

// driftRules are the rules of required that hold for every key version
// whatever its state and origin: CKA_ENCRYPT depends on the state (the
// reconciler checks it), CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE on
// the origin (ObjectInfo.Generated).
var driftRules = func() []boolRule {
	var rs []boolRule
	for _, r := range required {
		switch r.attr {
		case pkcs11.CKA_ENCRYPT, pkcs11.CKA_ALWAYS_SENSITIVE, pkcs11.CKA_NEVER_EXTRACTABLE:
			continue
		}
		rs = append(rs, r)
	}
	return rs
}()

// repairable are the attributes of driftRules that C_SetAttributeValue may
// set back (the others are read-only once the object exists, or one-way).
var repairable = []uint{pkcs11.CKA_DECRYPT, pkcs11.CKA_WRAP, pkcs11.CKA_UNWRAP, pkcs11.CKA_DERIVE, pkcs11.CKA_SIGN, pkcs11.CKA_VERIFY}

// drift lists how h differs from driftRules and the mechanisms of a key
// version, one "CKA_X=v" entry per difference; repairable says which
// entries Repair can set back.
func (p *PKCS11) drift(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) (diffs []string, fix []boolRule, err error) {
	for _, r := range driftRules {
		v, present, err := boolAttr(c, sh, h, r.attr)
		if err != nil {
			return nil, nil, err
		}
		if (present || !r.optional) && v != r.want {
			diffs = append(diffs, fmt.Sprintf("%s=%v", r.name, v))
			if slices.Contains(repairable, r.attr) {
				fix = append(fix, r)
			}
		}
	}
	if !p.cfg.Profile.LacksAllowedMechanisms {
		d, err := p.mechanismDrift(c, sh, h, p.versionMechanisms(true))
		if err != nil {
			return nil, nil, err
		}
		if d != "" {
			diffs = append(diffs, d)
		}
	}
	return diffs, fix, nil
}

// generated says the token attests that h was made inside it and was never
// readable: CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE, and CKA_LOCAL
// where the token reports it truthfully (Profile.ReportsLocal). A key
// derived from another one, or imported, is not.
func (p *PKCS11) generated(info ObjectInfo) bool {
	return info.AlwaysSensitive && info.NeverExtractable && (info.Local || !p.cfg.Profile.ReportsLocal)
}

// Repair implements Token: it sets back every attribute of ref's object
// that differs from the template of a key version and may be set
// (CKA_ENCRYPT aside: SetDecryptOnly), reads them back, and returns what
// it changed. What differs and cannot be set back (an object made without
// CKA_ALLOWED_MECHANISMS or CKA_COPYABLE=false, before this service set
// them) is returned too, as ErrAttributeMismatch naming it.
func (p *PKCS11) Repair(ctx context.Context, ref ObjectRef) ([]string, error) {
	p.mgmt.Lock()
	defer p.mgmt.Unlock()
	var fixed, left []string
	err := p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		fixed, left = nil, nil
		hs, err := p.findIn(c, sh, ref)
		if err != nil {
			return err
		}
		if err := exactlyOne(ref, hs); err != nil {
			return err
		}
		diffs, fix, err := p.drift(c, sh, hs[0])
		if err != nil {
			return err
		}
		for _, r := range fix {
			if err := c.SetAttributeValue(sh, hs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(r.attr, r.want)}); err != nil {
				return err
			}
			fixed = append(fixed, fmt.Sprintf("%s=%v", r.name, r.want))
		}
		if len(fix) == 0 && len(diffs) == 0 {
			return nil
		}
		diffs, _, err = p.drift(c, sh, hs[0])
		left = diffs
		return err
	})
	if err != nil {
		return fixed, translate("repair "+ref.String(), err)
	}
	if len(left) > 0 {
		return fixed, fmt.Errorf("%w: %s keeps %s (cannot be set back)", ErrAttributeMismatch, ref, strings.Join(left, ", "))
	}
	return fixed, nil
}
