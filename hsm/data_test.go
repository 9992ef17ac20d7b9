package hsm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/miekg/pkcs11"
)

// A data object is written, replaced and read back; it is a private
// token object.
func TestDataObject(t *testing.T) {
	p := sharedToken(t)
	ctx := testCtx(t)
	label := "hsmkms-test-" + uuid.NewString()
	if p.cfg.Profile.LacksTokenDataObjects {
		// Such a token refuses them: say so, never pretend to keep them.
		if err := p.WriteData(ctx, label, []byte("one")); !errors.Is(err, ErrNoDataObjects) {
			t.Fatalf("write on a token without data objects: %v, want ErrNoDataObjects", err)
		}
		t.Skip("the token keeps no private data objects (Profile.LacksTokenDataObjects)")
	}
	if _, err := p.ReadData(ctx, label); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("read before write: %v, want ErrObjectNotFound", err)
	}
	r := rawSession(t, p)
	t.Cleanup(func() {
		for _, h := range r.findData(label) {
			r.c.DestroyObject(r.sh, h)
		}
	})
	for _, v := range [][]byte{[]byte("one"), []byte("two, longer than one")} {
		if err := p.WriteData(ctx, label, v); err != nil {
			t.Fatal(err)
		}
		got, err := p.ReadData(ctx, label)
		if err != nil || len(got) != 1 || !bytes.Equal(got[0], v) {
			t.Fatalf("read %q, %v; want %q", got, err, v)
		}
	}
	if n := len(r.findData(label)); n != 1 {
		t.Fatalf("%d data objects after two writes, want 1 (the old one destroyed)", n)
	}
	h := r.findData(label)[0]
	a, err := r.c.GetAttributeValue(r.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, nil), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil)})
	if err != nil || a[0].Value[0] != 1 || a[1].Value[0] != 1 {
		t.Fatalf("CKA_PRIVATE/CKA_TOKEN = %v, %v; want both true", a, err)
	}
	// A second object under the label (a crash between create and
	// destroy) is read too, and the next write leaves one.
	if _, err := r.c.CreateObject(r.sh, append(dataTemplate(label), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true), pkcs11.NewAttribute(pkcs11.CKA_VALUE, []byte("other")))); err != nil {
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
func (r *raw) findData(label string) []pkcs11.ObjectHandle {
	r.t.Helper()
	if err := r.c.FindObjectsInit(r.sh, dataTemplate(label)); err != nil {
		r.t.Fatal(err)
	}
	hs, _, err := r.c.FindObjects(r.sh, 10)
	r.c.FindObjectsFinal(r.sh)
	if err != nil {
		r.t.Fatal(err)
	}
	return hs
}
