package hsm

import (
	"bytes"
	"context"
	"errors"

	"github.com/miekg/pkcs11"
)

// Data objects: small private values kept in the token beside the keys
// (CKO_DATA, CKA_PRIVATE, so only a logged-in session sees them), found by
// CKA_APPLICATION and CKA_LABEL. The service keeps there what the database
// must not be able to roll back: the anchor of the audit seal chain.
//
// A token that refuses private CKO_DATA objects (Profile.LacksTokenDataObjects,
// NSS softoken) keeps each value in a secret key that can do nothing
// instead: an AES key generated in the token, sensitive, non-extractable,
// private, with every usage false, whose CKA_LABEL is the label and whose
// CKA_ID is dataKeyIDPrefix and the value. Its key is never used and
// nothing of it can leave the token; the value, like a data object's, is
// seen only by a logged-in session.

// dataApplication is the CKA_APPLICATION of this service's data objects.
const dataApplication = "hsmkms"

// dataKeyIDPrefix begins the CKA_ID of a data value kept in a key: no
// version's CKA_ID (ObjectRef.ID, 20 or 36 bytes of key id, version and
// nonce) starts so and is as long.
const dataKeyIDPrefix = "hsmkms-data:"

func dataTemplate(label string) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_APPLICATION, dataApplication),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
}

// dataKeyTemplate finds the keys that keep the values named label.
func dataKeyTemplate(label string) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
}

// dataKeyGenTemplate is the key that keeps value under label.
func dataKeyGenTemplate(label string, value []byte) []*pkcs11.Attribute {
	return append(dataKeyTemplate(label)[1:],
		pkcs11.NewAttribute(pkcs11.CKA_ID, append([]byte(dataKeyIDPrefix), value...)),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
	)
}

// maxData bounds the objects one label may have: one, or two for the
// moment between a write's create and its destroy (or after a crash there).
const maxData = 8

// findData lists the data objects named label; no result on a session
// that is not logged in is that error, not "not found".
func (p *PKCS11) findData(c *pkcs11.Ctx, sh pkcs11.SessionHandle, label string) ([]pkcs11.ObjectHandle, error) {
	p.stats.searches.Add(1)
	tmpl := dataTemplate(label)
	if p.cfg.Profile.LacksTokenDataObjects {
		tmpl = dataKeyTemplate(label)
	}
	if err := c.FindObjectsInit(sh, tmpl); err != nil {
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
			v, err := p.dataValue(c, sh, h)
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
		return nil, p.translate("read data object "+label, err)
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
	p.mgmt.Lock()
	defer p.mgmt.Unlock()
	err := p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		old, err := p.findData(c, sh, label)
		if err != nil && !errors.Is(err, ErrAmbiguousObject) {
			return err
		}
		// An object that already keeps value stays, and only the others
		// go: on a token that replaces an object of the same class and id
		// (NSS: the value is the key's CKA_ID), writing the value again
		// would replace that object in place, under the same handle, and
		// destroying the old handle would destroy the new object.
		keep, kept := pkcs11.ObjectHandle(0), false
		for _, h := range old {
			if v, err := p.dataValue(c, sh, h); err == nil && bytes.Equal(v, value) {
				keep, kept = h, true
				break
			}
		}
		if !kept {
			if keep, err = p.createData(c, sh, label, value); err != nil {
				return err
			}
		}
		for _, h := range old {
			if h == keep {
				continue
			}
			if err := c.DestroyObject(sh, h); err != nil && !hasCode(err, staleHandleCodes) {
				return err
			}
		}
		return nil
	})
	return p.translate("write data object "+label, err)
}

// createData makes one object keeping value under label.
func (p *PKCS11) createData(c *pkcs11.Ctx, sh pkcs11.SessionHandle, label string, value []byte) (pkcs11.ObjectHandle, error) {
	if p.cfg.Profile.LacksTokenDataObjects {
		return c.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)},
			append(dataKeyGenTemplate(label, value), p.notCopyable()...))
	}
	return c.CreateObject(sh, append(dataTemplate(label),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, value)))
}

// dataValue is the value an object found by findData keeps.
func (p *PKCS11) dataValue(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) ([]byte, error) {
	if !p.cfg.Profile.LacksTokenDataObjects {
		return attr(c, sh, h, pkcs11.CKA_VALUE)
	}
	id, err := attr(c, sh, h, pkcs11.CKA_ID)
	if err != nil {
		return nil, err
	}
	// A key under the label that this service did not make (its CKA_ID
	// lacks the prefix) reads as its whole CKA_ID, a value no reader
	// takes for one it wrote (the anchor's reports it malformed).
	if v, ok := bytes.CutPrefix(id, []byte(dataKeyIDPrefix)); ok {
		return v, nil
	}
	return id, nil
}
