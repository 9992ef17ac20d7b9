package api_test

import (
	"testing"

	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// aliasTarget is the key an alias names, as the administrator sees it.
func aliasTarget(t *testing.T, admin caller, name string) string {
	t.Helper()
	r := admin.must(200, "GET", "/v1/keys/"+name, nil)
	return r["key_id"].(string)
}

// principalWith makes a principal with one policy of stmts and returns a
// caller with a token of it.
func principalWith(t *testing.T, s *kmstest.Stack, admin caller, name string, stmts []map[string]any) caller {
	t.Helper()
	admin.must(200, "PUT", "/v1/policies/"+name, map[string]any{"document": map[string]any{"statements": stmts}})
	admin.must(201, "POST", "/v1/principals", map[string]any{"name": name, "policies": []string{name}})
	tok := admin.must(201, "POST", "/v1/principals/"+name+"/tokens", map[string]any{"description": "test"})
	kmstest.Secret(tok["token"].(string))
	return newCaller(t, s.URL, tok["token"].(string))
}

// Issue 16, item 9: alias changes are authorised on the alias name, the key
// it leaves and the key it joins, each on its own, as in AWS. The two
// attacks of the review are refused and change nothing; the same changes
// by a principal allowed on all three go through.
func TestAliasChangesNeedTheAliasAndBothKeys(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	payments := admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/payments-main"})["key_id"].(string)
	admin.must(201, "POST", "/v1/aliases", map[string]any{"alias_name": "alias/app-shared", "target_key_id": payments})
	mine := admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/app-mine"})["key_id"].(string)
	theirBlob := admin.must(200, "POST", "/v1/encrypt", map[string]any{"key_id": "alias/payments-main", "plaintext": b64("card 4111")})

	// Attack 1: UpdateAlias allowed only on alias/app-*, moving
	// alias/payments-main (whose key also carries alias/app-shared) to its
	// own key, so that other teams encrypt under a key it can decrypt with.
	mover := principalWith(t, s, admin, "mover", []map[string]any{{"effect": "allow", "resources": []string{"alias/app-*"},
		"actions": []string{"kms:UpdateAlias", "kms:CreateAlias", "kms:DeleteAlias", "kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"}}})
	// Attack 2: kms:* on one key, claiming alias/payments-prod for it.
	owner := principalWith(t, s, admin, "owner", []map[string]any{
		{"effect": "allow", "resources": []string{"key/" + mine}, "actions": []string{"kms:*"}},
		{"effect": "allow", "resources": []string{"*"}, "actions": []string{"kms:CreateKey"}}})

	state := func() string {
		var b []byte
		for _, p := range []string{"/v1/aliases?limit=1000", "/v1/keys?limit=1000"} {
			b = append(b, admin.do("GET", p, nil).body...)
		}
		return string(b)
	}
	for _, tc := range []struct {
		name         string
		as           caller
		method, path string
		body         any
	}{
		{"move payments-main to the mover's key", mover, "PUT", "/v1/aliases/payments-main", map[string]any{"target_key_id": mine}},
		{"move payments-main, naming the target by its alias", mover, "PUT", "/v1/aliases/payments-main", map[string]any{"target_key_id": "alias/app-mine"}},
		{"move app-shared off the payments key", mover, "PUT", "/v1/aliases/app-shared", map[string]any{"target_key_id": mine}},
		{"delete app-shared from the payments key", mover, "DELETE", "/v1/aliases/app-shared", nil},
		{"claim payments-prod for its own key", owner, "POST", "/v1/aliases", map[string]any{"alias_name": "alias/payments-prod", "target_key_id": mine}},
		{"claim payments-prod with a new key", owner, "POST", "/v1/keys", map[string]any{"alias": "alias/payments-prod"}},
		{"move payments-main to its own key", owner, "PUT", "/v1/aliases/payments-main", map[string]any{"target_key_id": mine}},
		{"delete app-mine, an alias it has no right on, from its own key", owner, "DELETE", "/v1/aliases/app-mine", nil},
		{"update a missing alias it has no right on", owner, "PUT", "/v1/aliases/nope", map[string]any{"target_key_id": mine}},
	} {
		before := state()
		r := tc.as.do(tc.method, tc.path, tc.body)
		if r.status != 403 || r.code() != "AccessDeniedException" {
			t.Errorf("%s: %d %s, want 403 AccessDeniedException", tc.name, r.status, r.body)
		}
		if state() != before {
			t.Errorf("%s: a refused alias change changed the aliases or keys", tc.name)
		}
	}
	if got := aliasTarget(t, admin, "alias/payments-main"); got != payments {
		t.Fatalf("alias/payments-main names %s, want the payments key %s", got, payments)
	}
	// What other teams encrypt under the alias still goes to the payments
	// key, and their blobs still decrypt.
	admin.must(200, "POST", "/v1/decrypt", map[string]any{"ciphertext_blob": theirBlob["ciphertext_blob"]})
	again := admin.must(200, "POST", "/v1/encrypt", map[string]any{"key_id": "alias/payments-main", "plaintext": b64("card 5500")})
	if again["key_id"] != payments {
		t.Errorf("encrypt under alias/payments-main used %v, want %s", again["key_id"], payments)
	}

	// Allowed on the alias, the key it leaves and the key it joins (here
	// each key carries a second app-* alias): the same moves go through.
	admin.must(201, "POST", "/v1/aliases", map[string]any{"alias_name": "alias/app-mine-2026", "target_key_id": mine})
	next := admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/app-next"})["key_id"].(string)
	mover.must(200, "PUT", "/v1/aliases/app-mine", map[string]any{"target_key_id": "alias/app-next"})
	if got := aliasTarget(t, admin, "alias/app-mine"); got != next {
		t.Errorf("alias/app-mine names %s after the allowed move, want %s", got, next)
	}
	mover.must(201, "POST", "/v1/aliases", map[string]any{"alias_name": "alias/app-extra", "target_key_id": "alias/app-next"})
	mover.must(204, "DELETE", "/v1/aliases/app-extra", nil)
	// A missing alias the caller may change is reported as missing.
	if r := mover.do("DELETE", "/v1/aliases/app-gone", nil); r.status != 404 {
		t.Errorf("delete a missing alias under the caller's pattern: %d %s, want 404", r.status, r.body)
	}
	// The owner of one key may name it under an alias it is allowed.
	admin.must(200, "PUT", "/v1/policies/owner", map[string]any{"document": map[string]any{"statements": []map[string]any{
		{"effect": "allow", "resources": []string{"key/" + mine, "alias/owner-*"}, "actions": []string{"kms:*"}}}}})
	owner.must(201, "POST", "/v1/aliases", map[string]any{"alias_name": "alias/owner-main", "target_key_id": mine})
}
