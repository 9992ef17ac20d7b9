package hsm

import (
	"context"
	"errors"

	"github.com/miekg/pkcs11"
)

// Data objects: small private values kept in the token beside the keys
// (CKO_DATA, CKA_PRIVATE, so only a logged-in session sees them), found by
// CKA_APPLICATION and CKA_LABEL. The service keeps there what the database
// must not be able to roll back: the anchor of the audit seal chain.

// dataApplication is the CKA_APPLICATION of this service's data objects.
const dataApplication = "hsmkms"

func dataTemplate(label string) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_APPLICATION, dataApplication),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
}

// ErrNoDataObjects: the token keeps no private data objects
// (Profile.LacksTokenDataObjects).
var ErrNoDataObjects = errors.New("hsm: this token keeps no private data objects")

// maxData bounds the objects one label may have: one, or two for the
// moment between a write's create and its destroy (or after a crash there).
const maxData = 8

// findData lists the data objects named label; no result on a session
// that is not logged in is that error, not "not found".
func (p *PKCS11) findData(c *pkcs11.Ctx, sh pkcs11.SessionHandle, label string) ([]pkcs11.ObjectHandle, error) {
	p.stats.searches.Add(1)
	if err := c.FindObjectsInit(sh, dataTemplate(label)); err != nil {
		return nil, err
	}
	hs, _, err := c.FindObjects(sh, maxData+1)
	if ferr := c.FindObjectsFinal(sh); err == nil {
		err = ferr
	}
	if err == nil && len(hs) == 0 {
		err = loggedIn(c, sh)
	}
	if err == nil && len(hs) > maxData {
		err = ErrAmbiguousObject
	}
	return hs, err
}

// ReadData implements Token: the values of the data objects named label
// (usually one), ErrObjectNotFound when there is none.
func (p *PKCS11) ReadData(ctx context.Context, label string) ([][]byte, error) {
	if p.cfg.Profile.LacksTokenDataObjects {
		return nil, ErrNoDataObjects
	}
	var out [][]byte
	err := p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		out = out[:0]
		hs, err := p.findData(c, sh, label)
		if err != nil {
			return err
		}
		if len(hs) == 0 {
			return ErrObjectNotFound
		}
		for _, h := range hs {
			v, err := attr(c, sh, h, pkcs11.CKA_VALUE)
			if hasCode(err, staleHandleCodes) {
				continue // replaced meanwhile
			}
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		return nil, translate("read data object "+label, err)
	}
	return out, nil
}

// WriteData implements Token: it replaces the data objects named label by
// one holding value. Tokens keep CKA_VALUE of a data object read-only
// (SoftHSM does), so the new object is created first and the old ones
// destroyed after: a crash in between leaves both, never none. Two
// writers at once (each found no object, or the same old ones) leave one
// object each; ReadData returns both, and the next write removes both.
// No name is ambiguous for data objects: a reader takes every value
// (the anchor's reader the newest), up to maxData of them.
func (p *PKCS11) WriteData(ctx context.Context, label string, value []byte) error {
	if p.cfg.Profile.LacksTokenDataObjects {
		return ErrNoDataObjects
	}
	p.mgmt.Lock()
	defer p.mgmt.Unlock()
	err := p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		old, err := p.findData(c, sh, label)
		if err != nil && !errors.Is(err, ErrAmbiguousObject) {
			return err
		}
		if _, err := c.CreateObject(sh, append(dataTemplate(label),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, value))); err != nil {
			return err
		}
		for _, h := range old {
			if err := c.DestroyObject(sh, h); err != nil && !hasCode(err, staleHandleCodes) {
				return err
			}
		}
		return nil
	})
	return translate("write data object "+label, err)
}
