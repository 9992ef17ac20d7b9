package hsm

import (
	"context"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
)

// SetDecryptOnly implements Token: CKA_ENCRYPT=false, then read back. The
// store's state is the authority; this makes the token refuse too. Anyone
// with the user PIN can set it back, so the reconciler re-checks it
// (Inventory reports Encrypt). Without Profile.SupportsEncryptFlip it does
// nothing. Search, change and read-back run as one unit on one session.
func (p *PKCS11) SetDecryptOnly(ctx context.Context, ref ObjectRef) error {
	if !p.cfg.Profile.SupportsEncryptFlip {
		return nil
	}
	return p.withStorageCheck(ctx, func() error { return p.setDecryptOnly(ctx, ref) })
}

func (p *PKCS11) setDecryptOnly(ctx context.Context, ref ObjectRef) error {
	p.mgmt.Lock()
	defer p.mgmt.Unlock()
	err := p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		hs, err := p.findIn(c, sh, ref)
		if err != nil {
			return err
		}
		if err := exactlyOne(ref, hs); err != nil {
			return err
		}
		off := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false)}
		if err := c.SetAttributeValue(sh, hs[0], off); err != nil {
			return err
		}
		got, err := c.GetAttributeValue(sh, hs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, nil)})
		if err != nil {
			return err
		}
		if len(got) != 1 || len(got[0].Value) != 1 || got[0].Value[0] != 0 {
			return fmt.Errorf("%w: %s still has CKA_ENCRYPT=true after C_SetAttributeValue", ErrAttributeMismatch, ref)
		}
		return nil
	})
	return p.translate("set decrypt-only "+ref.String(), err)
}

// Destroy implements Token. The object is found by search, not from the
// cache, so that exactly the object with ref's CKA_ID goes; two objects
// with the id are refused (ErrAmbiguousObject), none is success.
func (p *PKCS11) Destroy(ctx context.Context, ref ObjectRef) error {
	return p.withStorageCheck(ctx, func() error { return p.destroy(ctx, ref) })
}

func (p *PKCS11) destroy(ctx context.Context, ref ObjectRef) error {
	p.mgmt.Lock()
	defer p.mgmt.Unlock()
	defer p.forgetAny(ref)
	err := p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		hs, err := p.findIn(c, sh, ref)
		if err != nil || len(hs) == 0 {
			return err
		}
		if err := exactlyOne(ref, hs); err != nil {
			return err
		}
		if err := c.DestroyObject(sh, hs[0]); err != nil && !hasCode(err, staleHandleCodes) {
			return err // stale: gone meanwhile
		}
		return nil
	})
	return p.translate("destroy "+ref.String(), err)
}

// inventoryBatch is how many handles one C_FindObjects call returns.
const inventoryBatch = 100

// inventoryAttrs are the booleans Inventory reports, in ObjectInfo order.
var inventoryAttrs = []uint{
	pkcs11.CKA_ENCRYPT, pkcs11.CKA_DECRYPT, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE,
	pkcs11.CKA_NEVER_EXTRACTABLE, pkcs11.CKA_ALWAYS_SENSITIVE, pkcs11.CKA_LOCAL,
}

// Inventory implements Token: every secret key whose label is ours, with
// the attributes an auditor checks. It runs on one session under the
// management lock, and first checks the login and that the probe key is
// there: a logged-out session sees no private object, nor does SoftHSM
// with its storage unreadable, and an empty inventory would look like
// lost keys.
func (p *PKCS11) Inventory(ctx context.Context) ([]ObjectInfo, error) {
	var out []ObjectInfo
	err := p.withStorageCheck(ctx, func() error {
		var err error
		out, err = p.inventory(ctx)
		return err
	})
	return out, err
}

func (p *PKCS11) inventory(ctx context.Context) ([]ObjectInfo, error) {
	p.mgmt.Lock()
	defer p.mgmt.Unlock()
	var out []ObjectInfo
	err := p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		out = out[:0]
		if err := loggedIn(c, sh); err != nil {
			return err
		}
		p.stats.searches.Add(2)
		if hs, err := findByID(c, sh, probeID, pkcs11.CKO_SECRET_KEY, 1); err != nil {
			return err
		} else if len(hs) == 0 {
			return errProbeMissing
		}
		if err := c.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY)}); err != nil {
			return err
		}
		var handles []pkcs11.ObjectHandle
		for {
			hs, _, err := c.FindObjects(sh, inventoryBatch)
			if err != nil {
				_ = c.FindObjectsFinal(sh)
				return err
			}
			handles = append(handles, hs...)
			if len(hs) == 0 {
				break
			}
		}
		if err := c.FindObjectsFinal(sh); err != nil {
			return err
		}
		for _, h := range handles {
			info, ok, err := p.describe(c, sh, h)
			if hasCode(err, staleHandleCodes) {
				continue // destroyed meanwhile
			}
			if err != nil {
				return err
			}
			if ok {
				out = append(out, info)
			}
		}
		return nil
	})
	if err != nil {
		return nil, p.translate("inventory", err)
	}
	return out, nil
}

// describe reads an object's label, security attributes and drift; ok is
// false for objects that are not this service's.
func (p *PKCS11) describe(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) (ObjectInfo, bool, error) {
	info, ok, err := describeBools(c, sh, h)
	if err != nil || !ok {
		return info, ok, err
	}
	info.Generated = p.generated(info)
	diffs, _, err := p.drift(c, sh, h)
	if err != nil {
		return ObjectInfo{}, false, err
	}
	info.Drift = strings.Join(diffs, ", ")
	return info, true, nil
}

// describeBools reads an object's label and the booleans of ObjectInfo.
func describeBools(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) (ObjectInfo, bool, error) {
	attrs, err := c.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil)})
	if err != nil {
		return ObjectInfo{}, false, err
	}
	label := string(attrs[0].Value)
	ref, err := ParseLabel(label)
	if err != nil {
		return ObjectInfo{}, false, nil
	}
	info := ObjectInfo{Ref: ref, Label: label}
	dst := []*bool{&info.Encrypt, &info.Decrypt, &info.Sensitive, &info.Extractable,
		&info.NeverExtractable, &info.AlwaysSensitive, &info.Local}
	tmpl := make([]*pkcs11.Attribute, len(inventoryAttrs))
	for i, a := range inventoryAttrs {
		tmpl[i] = pkcs11.NewAttribute(a, nil)
	}
	// One call for all; if the token refuses one attribute, miekg/pkcs11
	// returns nothing at all (pitfalls item 14), so read them one by one
	// and report an absent one as false.
	if got, err := c.GetAttributeValue(sh, h, tmpl); err == nil && len(got) == len(dst) {
		for i, a := range got {
			*dst[i] = len(a.Value) == 1 && a.Value[0] != 0
		}
		return info, true, nil
	} else if hasCode(err, staleHandleCodes) {
		return ObjectInfo{}, false, err
	}
	for i, a := range inventoryAttrs {
		got, err := c.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(a, nil)})
		if hasCode(err, []uint{pkcs11.CKR_ATTRIBUTE_TYPE_INVALID, pkcs11.CKR_ATTRIBUTE_SENSITIVE}) {
			continue
		}
		if err != nil {
			return ObjectInfo{}, false, err
		}
		*dst[i] = len(got[0].Value) == 1 && got[0].Value[0] != 0
	}
	return info, true, nil
}
