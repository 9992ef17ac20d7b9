package api_test

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// alias/managed/<service> names a default key that the service creates on
// first use by a principal allowed to use it, once, with a fixed yearly
// rotation; it can be used but not changed.
func TestManagedDefaultKeys(t *testing.T) {
	f := newAccessFixture(t)
	admin := f.admin
	// A principal allowed to use alias/managed/payments, and nothing else.
	admin.must(200, "PUT", "/v1/policies/managed-user", map[string]any{"document": map[string]any{"statements": []map[string]any{
		{"effect": "allow", "actions": []string{"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"}, "resources": []string{"alias/managed/payments"}}}}})
	admin.must(201, "POST", "/v1/principals", map[string]any{"name": "payments-app", "policies": []string{"managed-user"}})
	tok := admin.must(201, "POST", "/v1/principals/payments-app/tokens", map[string]any{})
	kmstest.Secret(tok["token"].(string))
	user := newCaller(t, f.s.URL, tok["token"].(string))

	// Someone not allowed to use it does not create it.
	f.viewer.must(403, "POST", "/v1/encrypt", map[string]any{"key_id": "alias/managed/payments", "plaintext": b64("x")})
	admin.must(404, "GET", "/v1/keys/alias/managed%2Fpayments", nil)
	// Nor does a mere look.
	user.must(404, "GET", "/v1/keys/alias/managed%2Fpayments", nil)

	// First uses, concurrent: one key.
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := user.do("POST", "/v1/encrypt", map[string]any{"key_id": "alias/managed/payments", "plaintext": b64("first use")})
			if r.status != 200 {
				t.Errorf("first use: %d %s", r.status, r.body)
				return
			}
			ids[i] = decode(t, r.body)["key_id"].(string)
		}()
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("concurrent first uses made different keys: %v", ids)
		}
	}
	k := user.must(200, "GET", "/v1/keys/alias/managed%2Fpayments", nil)
	if k["key_manager"] != "SERVICE" || k["automatic_rotation"] != "Enabled" || k["rotation_interval"] != "31536000s" {
		t.Fatalf("managed key: %v", k)
	}
	enc := user.must(200, "POST", "/v1/encrypt", map[string]any{"key_id": "alias/managed/payments", "plaintext": b64("later use")})
	user.must(200, "POST", "/v1/decrypt", map[string]any{"ciphertext_blob": enc["ciphertext_blob"]})

	// It cannot be changed, even by the administrator.
	id := k["key_id"].(string)
	other := admin.must(201, "POST", "/v1/keys", map[string]any{})
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/keys/" + id + "/disable", nil},
		{"POST", "/v1/keys/" + id + "/schedule-deletion", map[string]any{}},
		{"PUT", "/v1/keys/" + id + "/rotation-policy", map[string]any{"automatic_rotation": false}},
		{"POST", "/v1/keys/" + id + "/rotate", nil},
		{"PATCH", "/v1/keys/" + id, map[string]any{"description": "mine now"}},
		{"POST", "/v1/aliases", map[string]any{"alias_name": "alias/pay", "target_key_id": id}},
		{"POST", "/v1/keys/" + id + "/versions/1/disable", nil},
		{"POST", "/v1/keys/" + id + "/import-parameters", map[string]any{"wrapping_algorithm": "RSA_AES_KEY_WRAP_SHA_1"}},
	} {
		before := admin.must(200, "GET", "/v1/keys/"+id, nil)
		r := admin.do(tc.method, tc.path, tc.body)
		if r.status != 409 || r.code() != "KMSInvalidStateException" {
			t.Errorf("%s %s on a managed key: %d %s, want 409 KMSInvalidStateException", tc.method, tc.path, r.status, r.body)
		}
		if after := admin.must(200, "GET", "/v1/keys/"+id, nil); !equalJSON(before, after) {
			t.Errorf("%s %s changed the managed key", tc.method, tc.path)
		}
	}
	// Names under alias/managed/ are reserved, as those under alias/aws/
	// are: a customer can neither create, move nor delete one, and it is
	// the name that is refused (ValidationException), whatever its key.
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/keys", map[string]any{"alias": "alias/managed/mine"}},
		{"POST", "/v1/aliases", map[string]any{"alias_name": "alias/managed/mine", "target_key_id": other["key_id"]}},
		{"PUT", "/v1/aliases/managed%2Fpayments", map[string]any{"target_key_id": other["key_id"]}},
		{"DELETE", "/v1/aliases/managed%2Fpayments", nil},
		{"POST", "/v1/keys", map[string]any{"alias": "alias/aws/mine"}},
		{"POST", "/v1/aliases", map[string]any{"alias_name": "alias/aws/mine", "target_key_id": other["key_id"]}},
	} {
		before := admin.must(200, "GET", "/v1/keys/"+id, nil)
		keysBefore := admin.must(200, "GET", "/v1/keys", nil)
		r := admin.do(tc.method, tc.path, tc.body)
		if r.status != 400 || r.code() != "ValidationException" {
			t.Errorf("%s %s %v: %d %s, want 400 ValidationException", tc.method, tc.path, tc.body, r.status, r.body)
		}
		if after := admin.must(200, "GET", "/v1/keys/"+id, nil); !equalJSON(before, after) {
			t.Errorf("%s %s changed the managed key", tc.method, tc.path)
		}
		if after := admin.must(200, "GET", "/v1/keys", nil); !equalJSON(keysBefore, after) {
			t.Errorf("%s %s changed the keys", tc.method, tc.path)
		}
	}
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("response is not JSON: %s", b)
	}
	return out
}

func equalJSON(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
