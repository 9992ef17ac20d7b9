package kmstest

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
	"github.com/miekg/pkcs11"
)

// Outsider is someone else with the token's user PIN: a raw PKCS#11 session
// beside the service's, used to change the token behind the service's back
// (re-enable encryption on a decrypt-only object, destroy an object, create
// a stray one) and to try to export key material.
type Outsider struct {
	ctx *pkcs11.Ctx
	sh  pkcs11.SessionHandle
}

// NewOutsider opens a session on the test token. The module is already
// initialised by the service in this process; login state is shared, so the
// session can use private objects. It never finalizes the module.
func NewOutsider(t testing.TB) *Outsider {
	t.Helper()
	Token(t) // the module is initialised and logged in
	env := softhsmtest.Get(t)
	p := pkcs11.New(env.Module)
	if p == nil {
		t.Fatalf("load %s", env.Module)
	}
	if err := p.Initialize(); err != nil && err != pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		t.Fatalf("initialize: %v", err)
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil || ti.Label != env.Label {
			continue
		}
		sh, err := p.OpenSession(s, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Login(sh, pkcs11.CKU_USER, env.PIN); err != nil && err != pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
			t.Fatal(err)
		}
		o := &Outsider{ctx: p, sh: sh}
		t.Cleanup(func() { p.CloseSession(sh) })
		return o
	}
	t.Fatalf("token %q not found", env.Label)
	return nil
}

// Find returns the handle of ref's object.
func (o *Outsider) Find(ref hsm.ObjectRef) (pkcs11.ObjectHandle, error) {
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, ref.ID())}
	if err := o.ctx.FindObjectsInit(o.sh, tmpl); err != nil {
		return 0, err
	}
	hs, _, err := o.ctx.FindObjects(o.sh, 2)
	o.ctx.FindObjectsFinal(o.sh)
	if err != nil {
		return 0, err
	}
	if len(hs) != 1 {
		return 0, fmt.Errorf("%d objects for %s", len(hs), ref)
	}
	return hs[0], nil
}

// SetEncrypt sets CKA_ENCRYPT on ref's object.
func (o *Outsider) SetEncrypt(ref hsm.ObjectRef, on bool) error {
	h, err := o.Find(ref)
	if err != nil {
		return err
	}
	return o.ctx.SetAttributeValue(o.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, on)})
}

// Destroy destroys ref's object.
func (o *Outsider) Destroy(ref hsm.ObjectRef) error {
	h, err := o.Find(ref)
	if err != nil {
		return err
	}
	return o.ctx.DestroyObject(o.sh, h)
}

// ReadValue tries to read CKA_VALUE (the key material) of ref's object.
func (o *Outsider) ReadValue(ref hsm.ObjectRef) ([]byte, error) {
	h, err := o.Find(ref)
	if err != nil {
		return nil, err
	}
	attrs, err := o.ctx.GetAttributeValue(o.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil {
		return nil, err
	}
	return attrs[0].Value, nil
}

// SetExtractable tries to make ref's object extractable.
func (o *Outsider) SetExtractable(ref hsm.ObjectRef) error {
	h, err := o.Find(ref)
	if err != nil {
		return err
	}
	return o.ctx.SetAttributeValue(o.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)})
}

// WrapWith tries to export ref's object by wrapping it under a fresh session
// AES key (what an attacker with the PIN would try first).
func (o *Outsider) WrapWith(ref hsm.ObjectRef) ([]byte, error) {
	h, err := o.Find(ref)
	if err != nil {
		return nil, err
	}
	wk, err := o.ctx.GenerateKey(o.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		})
	if err != nil {
		return nil, err
	}
	defer o.ctx.DestroyObject(o.sh, wk)
	return o.ctx.WrapKey(o.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil)}, wk, h)
}

// CreateStray generates an object with ref's CKA_ID and label, as a crashed
// earlier process could have left.
func (o *Outsider) CreateStray(ref hsm.ObjectRef) error {
	_, err := o.ctx.GenerateKey(o.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_ID, ref.ID()),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, ref.Label()),
		})
	return err
}

// PlantKnownKey is the attack of issue 16, item 1: it makes an AES key
// whose value it knows, derived (CKM_AES_ECB_ENCRYPT_DATA) from a fresh
// session key of its own, with ref's CKA_ID and label and the attributes
// of a version (its whole template; sensitive and never extractable, as a
// derived key of a sensitive key is), and returns the value: a version that took this
// object would encrypt under a key the attacker holds.
func (o *Outsider) PlantKnownKey(ref hsm.ObjectRef) ([]byte, error) {
	base, err := o.ctx.GenerateKey(o.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true), pkcs11.NewAttribute(pkcs11.CKA_DERIVE, true)})
	if err != nil {
		return nil, err
	}
	defer o.ctx.DestroyObject(o.sh, base)
	data := make([]byte, 32)
	if _, err := rand.Read(data); err != nil {
		return nil, err
	}
	if err := o.ctx.EncryptInit(o.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}, base); err != nil {
		return nil, err
	}
	value, err := o.ctx.Encrypt(o.sh, data)
	if err != nil {
		return nil, err
	}
	// CK_KEY_DERIVATION_STRING_DATA {pData, ulLen}, pData pinned for the call.
	var pin runtime.Pinner
	defer pin.Unpin()
	pin.Pin(&data[0])
	word := int(unsafe.Sizeof(uintptr(0)))
	gcmOnly := binary.NativeEndian.AppendUint64(nil, pkcs11.CKM_AES_GCM) // CKA_ALLOWED_MECHANISMS
	param := make([]byte, 2*word)
	binary.NativeEndian.PutUint64(param, uint64(uintptr(unsafe.Pointer(&data[0]))))
	binary.NativeEndian.PutUint64(param[word:], uint64(len(data)))
	tmpl := []*pkcs11.Attribute{
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
	derive := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB_ENCRYPT_DATA, param)}
	full := append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false), pkcs11.NewAttribute(pkcs11.CKA_ALLOWED_MECHANISMS, gcmOnly))
	if _, err = o.ctx.DeriveKey(o.sh, derive, base, full); err != nil {
		// A token without the two (NSS softoken) refuses them.
		_, err = o.ctx.DeriveKey(o.sh, derive, base, tmpl)
	}
	if err != nil {
		return nil, err
	}
	return value, nil
}

// SetBool sets a boolean attribute (CKA_DERIVE, CKA_DECRYPT, ...) of ref's
// object.
func (o *Outsider) SetBool(ref hsm.ObjectRef, attr uint, v bool) error {
	h, err := o.Find(ref)
	if err != nil {
		return err
	}
	return o.ctx.SetAttributeValue(o.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(attr, v)})
}

// Bool reads a boolean attribute of ref's object.
func (o *Outsider) Bool(ref hsm.ObjectRef, attr uint) (bool, error) {
	h, err := o.Find(ref)
	if err != nil {
		return false, err
	}
	a, err := o.ctx.GetAttributeValue(o.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(attr, nil)})
	if err != nil {
		return false, err
	}
	return len(a[0].Value) == 1 && a[0].Value[0] != 0, nil
}
