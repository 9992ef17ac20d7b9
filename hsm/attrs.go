package hsm

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// miekg/pkcs11 v1.1.2 encodes scalars and byte strings only. The two array
// attributes this service sets, CKA_ALLOWED_MECHANISMS and
// CKA_UNWRAP_TEMPLATE, are encoded here in the C layout of the platform
// (CK_ULONG is a Go uint, pitfalls item 12).

// mechanismList is a CKA_ALLOWED_MECHANISMS value: an array of
// CK_MECHANISM_TYPE.
func mechanismList(mechs ...uint) []byte {
	size := int(unsafe.Sizeof(uint(0)))
	out := make([]byte, size*len(mechs))
	for i, m := range mechs {
		putULong(out[i*size:], m)
	}
	return out
}

// parseMechanismList decodes a CKA_ALLOWED_MECHANISMS value.
func parseMechanismList(b []byte) ([]uint, bool) {
	size := int(unsafe.Sizeof(uint(0)))
	if len(b)%size != 0 {
		return nil, false
	}
	out := make([]uint, 0, len(b)/size)
	for i := 0; i+size <= len(b); i += size {
		v, _ := ulong(b[i : i+size])
		out = append(out, v)
	}
	return out, true
}

func putULong(b []byte, v uint) {
	if unsafe.Sizeof(uint(0)) == 8 {
		binary.NativeEndian.PutUint64(b, uint64(v))
	} else {
		binary.NativeEndian.PutUint32(b, uint32(v))
	}
}

// attrTemplate is the value of an attribute-array attribute
// (CKA_UNWRAP_TEMPLATE): an array of CK_ATTRIBUTE whose pValue fields
// point at the inner values. Those stay in Go memory, pinned until release
// is called, which the caller does once the C call that takes the
// template has returned (the token copies it).
func attrTemplate(inner []*pkcs11.Attribute) (value []byte, release func()) {
	var pin runtime.Pinner
	word := int(unsafe.Sizeof(uintptr(0)))
	rec := 3 * word // CK_ATTRIBUTE: type, pValue, ulValueLen
	out := make([]byte, rec*len(inner))
	for i, a := range inner {
		r := out[i*rec:]
		putULong(r, a.Type)
		if len(a.Value) > 0 {
			v := a.Value
			pin.Pin(&v[0])
			putULong(r[word:], uint(uintptr(unsafe.Pointer(&v[0]))))
		}
		putULong(r[2*word:], uint(len(a.Value)))
	}
	return out, pin.Unpin
}

// templateTypes decodes the attribute types of a CKA_UNWRAP_TEMPLATE read
// back: miekg/pkcs11 passes no buffers for the inner values, so the token
// returns the types and lengths only.
func templateTypes(b []byte) ([]uint, bool) {
	word := int(unsafe.Sizeof(uintptr(0)))
	rec := 3 * word
	if len(b)%rec != 0 {
		return nil, false
	}
	var out []uint
	for i := 0; i+rec <= len(b); i += rec {
		v, _ := ulong(b[i : i+word])
		out = append(out, v)
	}
	return out, true
}

// allowedAttr is CKA_ALLOWED_MECHANISMS for the template of an object that
// may use only mechs; none on a token that does not know the attribute
// (Profile.LacksAllowedMechanisms).
func (p *PKCS11) allowedAttr(mechs ...uint) []*pkcs11.Attribute {
	if p.cfg.Profile.LacksAllowedMechanisms {
		return nil
	}
	return []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ALLOWED_MECHANISMS, mechanismList(mechs...))}
}

// notCopyable is CKA_COPYABLE=false for a template, unless the token does
// not know the attribute (Profile.LacksCopyable).
func (p *PKCS11) notCopyable() []*pkcs11.Attribute {
	if p.cfg.Profile.LacksCopyable {
		return nil
	}
	return []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false)}
}

// versionMechanisms are the mechanisms a key version may use: AES-GCM, and
// for imported material under a token that generates GCM IVs also
// AES-ECB, which its key check value needs (KeyCheckValue). An imported
// key never rotates, so it is never decrypt-only, and a PIN holder who may
// use it with GCM gains nothing from ECB.
func (p *PKCS11) versionMechanisms(imported bool) []uint {
	if imported && p.cfg.Profile.TokenGeneratesIV {
		return []uint{pkcs11.CKM_AES_GCM, pkcs11.CKM_AES_ECB}
	}
	return []uint{pkcs11.CKM_AES_GCM}
}

// checkAllowed reads CKA_ALLOWED_MECHANISMS of h back and refuses an
// object that allows a mechanism outside want (an empty list allows all).
func (p *PKCS11) checkAllowed(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, want []uint, what string) error {
	if p.cfg.Profile.LacksAllowedMechanisms {
		return nil
	}
	if drift, err := p.mechanismDrift(c, sh, h, want); err != nil {
		return translate("read CKA_ALLOWED_MECHANISMS of "+what, err)
	} else if drift != "" {
		return fmt.Errorf("%w: %s has %s", ErrAttributeMismatch, what, drift)
	}
	return nil
}

// mechanismDrift describes how h's allowed mechanisms differ from want
// ("" when they do not allow more).
func (p *PKCS11) mechanismDrift(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, want []uint) (string, error) {
	b, err := attr(c, sh, h, pkcs11.CKA_ALLOWED_MECHANISMS)
	if hasCode(err, []uint{pkcs11.CKR_ATTRIBUTE_TYPE_INVALID}) {
		return "no CKA_ALLOWED_MECHANISMS", nil
	}
	if err != nil {
		return "", err
	}
	got, ok := parseMechanismList(b)
	if !ok || len(got) == 0 {
		return "CKA_ALLOWED_MECHANISMS empty (every mechanism)", nil
	}
	for _, m := range got {
		if !slices.Contains(want, m) {
			return fmt.Sprintf("CKA_ALLOWED_MECHANISMS with 0x%X", m), nil
		}
	}
	return "", nil
}
