package api_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// Every damaged blob is InvalidCiphertextException: never a panic, never a
// 500, never plaintext.
func TestTamperedBlobsAreInvalidCiphertext(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ctx := kmstest.Ctx(t)
	c := s.Client
	a, err := c.CreateKey(ctx, client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.CreateKey(ctx, client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	encCtx := map[string]string{"tenant": "acme", "purpose": "test"}
	encA, err := c.Encrypt(ctx, a.KeyID, []byte("attack at dawn"), encCtx)
	if err != nil {
		t.Fatal(err)
	}
	encB, err := c.Encrypt(ctx, b.KeyID, []byte("attack at dawn"), encCtx)
	if err != nil {
		t.Fatal(err)
	}
	blob := encA.CiphertextBlob

	expectInvalid := func(t *testing.T, name string, blob []byte, encCtx map[string]string) {
		t.Helper()
		_, err := c.Decrypt(ctx, blob, encCtx, "")
		if code := client.Code(err); code != "InvalidCiphertextException" {
			t.Errorf("%s: got %v, want InvalidCiphertextException", name, err)
		}
	}

	t.Run("every single byte changed", func(t *testing.T) {
		for i := range blob {
			for _, mask := range []byte{0x01, 0x80, 0xff} {
				bad := bytes.Clone(blob)
				bad[i] ^= mask
				expectInvalid(t, "byte flip", bad, encCtx)
			}
		}
	})
	t.Run("truncated", func(t *testing.T) {
		for n := 0; n < len(blob); n++ {
			expectInvalid(t, "truncated", blob[:n], encCtx)
		}
	})
	t.Run("extended", func(t *testing.T) {
		expectInvalid(t, "extra byte", append(bytes.Clone(blob), 0), encCtx)
	})
	t.Run("header of another key", func(t *testing.T) {
		swapped := bytes.Clone(encB.CiphertextBlob)
		copy(swapped[:21], blob[:21]) // B's body under A's key id and version
		expectInvalid(t, "B body, A header", swapped, encCtx)
		swapped = bytes.Clone(blob)
		copy(swapped[:21], encB.CiphertextBlob[:21])
		expectInvalid(t, "A body, B header", swapped, encCtx)
	})
	t.Run("encryption context differs", func(t *testing.T) {
		for name, ec := range map[string]map[string]string{
			"missing":       nil,
			"value changed": {"tenant": "acme", "purpose": "prod"},
			"pair dropped":  {"tenant": "acme"},
			"pair added":    {"tenant": "acme", "purpose": "test", "x": "y"},
			"key renamed":   {"tenant": "acme", "purposE": "test"},
			"shifted bytes": {"tenant": "acm", "epurpose": "test"},
		} {
			expectInvalid(t, name, blob, ec)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		expectInvalid(t, "zeros", make([]byte, 64), nil)
		expectInvalid(t, "huge", bytes.Repeat([]byte{1}, 6000), nil)
	})

	// Nothing was lost: the genuine blobs still decrypt.
	for _, e := range []*client.EncryptResult{encA, encB} {
		dec, err := c.Decrypt(ctx, e.CiphertextBlob, encCtx, "")
		if err != nil || string(dec.Plaintext) != "attack at dawn" {
			t.Fatalf("genuine blob after tampering: %v", err)
		}
	}
	// A key id that is not the blob's is IncorrectKeyException.
	_, err = c.Decrypt(ctx, blob, encCtx, b.KeyID)
	if client.Code(err) != "IncorrectKeyException" {
		t.Fatalf("decrypt with another key id: %v, want IncorrectKeyException", err)
	}
	if dec, err := c.Decrypt(ctx, blob, encCtx, a.KeyID); err != nil || dec.KeyID != a.KeyID {
		t.Fatalf("decrypt naming the right key: %v", err)
	}
}

// A blob is bound to its context by length-prefixed encoding: contexts
// whose plain concatenations are equal still differ.
func TestContextEncodingIsUnambiguous(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ctx := kmstest.Ctx(t)
	k, err := s.Client.CreateKey(ctx, client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := s.Client.Encrypt(ctx, k.KeyID, []byte("x"), map[string]string{"ab": "c"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Client.Decrypt(ctx, enc.CiphertextBlob, map[string]string{"a": "bc"}, "")
	if client.Code(err) != "InvalidCiphertextException" {
		t.Fatalf("{a:bc} opened a blob bound to {ab:c}: %v", err)
	}
	var status int
	if e, ok := err.(*client.Error); ok {
		status = e.Status
	}
	if status != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", status)
	}
}
