package api_test

import (
	"bytes"
	"testing"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// The seed scenario: an alias moved from key A to key B (manual rotation);
// blobs made through the alias before and after both decrypt without a key
// id, each by the key that made it.
func TestSeedScenarioAliasRebinding(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ctx := kmstest.Ctx(t)
	c := s.Client

	a, err := c.CreateKey(ctx, client.CreateKeyRequest{Description: "key A"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, "alias/MyAppKey", a.KeyID); err != nil {
		t.Fatal(err)
	}
	encA, err := c.Encrypt(ctx, "alias/MyAppKey", []byte("secret one"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if encA.KeyID != a.KeyID || encA.KeyVersion != 1 {
		t.Fatalf("encrypt via alias used %s v%d, want %s v1", encA.KeyID, encA.KeyVersion, a.KeyID)
	}

	b, err := c.CreateKey(ctx, client.CreateKeyRequest{Description: "key B"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateAlias(ctx, "alias/MyAppKey", b.KeyID); err != nil {
		t.Fatal(err)
	}
	encB, err := c.Encrypt(ctx, "alias/MyAppKey", []byte("secret two"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if encB.KeyID != b.KeyID {
		t.Fatalf("after UpdateAlias encrypt used %s, want key B %s", encB.KeyID, b.KeyID)
	}

	for _, tc := range []struct {
		blob  []byte
		key   string
		plain string
	}{{encA.CiphertextBlob, a.KeyID, "secret one"}, {encB.CiphertextBlob, b.KeyID, "secret two"}} {
		dec, err := c.Decrypt(ctx, tc.blob, nil, "")
		if err != nil {
			t.Fatalf("decrypt blob of %s: %v", tc.key, err)
		}
		if dec.KeyID != tc.key || !bytes.Equal(dec.Plaintext, []byte(tc.plain)) {
			t.Fatalf("decrypt gave key %s %q, want %s %q", dec.KeyID, dec.Plaintext, tc.key, tc.plain)
		}
	}

	// DescribeKey by alias follows the binding; key A keeps no alias.
	kb, err := c.DescribeKey(ctx, "alias/MyAppKey")
	if err != nil {
		t.Fatal(err)
	}
	if kb.KeyID != b.KeyID || len(kb.Aliases) != 1 || kb.Aliases[0] != "alias/MyAppKey" {
		t.Fatalf("describe via alias: %+v", kb)
	}
	ka, err := c.DescribeKey(ctx, a.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ka.Aliases) != 0 || ka.KeyState != "Enabled" || ka.PrimaryKeyVersion != 1 || ka.KeyUsage != "ENCRYPT_DECRYPT" {
		t.Fatalf("key A after rebinding: %+v", ka)
	}
}
