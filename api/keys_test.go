package api_test

import (
	"bytes"
	"sort"
	"testing"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

func TestDisabledKeyRefusesCryptoUntilEnabled(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ctx := kmstest.Ctx(t)
	c := s.Client
	k, err := c.CreateKey(ctx, client.CreateKeyRequest{Alias: "alias/app"})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := c.Encrypt(ctx, k.KeyID, []byte("before"), nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.DisableKey(ctx, "alias/app")
	if err != nil || d.KeyState != "Disabled" {
		t.Fatalf("disable: %v %+v", err, d)
	}
	checks := map[string]func() error{
		"encrypt": func() error { _, err := c.Encrypt(ctx, k.KeyID, []byte("x"), nil); return err },
		"decrypt": func() error { _, err := c.Decrypt(ctx, enc.CiphertextBlob, nil, ""); return err },
		"data key": func() error {
			_, err := c.GenerateDataKey(ctx, client.DataKeyRequest{KeyID: k.KeyID, KeySpec: "AES_256"})
			return err
		},
		"re-encrypt": func() error {
			_, err := c.ReEncrypt(ctx, client.ReEncryptRequest{CiphertextBlob: enc.CiphertextBlob, DestinationKeyID: k.KeyID})
			return err
		},
	}
	for name, f := range checks {
		if err := f(); client.Code(err) != "DisabledException" {
			t.Errorf("%s on a disabled key: %v, want DisabledException", name, err)
		}
	}
	if e, err := c.EnableKey(ctx, k.KeyID); err != nil || e.KeyState != "Enabled" {
		t.Fatalf("enable: %v", err)
	}
	if dec, err := c.Decrypt(ctx, enc.CiphertextBlob, nil, ""); err != nil || string(dec.Plaintext) != "before" {
		t.Fatalf("decrypt after enable: %v", err)
	}
}

func TestDataKeysReEncryptAndRandom(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ctx := kmstest.Ctx(t)
	c := s.Client
	a, err := c.CreateKey(ctx, client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.CreateKey(ctx, client.CreateKeyRequest{Alias: "alias/dest"})
	if err != nil {
		t.Fatal(err)
	}
	ec := map[string]string{"file": "report.pdf"}
	for _, tc := range []struct {
		spec string
		n    int
		want int
	}{{"AES_256", 0, 32}, {"AES_128", 0, 16}, {"", 1, 1}, {"", 1024, 1024}} {
		dk, err := c.GenerateDataKey(ctx, client.DataKeyRequest{KeyID: a.KeyID, KeySpec: tc.spec, NumberOfBytes: tc.n, EncryptionContext: ec})
		if err != nil {
			t.Fatalf("%s/%d: %v", tc.spec, tc.n, err)
		}
		if len(dk.Plaintext) != tc.want || dk.KeyID != a.KeyID {
			t.Fatalf("data key of %d bytes, want %d", len(dk.Plaintext), tc.want)
		}
		dec, err := c.Decrypt(ctx, dk.CiphertextBlob, ec, "")
		if err != nil || !bytes.Equal(dec.Plaintext, dk.Plaintext) {
			t.Fatalf("encrypted data key does not open to the plaintext one: %v", err)
		}
	}
	np, err := c.GenerateDataKeyWithoutPlaintext(ctx, client.DataKeyRequest{KeyID: a.KeyID, KeySpec: "AES_256"})
	if err != nil || len(np.Plaintext) != 0 || len(np.CiphertextBlob) == 0 {
		t.Fatalf("without plaintext: %v %+v", err, np)
	}
	if dec, err := c.Decrypt(ctx, np.CiphertextBlob, nil, ""); err != nil || len(dec.Plaintext) != 32 {
		t.Fatalf("decrypt data key without plaintext: %v", err)
	}

	enc, err := c.Encrypt(ctx, a.KeyID, []byte("move me"), ec)
	if err != nil {
		t.Fatal(err)
	}
	re, err := c.ReEncrypt(ctx, client.ReEncryptRequest{CiphertextBlob: enc.CiphertextBlob, SourceEncryptionContext: ec,
		DestinationKeyID: "alias/dest", DestinationEncryptionContext: map[string]string{"new": "ctx"}})
	if err != nil {
		t.Fatal(err)
	}
	if re.SourceKeyID != a.KeyID || re.SourceKeyVersion != 1 || re.KeyID != b.KeyID || re.KeyVersion != 1 {
		t.Fatalf("re-encrypt result %+v", re)
	}
	dec, err := c.Decrypt(ctx, re.CiphertextBlob, map[string]string{"new": "ctx"}, b.KeyID)
	if err != nil || string(dec.Plaintext) != "move me" {
		t.Fatalf("re-encrypted blob: %v", err)
	}

	seen := map[string]bool{}
	for _, n := range []int{1, 32, 1024} {
		r, err := c.GenerateRandom(ctx, n)
		if err != nil || len(r) != n {
			t.Fatalf("random %d: %v len %d", n, err, len(r))
		}
		if seen[string(r)] {
			t.Fatal("token RNG repeated itself")
		}
		seen[string(r)] = true
	}
}

func TestListPaginationUpdateAndAliases(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ctx := kmstest.Ctx(t)
	c := s.Client
	var ids []string
	for i := 0; i < 5; i++ {
		k, err := c.CreateKey(ctx, client.CreateKeyRequest{Description: "k"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, k.KeyID)
	}
	var got []string
	next := ""
	for pages := 0; ; pages++ {
		p, err := c.ListKeys(ctx, 2, next)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range p.Keys {
			got = append(got, k.KeyID)
		}
		if p.NextToken == "" {
			break
		}
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		next = p.NextToken
	}
	sort.Strings(ids)
	sort.Strings(got)
	if len(got) != 5 || !equal(got, ids) {
		t.Fatalf("paged keys %v, want %v", got, ids)
	}

	desc := "new description"
	u, err := c.UpdateKey(ctx, ids[0], client.UpdateKeyRequest{Description: &desc, Tags: map[string]string{"team": "pay"}})
	if err != nil || u.Description != desc || u.Tags["team"] != "pay" {
		t.Fatalf("update: %v %+v", err, u)
	}
	u, err = c.UpdateKey(ctx, ids[0], client.UpdateKeyRequest{Tags: map[string]string{"team": "ops"}})
	if err != nil || u.Description != desc || len(u.Tags) != 1 || u.Tags["team"] != "ops" {
		t.Fatalf("update tags only: %v %+v", err, u)
	}

	// An alias name with '/' travels %2F-encoded in paths.
	if _, err := c.CreateAlias(ctx, "alias/team/app", ids[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, "alias/second", "alias/team/app"); err != nil {
		t.Fatal(err)
	}
	k, err := c.DescribeKey(ctx, "alias/team/app")
	if err != nil || k.KeyID != ids[1] || len(k.Aliases) != 2 {
		t.Fatalf("describe by slashed alias: %v %+v", err, k)
	}
	p, err := c.ListAliases(ctx, ids[1], 1, "")
	if err != nil || len(p.Aliases) != 1 || p.NextToken == "" {
		t.Fatalf("list aliases page 1: %v %+v", err, p)
	}
	p2, err := c.ListAliases(ctx, ids[1], 1, p.NextToken)
	if err != nil || len(p2.Aliases) != 1 || p2.Aliases[0].AliasName == p.Aliases[0].AliasName {
		t.Fatalf("list aliases page 2: %v %+v", err, p2)
	}
	if _, err := c.UpdateAlias(ctx, "alias/team/app", ids[2]); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteAlias(ctx, "alias/team/app"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DescribeKey(ctx, "alias/team/app"); client.Code(err) != "NotFoundException" {
		t.Fatalf("deleted alias still resolves: %v", err)
	}
	if _, err := c.DescribeKey(ctx, ids[2]); err != nil {
		t.Fatalf("deleting an alias touched its key: %v", err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The token holds exactly one object per version the store knows, each
// sensitive and never extractable.
func TestTokenInventoryMatchesStore(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ctx := kmstest.Ctx(t)
	want := map[hsm.ObjectRef]bool{}
	mine := map[uuid.UUID]bool{}
	for i := 0; i < 3; i++ {
		k, err := s.Client.CreateKey(ctx, client.CreateKeyRequest{})
		if err != nil {
			t.Fatal(err)
		}
		vs, err := s.Client.ListVersions(ctx, k.KeyID)
		if err != nil || len(vs) != 1 {
			t.Fatalf("versions %+v, %v", vs, err)
		}
		ref, err := hsm.ParseLabel(vs[0].TokenObjectLabel)
		if err != nil || ref.Legacy() {
			t.Fatalf("token object label %q of a new version (%v): want one with a nonce", vs[0].TokenObjectLabel, err)
		}
		want[ref], mine[ref.KeyID] = true, true
	}
	inv, err := s.Token.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := map[hsm.ObjectRef]int{}
	for _, o := range inv {
		if !mine[o.Ref.KeyID] {
			continue // another test's key in the shared token
		}
		found[o.Ref]++
		if !o.Sensitive || o.Extractable || !o.NeverExtractable || !o.AlwaysSensitive || o.Local != kmstest.Profile(t).ReportsLocal {
			t.Errorf("%s is exportable or not generated in the token: %+v", o.Label, o)
		}
		if !o.Encrypt || !o.Decrypt {
			t.Errorf("%s lacks encrypt/decrypt: %+v", o.Label, o)
		}
	}
	for ref := range want {
		if found[ref] != 1 {
			t.Errorf("%s: %d objects in the token, want 1", ref, found[ref])
		}
	}
	if len(found) != len(want) {
		t.Errorf("token has objects the store does not know: %v", found)
	}
}
