package hsm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/miekg/pkcs11"
)

// A data object is written, replaced and read back; it is a private
// token object. On a token without private data objects (NSS softoken) it
// is a key that can do nothing and reveals nothing.
func TestDataObject(t *testing.T) {
	p := sharedToken(t)
	ctx := testCtx(t)
	label := "hsmkms-test-" + uuid.NewString()
	t.Logf("profile %s: data objects kept in keys: %v", p.cfg.Profile.Name, p.cfg.Profile.LacksTokenDataObjects)
	if _, err := p.ReadData(ctx, label); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("read before write: %v, want ErrObjectNotFound", err)
	}
	r := rawSession(t, p)
	t.Cleanup(func() {
		for _, h := range r.findData(p, label) {
			r.c.DestroyObject(r.sh, h)
		}
	})
	// The last write repeats the value: it must stay (on NSS a key of the
	// same CKA_ID replaces the old one in place, under its handle).
	for _, v := range [][]byte{[]byte("one"), []byte("two, longer than one"), []byte("two, longer than one")} {
		if err := p.WriteData(ctx, label, v); err != nil {
			t.Fatal(err)
		}
		got, err := p.ReadData(ctx, label)
		if err != nil || len(got) != 1 || !bytes.Equal(got[0], v) {
			t.Fatalf("read %q, %v; want %q", got, err, v)
		}
	}
	if n := len(r.findData(p, label)); n != 1 {
		t.Fatalf("%d data objects after three writes, want 1 (the old ones destroyed)", n)
	}
	h := r.findData(p, label)[0]
	a, err := r.c.GetAttributeValue(r.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, nil), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil)})
	if err != nil || a[0].Value[0] != 1 || a[1].Value[0] != 1 {
		t.Fatalf("CKA_PRIVATE/CKA_TOKEN = %v, %v; want both true", a, err)
	}
	if p.cfg.Profile.LacksTokenDataObjects {
		// The key keeping the value: its key cannot be read or used.
		if _, err := r.c.GetAttributeValue(r.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}); err == nil {
			t.Error("the CKA_VALUE of the key keeping a data value is readable")
		}
		a, err := r.c.GetAttributeValue(r.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil), pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, nil), pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, nil)})
		if err != nil || a[0].Value[0] != 1 || a[1].Value[0] != 0 || a[2].Value[0] != 0 || a[3].Value[0] != 0 {
			t.Errorf("sensitive, extractable, encrypt, decrypt = %v, %v; want true, false, false, false", a, err)
		}
		if err := r.c.EncryptInit(r.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}, h); err == nil {
			r.c.EncryptFinal(r.sh)
			t.Error("the key keeping a data value encrypts")
		}
	}
	// A second object under the label (a crash between create and
	// destroy) is read too, and the next write leaves one.
	if _, err := p.createData(r.c, r.sh, label, []byte("other")); err != nil {
		t.Fatal(err)
	}
	if got, err := p.ReadData(ctx, label); err != nil || len(got) != 2 {
		t.Fatalf("read with two objects: %q, %v; want both", got, err)
	}
	if err := p.WriteData(ctx, label, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got, err := p.ReadData(ctx, label); err != nil || len(got) != 1 || string(got[0]) != "x" {
		t.Fatalf("read after the write: %q, %v; want [x]", got, err)
	}
}

// findData finds the objects keeping label's values, as p makes them.
func (r *raw) findData(p *PKCS11, label string) []pkcs11.ObjectHandle {
	r.t.Helper()
	tmpl := dataTemplate(label)
	if p.cfg.Profile.LacksTokenDataObjects {
		tmpl = dataKeyTemplate(label)
	}
	if err := r.c.FindObjectsInit(r.sh, tmpl); err != nil {
		r.t.Fatal(err)
	}
	hs, _, err := r.c.FindObjects(r.sh, 10)
	r.c.FindObjectsFinal(r.sh)
	if err != nil {
		r.t.Fatal(err)
	}
	return hs
}
