package hsm

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/miekg/pkcs11"
)

// macKey makes an HMAC key in p's token and destroys it at the end.
func macKey(t *testing.T, p *PKCS11) ObjectRef {
	t.Helper()
	ref := newRef()
	if err := p.GenerateMACKey(testCtx(t), ref); err != nil {
		t.Fatalf("GenerateMACKey: %v", err)
	}
	t.Cleanup(func() { p.Destroy(context.Background(), ref) })
	return ref
}

func TestHMACIsAFunctionOfKeyAndData(t *testing.T) {
	p := sharedToken(t)
	ctx := testCtx(t)
	a, b := macKey(t, p), macKey(t, p)
	mac := func(ref ObjectRef, data string) []byte {
		t.Helper()
		m, err := p.HMACSHA256(ctx, ref, []byte(data))
		if err != nil {
			t.Fatalf("HMACSHA256: %v", err)
		}
		if len(m) != 32 {
			t.Fatalf("HMAC of %d bytes", len(m))
		}
		return m
	}
	first := mac(a, "AKIA0001|nonce")
	if !bytes.Equal(first, mac(a, "AKIA0001|nonce")) {
		t.Error("the same key and data gave two MACs")
	}
	if bytes.Equal(first, mac(a, "AKIA0002|nonce")) {
		t.Error("other data gave the same MAC")
	}
	if bytes.Equal(first, mac(b, "AKIA0001|nonce")) {
		t.Error("another key gave the same MAC")
	}
	// Idempotent generation reuses the object: the MAC stays the same.
	if err := p.GenerateMACKey(ctx, a); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, mac(a, "AKIA0001|nonce")) {
		t.Error("generating the key again changed it")
	}
}

// TestMACKeyStaysInside: the token refuses to reveal the MAC key or to
// use it for anything but signing.
func TestMACKeyStaysInside(t *testing.T) {
	p := sharedToken(t)
	ref := macKey(t, p)
	r := rawSession(t, p)
	h := r.one(ref)
	if v, err := r.c.GetAttributeValue(r.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}); !hasCode(err, []uint{pkcs11.CKR_ATTRIBUTE_SENSITIVE}) {
		t.Errorf("reading CKA_VALUE = %v, %v; want CKR_ATTRIBUTE_SENSITIVE", v, err)
	}
	if err := r.c.SetAttributeValue(r.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)}); !hasCode(err, []uint{pkcs11.CKR_ATTRIBUTE_READ_ONLY}) {
		t.Errorf("setting CKA_EXTRACTABLE=true = %v, want CKR_ATTRIBUTE_READ_ONLY", err)
	}
	if _, _, err := p.Encrypt(testCtx(t), ref, []byte("x"), nil); err == nil {
		t.Error("the MAC key encrypted")
	}
}

func TestHMACRefusals(t *testing.T) {
	p := sharedToken(t)
	ctx := testCtx(t)
	aes := generated(t, p)
	if _, err := p.HMACSHA256(ctx, aes, []byte("x")); err == nil {
		t.Error("an AES key version (CKA_SIGN=false) computed an HMAC")
	}
	if err := p.GenerateMACKey(ctx, aes); !errors.Is(err, ErrAttributeMismatch) {
		t.Errorf("GenerateMACKey over an AES object = %v, want ErrAttributeMismatch", err)
	}
	if _, err := p.HMACSHA256(ctx, newRef(), []byte("x")); !errors.Is(err, ErrObjectNotFound) {
		t.Errorf("HMAC under a missing key = %v, want ErrObjectNotFound", err)
	}
}
