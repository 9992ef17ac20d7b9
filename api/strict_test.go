package api_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// field is one name and its raw JSON value, in the order written.
type field struct{ name, value string }

func object(fs []field) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = `"` + f.name + `":` + f.value
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// Field names are matched exactly and may not repeat, on every endpoint
// that takes a body: encoding/json alone would take {"Key_Id":...} for
// key_id and let the last of two equal names win. Each body below is one
// the endpoint accepts (or fails on only later, for want of a real import
// token); spelled with another case or with a name repeated, it is a 400
// ValidationException and changes nothing.
func TestFieldNamesAreExactAndUnique(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	id := admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/strict"})["key_id"].(string)
	admin.must(200, "POST", "/v1/keys/"+id+"/rotate", nil)
	ext := admin.must(201, "POST", "/v1/keys", map[string]any{"origin": "EXTERNAL"})["key_id"].(string)
	blob := admin.must(200, "POST", "/v1/encrypt", map[string]any{"key_id": id, "plaintext": b64("strict")})["ciphertext_blob"].(string)
	admin.must(201, "POST", "/v1/principals", map[string]any{"name": "strict-app"})
	q := func(s string) string { return `"` + s + `"` }
	policyDoc := `{"statements":[{"effect":"allow","actions":["kms:Encrypt"],"resources":["*"]}]}`

	cases := []struct {
		method, path string
		fields       []field
	}{
		{"POST", "/v1/keys", []field{{"description", q("d")}, {"key_spec", q("AES_256")}}},
		{"PATCH", "/v1/keys/" + id, []field{{"description", q("d")}}},
		{"POST", "/v1/keys/" + id + "/schedule-deletion", []field{{"pending_window_days", "7"}}},
		{"PUT", "/v1/keys/" + id + "/rotation-policy", []field{{"automatic_rotation", "false"}}},
		{"POST", "/v1/keys/" + id + "/versions/1/schedule-destruction", []field{{"pending_window_days", "7"}}},
		{"POST", "/v1/keys/" + ext + "/import-parameters", []field{{"wrapping_algorithm", q("RSA_AES_KEY_WRAP_SHA_1")}, {"wrapping_key_spec", q("RSA_3072")}}},
		{"POST", "/v1/keys/" + ext + "/import", []field{{"import_token", q("kmsimp_x")}, {"encrypted_key_material", q(b64("x"))}}},
		{"POST", "/v1/aliases", []field{{"alias_name", q("alias/strict2")}, {"target_key_id", q(id)}}},
		{"PUT", "/v1/aliases/strict", []field{{"target_key_id", q(ext)}}},
		{"POST", "/v1/encrypt", []field{{"key_id", q(id)}, {"plaintext", q(b64("x"))}}},
		{"POST", "/v1/decrypt", []field{{"ciphertext_blob", q(blob)}}},
		{"POST", "/v1/generate-data-key", []field{{"key_id", q(id)}, {"key_spec", q("AES_256")}}},
		{"POST", "/v1/generate-data-key-without-plaintext", []field{{"key_id", q(id)}, {"number_of_bytes", "16"}}},
		{"POST", "/v1/re-encrypt", []field{{"ciphertext_blob", q(blob)}, {"destination_key_id", q(id)}}},
		{"POST", "/v1/generate-random", []field{{"number_of_bytes", "8"}}},
		{"POST", "/v1/principals", []field{{"name", q("strict-other")}}},
		{"POST", "/v1/principals/strict-app/tokens", []field{{"description", q("d")}}},
		{"PUT", "/v1/policies/strict", []field{{"document", policyDoc}}},
	}
	before := snapshotJSON(t, admin, id, ext)
	for _, tc := range cases {
		first, last := tc.fields[0], tc.fields[len(tc.fields)-1]
		recased := append([]field{{strings.ToUpper(first.name[:1]) + first.name[1:], first.value}}, tc.fields[1:]...)
		upper := append([]field{{strings.ToUpper(first.name), first.value}}, tc.fields[1:]...)
		repeated := append(append([]field{}, tc.fields...), last)
		for what, body := range map[string]string{
			"another case": object(recased),
			"upper case":   object(upper),
			"a name twice": object(repeated),
		} {
			r := admin.do(tc.method, tc.path, json.RawMessage(body))
			if r.status != 400 || r.code() != "ValidationException" {
				t.Errorf("%s %s with %s %s: %d %s, want 400 ValidationException", tc.method, tc.path, what, body, r.status, r.body)
			}
		}
	}
	// Names nested in objects and arrays: a policy statement, a map.
	for _, body := range []string{
		`{"document":{"statements":[{"Effect":"allow","actions":["kms:Encrypt"],"resources":["*"]}]}}`,
		`{"document":{"statements":[{"effect":"allow","effect":"deny","actions":["kms:Encrypt"],"resources":["*"]}]}}`,
		`{"document":{"statements":[],"statements":[{"effect":"allow","actions":["kms:Encrypt"],"resources":["*"]}]}}`,
	} {
		if r := admin.do("PUT", "/v1/policies/strict", json.RawMessage(body)); r.status != 400 || r.code() != "ValidationException" {
			t.Errorf("PUT policy %s: %d %s, want 400 ValidationException", body, r.status, r.body)
		}
	}
	for _, body := range []string{
		`{"key_id":"` + id + `","plaintext":"` + b64("x") + `","encryption_context":{"to":"alice","to":"mallory"}}`,
		`{"key_id":"` + id + `","plaintext":"` + b64("x") + `","Encryption_Context":{"to":"alice"}}`,
	} {
		if r := admin.do("POST", "/v1/encrypt", json.RawMessage(body)); r.status != 400 || r.code() != "ValidationException" {
			t.Errorf("encrypt %s: %d %s, want 400 ValidationException", body, r.status, r.body)
		}
	}
	if after := snapshotJSON(t, admin, id, ext); after != before {
		t.Fatalf("refused bodies changed state:\nbefore %s\nafter  %s", before, after)
	}
	// The exact spellings are accepted (the endpoints above are not
	// refusing bodies for another reason).
	admin.must(200, "POST", "/v1/encrypt", json.RawMessage(object(cases[9].fields)))
	admin.must(200, "PUT", "/v1/policies/strict", json.RawMessage(`{"document":`+policyDoc+`}`))
}

// snapshotJSON is what the refused requests could have changed: keys,
// their versions, aliases, principals and policies.
func snapshotJSON(t *testing.T, c caller, keys ...string) string {
	t.Helper()
	var b strings.Builder
	for _, p := range []string{"/v1/keys", "/v1/aliases", "/v1/principals", "/v1/policies"} {
		b.Write(c.do("GET", p, nil).body)
	}
	for _, k := range keys {
		b.Write(c.do("GET", "/v1/keys/"+k+"/versions", nil).body)
	}
	return b.String()
}

// pending_window_days: 0 is refused (it used to be read as the default,
// 30); absent means 30, for key deletion and for version destruction.
func TestPendingWindowZeroIsRefused(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	id := admin.must(201, "POST", "/v1/keys", nil)["key_id"].(string)
	admin.must(200, "POST", "/v1/keys/"+id+"/rotate", nil)
	before := snapshotJSON(t, admin, id)
	for _, path := range []string{"/v1/keys/" + id + "/schedule-deletion", "/v1/keys/" + id + "/versions/1/schedule-destruction"} {
		r := admin.do("POST", path, map[string]any{"pending_window_days": 0})
		if r.status != 400 || r.code() != "ValidationException" || !strings.Contains(string(r.body), "pending_window_days") {
			t.Errorf("POST %s with pending_window_days 0: %d %s, want 400 ValidationException naming the field", path, r.status, r.body)
		}
	}
	if after := snapshotJSON(t, admin, id); after != before {
		t.Fatalf("a refused window changed state:\nbefore %s\nafter  %s", before, after)
	}
	near := func(what string, date any) {
		t.Helper()
		d, err := time.Parse(time.RFC3339Nano, date.(string))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if want := time.Now().Add(30 * 24 * time.Hour); d.Before(want.Add(-time.Hour)) || d.After(want.Add(time.Hour)) {
			t.Errorf("%s %s, want 30 days from now", what, d)
		}
	}
	v := admin.must(200, "POST", "/v1/keys/"+id+"/versions/1/schedule-destruction", nil)
	near("destruction_date", v["destruction_date"])
	k := admin.must(200, "POST", "/v1/keys/"+id+"/schedule-deletion", map[string]any{})
	near("deletion_date", k["deletion_date"])
}
