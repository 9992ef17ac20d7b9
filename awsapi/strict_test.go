package awsapi_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// TestBodiesAreStrict: member names are matched exactly as AWS spells
// them, none may repeat and none may be unknown to the operation. Each bad
// body is a correctly signed request refused 400 ValidationException that
// changes nothing: no key made, none scheduled for deletion, no tag set,
// nothing encrypted; the same operation with its exact body succeeds.
func TestBodiesAreStrict(t *testing.T) {
	s := start(t)
	ctx := kmstest.Ctx(t)
	k := s.accessKey(t, "admin")
	c := s.kmsClient(k.AccessKeyID, k.SecretAccessKey)
	key := must[*kms.CreateKeyOutput](t, "CreateKey")(c.CreateKey(ctx, &kms.CreateKeyInput{}))
	id := *key.KeyMetadata.KeyId

	send := func(target, body string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, s.url+"/", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", "TrentService."+target)
		sum := sha256.Sum256([]byte(body))
		creds := aws.Credentials{AccessKeyID: k.AccessKeyID, SecretAccessKey: k.SecretAccessKey}
		if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "kms", region, time.Now()); err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var e struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(b, &e)
		return res.StatusCode, e.Type, e.Message
	}
	q := func(s string) string { return `"` + s + `"` }
	for _, tc := range []struct {
		name, target, body, says string
	}{
		{"a name twice", "CreateKey", `{"Description":"a","Description":"b"}`, "more than once"},
		{"another case", "CreateKey", `{"description":"a"}`, "unknown field description"},
		{"an unknown name", "CreateKey", `{"Description":"a","Frobnicate":true}`, "unknown field Frobnicate"},
		{"a name twice", "ScheduleKeyDeletion", `{"KeyId":` + q(id) + `,"PendingWindowInDays":30,"PendingWindowInDays":7}`, "more than once"},
		{"another case", "ScheduleKeyDeletion", `{"keyId":` + q(id) + `}`, "unknown field keyId"},
		{"an unknown option", "ScheduleKeyDeletion", `{"KeyId":` + q(id) + `,"DryRunOnly":true}`, "unknown field DryRunOnly"},
		{"a tag key twice in a nested object", "TagResource", `{"KeyId":` + q(id) + `,"Tags":[{"TagKey":"a","TagKey":"b","TagValue":"v"}]}`, "Tags.0.TagKey"},
		{"another case in a nested object", "TagResource", `{"KeyId":` + q(id) + `,"Tags":[{"tagKey":"a","TagValue":"v"}]}`, "unknown field Tags.0.tagKey"},
		{"a context key twice", "Encrypt", `{"KeyId":` + q(id) + `,"Plaintext":"eA==","EncryptionContext":{"to":"alice","to":"mallory"}}`, "more than once"},
		{"two objects", "Encrypt", `{"KeyId":` + q(id) + `,"Plaintext":"eA=="} {}`, "exactly one"},
		{"a wrong type", "Encrypt", `{"KeyId":` + q(id) + `,"Plaintext":7}`, "wrong type"},
		{"not base64", "Encrypt", `{"KeyId":` + q(id) + `,"Plaintext":"!!"}`, "wrong type"},
		{"malformed", "Encrypt", `{"KeyId":`, "not a valid JSON object"},
	} {
		status, typ, msg := send(tc.target, tc.body)
		if status != http.StatusBadRequest || typ != "ValidationException" || !strings.Contains(msg, tc.says) {
			t.Errorf("%s %s %s: %d %s %q, want 400 ValidationException saying %q", tc.target, tc.name, tc.body, status, typ, msg, tc.says)
		}
	}
	keys := must[*kms.ListKeysOutput](t, "ListKeys")(c.ListKeys(ctx, &kms.ListKeysInput{}))
	if len(keys.Keys) != 1 {
		t.Errorf("refused CreateKey bodies made keys: %d keys", len(keys.Keys))
	}
	d := must[*kms.DescribeKeyOutput](t, "DescribeKey")(c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &id}))
	if d.KeyMetadata.KeyState != types.KeyStateEnabled || d.KeyMetadata.DeletionDate != nil {
		t.Errorf("a refused ScheduleKeyDeletion changed the key: %s %v", d.KeyMetadata.KeyState, d.KeyMetadata.DeletionDate)
	}
	tags := must[*kms.ListResourceTagsOutput](t, "ListResourceTags")(c.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: &id}))
	if len(tags.Tags) != 0 {
		t.Errorf("a refused TagResource set tags: %+v", tags.Tags)
	}
	// The exact spellings are accepted.
	if status, typ, msg := send("TagResource", `{"KeyId":`+q(id)+`,"Tags":[{"TagKey":"a","TagValue":"v"}]}`); status != 200 {
		t.Fatalf("TagResource with its exact body: %d %s %s", status, typ, msg)
	}
	if status, typ, msg := send("Encrypt", `{"KeyId":`+q(id)+`,"Plaintext":"eA==","EncryptionContext":{"to":"alice"}}`); status != 200 {
		t.Fatalf("Encrypt with its exact body: %d %s %s", status, typ, msg)
	}
}

// TestSDKMembersKnown: members the AWS SDK sends for options hsmkms has no
// use for are accepted where they change nothing (grant tokens, the policy
// lockout check, the current account, rotations only) and refused with
// UnsupportedOperationException where they would change what is asked
// (another account's keys, several key materials, an enclave recipient),
// never as unknown members; a refused request made no key.
func TestSDKMembersKnown(t *testing.T) {
	s := start(t)
	ctx := kmstest.Ctx(t)
	k := s.accessKey(t, "admin")
	c := s.kmsClient(k.AccessKeyID, k.SecretAccessKey)
	key := must[*kms.CreateKeyOutput](t, "CreateKey")(c.CreateKey(ctx, &kms.CreateKeyInput{BypassPolicyLockoutSafetyCheck: false}))
	id := key.KeyMetadata.KeyId
	before := must[*kms.ListKeysOutput](t, "ListKeys")(c.ListKeys(ctx, &kms.ListKeysInput{
		ResourceOwners: []types.ResourceOwnerType{types.ResourceOwnerTypeSelf}}))
	for name, call := range map[string]func() error{
		"DescribeKey with GrantTokens": func() error {
			_, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: id, GrantTokens: []string{"gt"}})
			return err
		},
		"ListKeyRotations ROTATIONS_ONLY": func() error {
			_, err := c.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: id, IncludeKeyMaterial: types.IncludeKeyMaterialRotationsOnly})
			return err
		},
		"CreateKey with BypassPolicyLockoutSafetyCheck": func() error {
			out, err := c.CreateKey(ctx, &kms.CreateKeyInput{BypassPolicyLockoutSafetyCheck: true})
			if err == nil {
				_, err = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: out.KeyMetadata.KeyId})
			}
			return err
		},
	} {
		if err := call(); err != nil {
			t.Errorf("%s: %v, want success", name, err)
		}
	}
	unsupported := map[string]func() error{
		"ListKeys OTHER_ACCOUNTS_VIA_RAM": func() error {
			_, err := c.ListKeys(ctx, &kms.ListKeysInput{ResourceOwners: []types.ResourceOwnerType{types.ResourceOwnerTypeOtherAccountsViaRam}})
			return err
		},
		"ListKeyRotations ALL_KEY_MATERIAL": func() error {
			_, err := c.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: id, IncludeKeyMaterial: types.IncludeKeyMaterialAllKeyMaterial})
			return err
		},
		"Decrypt with a Recipient": func() error {
			_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: []byte("x"), Recipient: &types.RecipientInfo{
				KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256, AttestationDocument: []byte("doc")}})
			return err
		},
		"ImportKeyMaterial with ImportType": func() error {
			_, err := c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: id, ImportToken: []byte("t"),
				EncryptedKeyMaterial: []byte("m"), ImportType: types.ImportTypeNewKeyMaterial})
			return err
		},
		"DeleteImportedKeyMaterial with KeyMaterialId": func() error {
			_, err := c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: id, KeyMaterialId: aws.String("m1")})
			return err
		},
	}
	for name, call := range unsupported {
		if err := call(); code(err) != "UnsupportedOperationException" {
			t.Errorf("%s: %v, want UnsupportedOperationException", name, err)
		}
	}
	after := must[*kms.ListKeysOutput](t, "ListKeys")(c.ListKeys(ctx, &kms.ListKeysInput{}))
	if len(after.Keys) != len(before.Keys)+1 { // the one made and scheduled above
		t.Errorf("keys: %d before, %d after; want one more (the BypassPolicyLockoutSafetyCheck key)", len(before.Keys), len(after.Keys))
	}
	d := must[*kms.DescribeKeyOutput](t, "DescribeKey")(c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: id}))
	if d.KeyMetadata.KeyState != types.KeyStateEnabled {
		t.Errorf("key %s after the refused requests: %s, want Enabled", *id, d.KeyMetadata.KeyState)
	}
}
