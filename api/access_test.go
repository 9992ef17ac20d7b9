package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/internal/apispec"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// caller is a raw HTTP caller with one bearer token ("" sends none).
type caller struct {
	t      *testing.T
	url    string
	token  string
	client *http.Client // default: http.DefaultClient
}

// newCaller's exchanges are checked against the OpenAPI document.
func newCaller(t *testing.T, url, token string) caller {
	return caller{t: t, url: url, token: token, client: &http.Client{Transport: apispec.Transport(t, nil)}}
}

type reply struct {
	status    int
	body      []byte
	requestID string
}

func (c caller) do(method, path string, body any) reply {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.url+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := c.client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, body: b, requestID: resp.Header.Get("X-Request-Id")}
}

// must calls and requires the status.
func (c caller) must(status int, method, path string, body any) map[string]any {
	c.t.Helper()
	r := c.do(method, path, body)
	if r.status != status {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, status, r.body)
	}
	out := map[string]any{}
	if len(r.body) > 0 {
		_ = json.Unmarshal(r.body, &out)
	}
	return out
}

func (r reply) code() string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}

// accessFixture is a server with four principals:
//   - admin: everything (the bootstrap administrator);
//   - app: cryptographic use and reads of keys under alias/app-*, only;
//   - keyadmin: key management on every key, explicitly denied every
//     cryptographic use (separation of duties);
//   - viewer: may describe one unrelated key and nothing else.
//
// and a revoked token of app.
type accessFixture struct {
	s                            *kmstest.Stack
	admin, app, keyadmin, viewer caller
	revoked, unknown, none       caller
}

// Its refusals of failed authentication are many and quick, each expected
// to have its own record: the limit of failures per address (tested in
// authlimit_test.go) is set out of their way.
func newAccessFixture(t *testing.T) *accessFixture {
	return newAccessFixtureWith(t, kmstest.Options{AuthLimits: api.AuthLimits{Burst: 1 << 20}})
}

func newAccessFixtureWith(t *testing.T, opts kmstest.Options) *accessFixture {
	s := kmstest.Start(t, opts)
	f := &accessFixture{s: s}
	f.admin = newCaller(t, s.URL, kmstest.AdminToken)
	other := f.admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/other"})
	policies := map[string]any{
		"app": []map[string]any{{"effect": "allow", "resources": []string{"alias/app-*"}, "actions": []string{
			"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:DescribeKey",
			"kms:GetRotationStatus", "kms:ListKeyVersions"}},
			{"effect": "allow", "resources": []string{"*"}, "actions": []string{"kms:GenerateRandom"}}},
		"keyadmin": []map[string]any{
			{"effect": "allow", "resources": []string{"*"}, "actions": []string{"kms:*"}},
			{"effect": "deny", "resources": []string{"*"}, "actions": []string{
				"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:GenerateRandom",
				"kms:ManageAccess", "kms:ReadAudit"}}},
		"viewer": []map[string]any{{"effect": "allow", "resources": []string{"key/" + other["key_id"].(string)},
			"actions": []string{"kms:DescribeKey"}}},
	}
	tokens := map[string]string{}
	for name, stmts := range policies {
		f.admin.must(200, "PUT", "/v1/policies/"+name, map[string]any{"document": map[string]any{"statements": stmts}})
		f.admin.must(201, "POST", "/v1/principals", map[string]any{"name": name, "policies": []string{name}})
		tok := f.admin.must(201, "POST", "/v1/principals/"+name+"/tokens", map[string]any{"description": "test"})
		tokens[name] = tok["token"].(string)
		kmstest.Secret(tokens[name])
	}
	f.app = newCaller(t, s.URL, tokens["app"])
	f.keyadmin = newCaller(t, s.URL, tokens["keyadmin"])
	f.viewer = newCaller(t, s.URL, tokens["viewer"])
	old := f.admin.must(201, "POST", "/v1/principals/app/tokens", map[string]any{"description": "to revoke"})
	f.admin.must(204, "DELETE", "/v1/principals/app/tokens/"+old["token_id"].(string), nil)
	f.revoked = newCaller(t, s.URL, old["token"].(string))
	kmstest.Secret(f.revoked.token)
	f.unknown = newCaller(t, s.URL, "kms_0123456789abcdef_"+strings.Repeat("A", 43))
	f.none = newCaller(t, s.URL, "")
	return f
}

// state is what an administrator can see; a refused request must not change
// it. Tokens' last-use dates are left out: the administrator's own requests
// move them.
func (f *accessFixture) state() string {
	var b strings.Builder
	for _, p := range []string{"/v1/keys?limit=1000", "/v1/aliases?limit=1000", "/v1/principals?limit=1000", "/v1/policies?limit=1000"} {
		r := f.admin.do("GET", p, nil)
		b.Write(lastUsed.ReplaceAll(r.body, nil))
	}
	return b.String()
}

var lastUsed = regexp.MustCompile(`,"last_used_date":"[^"]*"`)

// matrixCase is one endpoint: prepare makes what it needs (fresh per
// case), then it is called as each kind of caller.
type matrixCase struct {
	name    string
	method  string
	path    string // {k}: the key id, {a}: its alias name (after alias/), {n}: a fresh name
	body    any    // strings in it are expanded like path
	as      func(f *accessFixture) caller
	status  int
	prepare func(f *accessFixture, k map[string]any) // optional
}

var cryptoActions = map[string]bool{"Encrypt": true, "Decrypt": true, "GenerateDataKey": true,
	"GenerateDataKeyWithoutPlaintext": true, "ReEncrypt": true, "GenerateRandom": true}

func asApp(f *accessFixture) caller      { return f.app }
func asKeyadmin(f *accessFixture) caller { return f.keyadmin }
func asAdmin(f *accessFixture) caller    { return f.admin }

// The authorisation matrix: every endpoint x {no token, unknown token,
// revoked token, denied principal, allowed principal}. Refusals are 401 or
// 403, change nothing, and each request, refused or not, has exactly one
// audit record with the right outcome.
func TestAuthorizationMatrix(t *testing.T) {
	f := newAccessFixture(t)
	blob := func(f *accessFixture, k map[string]any) {
		r := f.admin.must(200, "POST", "/v1/encrypt", map[string]any{"key_id": k["key_id"], "plaintext": b64("matrix secret")})
		k["blob"] = r["ciphertext_blob"]
	}
	rotated := func(f *accessFixture, k map[string]any) {
		f.admin.must(200, "POST", "/v1/keys/"+k["key_id"].(string)+"/rotate", nil)
	}
	cases := []matrixCase{
		{name: "CreateKey", method: "POST", path: "/v1/keys", body: map[string]any{}, as: asKeyadmin, status: 201},
		{name: "ListKeys", method: "GET", path: "/v1/keys", as: asKeyadmin, status: 200},
		{name: "DescribeKey", method: "GET", path: "/v1/keys/{k}", as: asApp, status: 200},
		{name: "DescribeKeyByAlias", method: "GET", path: "/v1/keys/alias/{a}", as: asApp, status: 200},
		{name: "UpdateKey", method: "PATCH", path: "/v1/keys/{k}", body: map[string]any{"description": "new"}, as: asKeyadmin, status: 200},
		{name: "DisableKey", method: "POST", path: "/v1/keys/{k}/disable", as: asKeyadmin, status: 200},
		{name: "EnableKey", method: "POST", path: "/v1/keys/{k}/enable", as: asKeyadmin, status: 200,
			prepare: func(f *accessFixture, k map[string]any) {
				f.admin.must(200, "POST", "/v1/keys/"+k["key_id"].(string)+"/disable", nil)
			}},
		{name: "ScheduleKeyDeletion", method: "POST", path: "/v1/keys/{k}/schedule-deletion", body: map[string]any{}, as: asKeyadmin, status: 200},
		{name: "CancelKeyDeletion", method: "POST", path: "/v1/keys/{k}/cancel-deletion", as: asKeyadmin, status: 200,
			prepare: func(f *accessFixture, k map[string]any) {
				f.admin.must(200, "POST", "/v1/keys/"+k["key_id"].(string)+"/schedule-deletion", map[string]any{})
			}},
		{name: "PutRotationPolicy", method: "PUT", path: "/v1/keys/{k}/rotation-policy", body: map[string]any{"automatic_rotation": true}, as: asKeyadmin, status: 200},
		{name: "GetRotationStatus", method: "GET", path: "/v1/keys/{k}/rotation-status", as: asApp, status: 200},
		{name: "RotateKey", method: "POST", path: "/v1/keys/{k}/rotate", as: asKeyadmin, status: 200},
		{name: "ListKeyRotations", method: "GET", path: "/v1/keys/{k}/rotations", as: asKeyadmin, status: 200},
		{name: "ListKeyVersions", method: "GET", path: "/v1/keys/{k}/versions", as: asApp, status: 200},
		{name: "DisableVersion", method: "POST", path: "/v1/keys/{k}/versions/1/disable", as: asKeyadmin, status: 200, prepare: rotated},
		{name: "EnableVersion", method: "POST", path: "/v1/keys/{k}/versions/1/enable", as: asKeyadmin, status: 200,
			prepare: func(f *accessFixture, k map[string]any) {
				rotated(f, k)
				f.admin.must(200, "POST", "/v1/keys/"+k["key_id"].(string)+"/versions/1/disable", nil)
			}},
		{name: "ScheduleVersionDestruction", method: "POST", path: "/v1/keys/{k}/versions/1/schedule-destruction", as: asKeyadmin, status: 200, prepare: rotated},
		{name: "CancelVersionDestruction", method: "POST", path: "/v1/keys/{k}/versions/1/cancel-destruction", as: asKeyadmin, status: 200,
			prepare: func(f *accessFixture, k map[string]any) {
				rotated(f, k)
				f.admin.must(200, "POST", "/v1/keys/"+k["key_id"].(string)+"/versions/1/schedule-destruction", nil)
			}},
		{name: "CreateAlias", method: "POST", path: "/v1/aliases", body: map[string]any{"alias_name": "alias/{n}", "target_key_id": "{k}"}, as: asKeyadmin, status: 201},
		{name: "ListAliases", method: "GET", path: "/v1/aliases", as: asKeyadmin, status: 200},
		{name: "UpdateAlias", method: "PUT", path: "/v1/aliases/{a}", body: map[string]any{"target_key_id": "{k}"}, as: asKeyadmin, status: 200},
		{name: "DeleteAlias", method: "DELETE", path: "/v1/aliases/{a}", as: asKeyadmin, status: 204},
		{name: "Encrypt", method: "POST", path: "/v1/encrypt", body: map[string]any{"key_id": "alias/{a}", "plaintext": b64("matrix secret")}, as: asApp, status: 200},
		{name: "Decrypt", method: "POST", path: "/v1/decrypt", body: map[string]any{"ciphertext_blob": "{blob}"}, as: asApp, status: 200, prepare: blob},
		{name: "GenerateDataKey", method: "POST", path: "/v1/generate-data-key", body: map[string]any{"key_id": "{k}", "key_spec": "AES_256"}, as: asApp, status: 200},
		{name: "GenerateDataKeyWithoutPlaintext", method: "POST", path: "/v1/generate-data-key-without-plaintext", body: map[string]any{"key_id": "{k}", "number_of_bytes": 16}, as: asApp, status: 200},
		{name: "ReEncrypt", method: "POST", path: "/v1/re-encrypt", body: map[string]any{"ciphertext_blob": "{blob}", "destination_key_id": "{k}"}, as: asApp, status: 200, prepare: blob},
		{name: "GenerateRandom", method: "POST", path: "/v1/generate-random", body: map[string]any{"number_of_bytes": 8}, as: asApp, status: 200},
		{name: "CreatePrincipal", method: "POST", path: "/v1/principals", body: map[string]any{"name": "{n}"}, as: asAdmin, status: 201},
		{name: "ListPrincipals", method: "GET", path: "/v1/principals", as: asAdmin, status: 200},
		{name: "GetPrincipal", method: "GET", path: "/v1/principals/app", as: asAdmin, status: 200},
		{name: "DeletePrincipal", method: "DELETE", path: "/v1/principals/{n}", as: asAdmin, status: 204, prepare: newPrincipal},
		{name: "AttachPolicy", method: "PUT", path: "/v1/principals/{n}/policies/viewer", as: asAdmin, status: 200, prepare: newPrincipal},
		{name: "DetachPolicy", method: "DELETE", path: "/v1/principals/{n}/policies/viewer", as: asAdmin, status: 200,
			prepare: func(f *accessFixture, k map[string]any) {
				newPrincipal(f, k)
				f.admin.must(200, "PUT", "/v1/principals/"+k["n"].(string)+"/policies/viewer", nil)
			}},
		{name: "CreateToken", method: "POST", path: "/v1/principals/{n}/tokens", body: map[string]any{}, as: asAdmin, status: 201, prepare: newPrincipal},
		{name: "RevokeToken", method: "DELETE", path: "/v1/principals/{n}/tokens/{tok}", as: asAdmin, status: 204, prepare: newPrincipalToken},
		{name: "RotateToken", method: "POST", path: "/v1/principals/{n}/tokens/{tok}/rotate", as: asAdmin, status: 201, prepare: newPrincipalToken},
		{name: "PutPolicy", method: "PUT", path: "/v1/policies/{n}", body: map[string]any{"document": map[string]any{"statements": []map[string]any{
			{"effect": "allow", "actions": []string{"kms:Encrypt"}, "resources": []string{"*"}}}}}, as: asAdmin, status: 200},
		{name: "ListPolicies", method: "GET", path: "/v1/policies", as: asAdmin, status: 200},
		{name: "GetPolicy", method: "GET", path: "/v1/policies/app", as: asAdmin, status: 200},
		{name: "DeletePolicy", method: "DELETE", path: "/v1/policies/{n}", as: asAdmin, status: 204,
			prepare: func(f *accessFixture, k map[string]any) {
				f.admin.must(200, "PUT", "/v1/policies/"+k["n"].(string), map[string]any{"document": map[string]any{"statements": []map[string]any{
					{"effect": "deny", "actions": []string{"kms:*"}, "resources": []string{"*"}}}}})
			}},
		{name: "GetParametersForImport", method: "POST", path: "/v1/keys/{k}/import-parameters", body: map[string]any{"wrapping_algorithm": byokAlg},
			as: asKeyadmin, status: 200, prepare: externalKey},
		{name: "ImportKeyMaterial", method: "POST", path: "/v1/keys/{k}/import", body: map[string]any{"import_token": "{tok}", "encrypted_key_material": "{wrapped}"},
			as: asKeyadmin, status: 200, prepare: func(f *accessFixture, k map[string]any) {
				externalKey(f, k)
				pub, tok := params(f.admin.t, f.admin, k["k"].(string))
				k["tok"], k["wrapped"] = tok, wrap(f.admin.t, pub, make([]byte, 32))
			}},
		{name: "DeleteImportedKeyMaterial", method: "DELETE", path: "/v1/keys/{k}/key-material", as: asKeyadmin, status: 200,
			prepare: func(f *accessFixture, k map[string]any) {
				externalKey(f, k)
				pub, tok := params(f.admin.t, f.admin, k["k"].(string))
				f.admin.must(200, "POST", "/v1/keys/"+k["k"].(string)+"/import", map[string]any{"import_token": tok,
					"encrypted_key_material": wrap(f.admin.t, pub, make([]byte, 32))})
			}},
		{name: "ListAudit", method: "GET", path: "/v1/audit", as: asAdmin, status: 200},
		{name: "VerifyAudit", method: "GET", path: "/v1/audit/verify", as: asAdmin, status: 200},
	}

	type sent struct {
		label     string
		requestID string
		outcome   string
	}
	var all []sent
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.admin.t, f.app.t, f.keyadmin.t, f.viewer.t = t, t, t, t
			f.revoked.t, f.unknown.t, f.none.t = t, t, t
			n := fmt.Sprintf("app-m%d", i)
			k := f.admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/" + n})
			k["k"], k["a"], k["n"] = k["key_id"], n, fmt.Sprintf("new-%d", i)
			if tc.prepare != nil {
				tc.prepare(f, k)
			}
			path := expand(tc.path, k).(string)
			body := expand(tc.body, k)

			refusals := []struct {
				who    string
				c      caller
				status int
				code   string
			}{
				{"no token", f.none, 401, "UnauthenticatedException"},
				{"unknown token", f.unknown, 401, "UnauthenticatedException"},
				{"revoked token", f.revoked, 401, "UnauthenticatedException"},
				{"denied principal", f.viewer, 403, "AccessDeniedException"},
			}
			if cryptoActions[tc.name] {
				// Separation of duties: the key administrator may not use keys.
				refusals = append(refusals, struct {
					who    string
					c      caller
					status int
					code   string
				}{"key administrator", f.keyadmin, 403, "AccessDeniedException"})
			}
			for _, r := range refusals {
				before := f.state()
				got := r.c.do(tc.method, path, body)
				if got.status != r.status || got.code() != r.code {
					t.Errorf("%s: status %d %s, want %d %s: %s", r.who, got.status, got.code(), r.status, r.code, got.body)
				}
				if after := f.state(); after != before {
					t.Errorf("%s: a refused request changed the server's state", r.who)
				}
				all = append(all, sent{tc.name + "/" + r.who, got.requestID, "denied"})
			}
			got := tc.as(f).do(tc.method, path, body)
			if got.status != tc.status {
				t.Fatalf("allowed principal: status %d, want %d: %s", got.status, tc.status, got.body)
			}
			all = append(all, sent{tc.name + "/allowed", got.requestID, "allowed"})
		})
	}

	// Every request above has exactly one audit record with its outcome.
	f.admin.t = t
	records := listAudit(t, f.admin, "")
	byRequest := map[string][]map[string]any{}
	for _, r := range records {
		byRequest[r["request_id"].(string)] = append(byRequest[r["request_id"].(string)], r)
	}
	for _, s := range all {
		rs := byRequest[s.requestID]
		if len(rs) != 1 {
			t.Errorf("%s (request %s): %d audit records, want 1", s.label, s.requestID, len(rs))
			continue
		}
		if rs[0]["outcome"] != s.outcome {
			t.Errorf("%s: audit outcome %v, want %s", s.label, rs[0]["outcome"], s.outcome)
		}
	}
	v := f.admin.must(200, "GET", "/v1/audit/verify", nil)
	if v["intact"] != true {
		t.Errorf("audit chain broken after the matrix: %v", v)
	}
}

// externalKey makes the case's key an EXTERNAL one (no material yet).
func externalKey(f *accessFixture, k map[string]any) {
	e := f.admin.must(201, "POST", "/v1/keys", map[string]any{"origin": "EXTERNAL"})
	k["k"] = e["key_id"]
}

func newPrincipal(f *accessFixture, k map[string]any) {
	f.admin.must(201, "POST", "/v1/principals", map[string]any{"name": k["n"]})
}

func newPrincipalToken(f *accessFixture, k map[string]any) {
	newPrincipal(f, k)
	tok := f.admin.must(201, "POST", "/v1/principals/"+k["n"].(string)+"/tokens", map[string]any{})
	k["tok"] = tok["token_id"]
	kmstest.Secret(tok["token"].(string))
}

// expand replaces {name} in strings (and in the strings of maps) by k[name].
func expand(v any, k map[string]any) any {
	switch x := v.(type) {
	case string:
		for name, val := range k {
			if s, ok := val.(string); ok {
				x = strings.ReplaceAll(x, "{"+name+"}", s)
			}
		}
		return x
	case map[string]any:
		out := map[string]any{}
		for key, val := range x {
			out[key] = expand(val, k)
		}
		return out
	}
	return v
}

func b64(s string) string {
	kmstest.Secret(s)
	return base64.StdEncoding.EncodeToString([]byte(s))
}

// listAudit pages through GET /v1/audit.
func listAudit(t *testing.T, c caller, query string) []map[string]any {
	t.Helper()
	var out []map[string]any
	next := ""
	for {
		q := "/v1/audit?limit=1000" + query
		if next != "" {
			q += "&next_token=" + next
		}
		var page struct {
			Records   []map[string]any `json:"records"`
			NextToken string           `json:"next_token"`
		}
		r := c.do("GET", q, nil)
		if r.status != 200 {
			t.Fatalf("list audit: %d %s", r.status, r.body)
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Records...)
		if page.NextToken == "" {
			return out
		}
		next = page.NextToken
	}
}

// Decrypt and re-encrypt are authorised against the key inside the blob:
// naming a key the caller may use does not help.
func TestDecryptIsAuthorisedAgainstTheBlobsKey(t *testing.T) {
	f := newAccessFixture(t)
	mine := f.admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/app-mine"})
	theirs := f.admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/theirs"})
	enc := f.admin.must(200, "POST", "/v1/encrypt", map[string]any{"key_id": theirs["key_id"], "plaintext": b64("not for the app")})

	for _, body := range []map[string]any{
		{"ciphertext_blob": enc["ciphertext_blob"]},
		{"ciphertext_blob": enc["ciphertext_blob"], "key_id": mine["key_id"]},
		{"ciphertext_blob": enc["ciphertext_blob"], "key_id": "alias/app-mine"},
	} {
		r := f.app.do("POST", "/v1/decrypt", body)
		if r.status != 403 || r.code() != "AccessDeniedException" {
			t.Errorf("decrypt %v: %d %s, want 403 AccessDeniedException", body["key_id"], r.status, r.body)
		}
		if strings.Contains(string(r.body), "plaintext") {
			t.Errorf("a refused decrypt returned a plaintext field: %s", r.body)
		}
	}
	r := f.app.do("POST", "/v1/re-encrypt", map[string]any{"ciphertext_blob": enc["ciphertext_blob"], "destination_key_id": mine["key_id"]})
	if r.status != 403 {
		t.Errorf("re-encrypt out of a key the app may not use: %d %s, want 403", r.status, r.body)
	}
	// The refusals are on the record of the blob's key, with its version.
	denied := 0
	for _, rec := range listAudit(t, f.admin, "&key_id="+theirs["key_id"].(string)+"&principal=app") {
		if rec["outcome"] == "denied" && rec["key_version"] == float64(1) &&
			(rec["action"] == "kms:Decrypt" || rec["action"] == "kms:ReEncrypt") {
			denied++
		}
	}
	if denied != 4 {
		t.Errorf("%d refused decrypts and re-encrypts recorded against the blob's key, want 4", denied)
	}
	// The app cannot learn whether keys outside its policy exist.
	for _, ref := range []string{"alias/nope", "00000000-0000-4000-8000-000000000000", theirs["key_id"].(string)} {
		if r := f.app.do("POST", "/v1/encrypt", map[string]any{"key_id": ref, "plaintext": b64("x")}); r.status != 403 {
			t.Errorf("encrypt with %s: %d, want 403 whether or not it exists", ref, r.status)
		}
	}
	// Its own key works, by id and by alias.
	own := f.app.must(200, "POST", "/v1/encrypt", map[string]any{"key_id": "alias/app-mine", "plaintext": b64("mine")})
	f.app.must(200, "POST", "/v1/decrypt", map[string]any{"ciphertext_blob": own["ciphertext_blob"], "key_id": mine["key_id"]})

	// Nor which key an alias outside its policy names: not from a refusal,
	// not from a decrypt of its own blob naming that alias (existing or not).
	theirID := theirs["key_id"].(string)
	for _, tc := range []struct {
		path string
		body map[string]any
		code string
	}{
		{"/v1/encrypt", map[string]any{"key_id": "alias/theirs", "plaintext": b64("x")}, "AccessDeniedException"},
		{"/v1/decrypt", map[string]any{"ciphertext_blob": own["ciphertext_blob"], "key_id": "alias/theirs"}, "IncorrectKeyException"},
		{"/v1/decrypt", map[string]any{"ciphertext_blob": own["ciphertext_blob"], "key_id": "alias/nope"}, "IncorrectKeyException"},
	} {
		r := f.app.do("POST", tc.path, tc.body)
		if r.code() != tc.code || strings.Contains(string(r.body), theirID) {
			t.Errorf("%s with %v: %d %s, want %s without the alias's target", tc.path, tc.body["key_id"], r.status, r.body, tc.code)
		}
	}
}

// A policy change, a detached policy and a revoked or rotated token apply
// to the very next request.
func TestAccessChangesApplyAtOnce(t *testing.T) {
	f := newAccessFixture(t)
	f.admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/app-now"})
	enc := map[string]any{"key_id": "alias/app-now", "plaintext": b64("now")}
	f.app.must(200, "POST", "/v1/encrypt", enc)

	f.admin.must(200, "PUT", "/v1/policies/app", map[string]any{"document": map[string]any{"statements": []map[string]any{
		{"effect": "allow", "actions": []string{"kms:Decrypt"}, "resources": []string{"alias/app-*"}}}}})
	f.app.must(403, "POST", "/v1/encrypt", enc)

	f.admin.must(200, "DELETE", "/v1/principals/app/policies/app", nil)
	f.admin.must(200, "PUT", "/v1/principals/app/policies/keyadmin", nil)
	f.app.must(403, "POST", "/v1/encrypt", enc) // keyadmin's explicit deny wins over its allow
	f.app.must(200, "GET", "/v1/keys", nil)

	p := f.admin.must(200, "GET", "/v1/principals/app", nil)
	var live string
	for _, tok := range p["tokens"].([]any) {
		tk := tok.(map[string]any)
		if _, revoked := tk["revoked_date"]; !revoked {
			live = tk["token_id"].(string)
		}
	}
	rot := f.admin.must(201, "POST", "/v1/principals/app/tokens/"+live+"/rotate", nil)
	kmstest.Secret(rot["token"].(string))
	f.app.must(401, "GET", "/v1/keys", nil)
	fresh := newCaller(t, f.s.URL, rot["token"].(string))
	fresh.must(200, "GET", "/v1/keys", nil)
	f.admin.must(409, "POST", "/v1/principals/app/tokens/"+live+"/rotate", nil) // already revoked

	// Principals and policies in use are protected.
	f.admin.must(409, "DELETE", "/v1/policies/keyadmin", nil)
	f.admin.must(409, "DELETE", "/v1/principals/admin", nil) // itself
	f.admin.must(204, "DELETE", "/v1/principals/app", nil)
	fresh.must(401, "GET", "/v1/keys", nil)
}

// Bad inputs of the access endpoints: clear errors, nothing changed.
func TestAccessBadInputs(t *testing.T) {
	f := newAccessFixture(t)
	cases := []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"POST", "/v1/principals", map[string]any{}, 400, "ValidationException"},
		{"POST", "/v1/principals", map[string]any{"name": "bad name"}, 400, "ValidationException"},
		{"POST", "/v1/principals", map[string]any{"name": "x", "extra": 1}, 400, "ValidationException"},
		{"POST", "/v1/principals", map[string]any{"name": "x", "policies": "admin"}, 400, "ValidationException"},
		{"POST", "/v1/principals", map[string]any{"name": "x", "policies": []string{"missing"}}, 404, "NotFoundException"},
		{"POST", "/v1/principals", map[string]any{"name": "app"}, 409, "AlreadyExistsException"},
		{"GET", "/v1/principals/missing", nil, 404, "NotFoundException"},
		{"DELETE", "/v1/principals/missing", nil, 404, "NotFoundException"},
		{"PUT", "/v1/principals/app/policies/missing", nil, 404, "NotFoundException"},
		{"PUT", "/v1/principals/missing/policies/app", nil, 404, "NotFoundException"},
		{"DELETE", "/v1/principals/app/policies/viewer", nil, 404, "NotFoundException"},
		{"POST", "/v1/principals/missing/tokens", map[string]any{}, 404, "NotFoundException"},
		{"POST", "/v1/principals/app/tokens", map[string]any{"description": 5}, 400, "ValidationException"},
		{"POST", "/v1/principals/app/tokens", map[string]any{"expires_in": "soon"}, 400, "ValidationException"},
		{"POST", "/v1/principals/app/tokens", map[string]any{"expires_in": "0s"}, 400, "ValidationException"},
		{"POST", "/v1/principals/app/tokens", map[string]any{"expires_in": "30s"}, 400, "ValidationException"},
		{"POST", "/v1/principals/app/tokens", map[string]any{"expires_in": "4000d"}, 400, "ValidationException"},
		{"POST", "/v1/principals/app/tokens", map[string]any{"expires_in": "-1h"}, 400, "ValidationException"},
		{"POST", "/v1/principals/app/tokens", map[string]any{"expires_in": 3600}, 400, "ValidationException"},
		{"DELETE", "/v1/principals/app/tokens/0123456789abcdef", nil, 404, "NotFoundException"},
		{"POST", "/v1/principals/viewer/tokens/0123456789abcdef/rotate", nil, 404, "NotFoundException"},
		{"DELETE", "/v1/principals/app/tokens/nope", nil, 400, "ValidationException"},
		{"DELETE", "/v1/principals/app/tokens/" + f.app.token, nil, 400, "ValidationException"},
		{"PUT", "/v1/policies/p", map[string]any{}, 400, "ValidationException"},
		{"PUT", "/v1/policies/p", map[string]any{"document": map[string]any{"statements": []any{}}}, 400, "ValidationException"},
		{"PUT", "/v1/policies/p", map[string]any{"document": map[string]any{"statements": []map[string]any{
			{"effect": "maybe", "actions": []string{"kms:Encrypt"}, "resources": []string{"*"}}}}}, 400, "ValidationException"},
		{"PUT", "/v1/policies/p", map[string]any{"document": map[string]any{"statements": []map[string]any{
			{"effect": "allow", "actions": []string{"kms:Fly"}, "resources": []string{"*"}}}}}, 400, "ValidationException"},
		{"PUT", "/v1/policies/p", map[string]any{"document": map[string]any{"statements": []map[string]any{
			{"effect": "allow", "actions": []string{"kms:Encrypt"}, "resources": []string{"bucket/x"}}}}}, 400, "ValidationException"},
		{"PUT", "/v1/policies/p", map[string]any{"document": map[string]any{"statements": []map[string]any{
			{"effect": "allow", "actions": []string{"kms:Encrypt"}, "resources": []string{"*"}, "condition": "x"}}}}, 400, "ValidationException"},
		{"PUT", "/v1/policies/p", map[string]any{"document": "allow all"}, 400, "ValidationException"},
		{"GET", "/v1/policies/missing", nil, 404, "NotFoundException"},
		{"DELETE", "/v1/policies/missing", nil, 404, "NotFoundException"},
		{"GET", "/v1/audit?from=yesterday", nil, 400, "ValidationException"},
		{"GET", "/v1/audit?limit=0", nil, 400, "ValidationException"},
		{"GET", "/v1/audit?limit=100000", nil, 400, "ValidationException"},
		{"GET", "/v1/audit?next_token=%21%21", nil, 400, "ValidationException"},
		{"GET", "/v1/audit?key_id=not-a-key", nil, 400, "ValidationException"},
		{"GET", "/v1/audit?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", nil, 400, "ValidationException"},
	}
	for _, tc := range cases {
		before := f.state()
		r := f.admin.do(tc.method, tc.path, tc.body)
		if r.status != tc.status || r.code() != tc.code {
			t.Errorf("%s %s %v: %d %s, want %d %s: %s", tc.method, tc.path, tc.body, r.status, r.code(), tc.status, tc.code, r.body)
		}
		if f.state() != before {
			t.Errorf("%s %s %v: a failed request changed the server's state", tc.method, tc.path, tc.body)
		}
		if strings.Contains(string(r.body), f.app.token) {
			t.Errorf("%s %s: the error echoes a bearer token", tc.method, tc.path)
		}
	}
	// A token pasted where a token id goes reaches no audit record either.
	raw, _ := json.Marshal(listAudit(t, f.admin, ""))
	if strings.Contains(string(raw), f.app.token) {
		t.Error("an audit record holds a bearer token")
	}
}

// The last principal able to manage access cannot be cut off: not by
// revoking its last token, detaching or rewriting its policy. With a second
// administrator in place, the same changes go through.
func TestTheLastAdministratorCannotBeLockedOut(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	admin.must(200, "PUT", "/v1/policies/no-access", map[string]any{"document": map[string]any{"statements": []map[string]any{
		{"effect": "deny", "resources": []string{"*"}, "actions": []string{"kms:ManageAccess"}}}}})
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"PUT", "/v1/principals/admin/policies/no-access", nil}, // an attached deny (issue 16, item 10)
		{"DELETE", "/v1/principals/admin/tokens/bootstrap", nil},
		{"POST", "/v1/principals/admin/tokens/bootstrap/rotate", nil}, // allowed: a new token replaces it
		{"DELETE", "/v1/principals/admin/policies/admin", nil},
		{"PUT", "/v1/policies/admin", map[string]any{"document": map[string]any{"statements": []map[string]any{
			{"effect": "allow", "resources": []string{"*"}, "actions": []string{"kms:Encrypt"}}}}}},
	} {
		r := admin.do(tc.method, tc.path, tc.body)
		if strings.HasSuffix(tc.path, "/rotate") {
			if r.status != 201 && r.status != 200 {
				t.Fatalf("rotating the last administrator's token: %d %s", r.status, r.body)
			}
			var tok struct{ Token string }
			_ = json.Unmarshal(r.body, &tok)
			kmstest.Secret(tok.Token)
			admin = newCaller(t, s.URL, tok.Token)
			continue
		}
		if r.status != 409 || r.code() != "KMSInvalidStateException" {
			t.Fatalf("%s %s on the last administrator: %d %s, want 409", tc.method, tc.path, r.status, r.body)
		}
		admin.must(200, "GET", "/v1/keys", nil) // still in charge
		admin.must(200, "GET", "/v1/principals", nil)
		if p := admin.must(200, "GET", "/v1/principals/admin", nil); len(p["policies"].([]any)) != 1 {
			t.Fatalf("%s %s: the refused change left policies %v", tc.method, tc.path, p["policies"])
		}
	}

	// An administrator whose only other token expires cannot revoke its
	// last one that does not: time alone would lock everyone out.
	exp := admin.must(201, "POST", "/v1/principals/admin/tokens", map[string]any{"description": "a day", "expires_in": "1d"})
	kmstest.Secret(exp["token"].(string))
	for _, tk := range admin.must(200, "GET", "/v1/principals/admin", nil)["tokens"].([]any) {
		tk := tk.(map[string]any)
		if _, revoked := tk["revoked_date"]; revoked || tk["token_id"] == exp["token_id"] {
			continue
		}
		if r := admin.do("DELETE", "/v1/principals/admin/tokens/"+tk["token_id"].(string), nil); r.status != 409 {
			t.Fatalf("revoking the last administrator's last token that does not expire: %d %s, want 409", r.status, r.body)
		}
	}
	admin.must(200, "GET", "/v1/principals", nil)

	// A second administrator: now the first can give up its rights.
	admin.must(201, "POST", "/v1/principals", map[string]any{"name": "admin2", "policies": []string{"admin"}})
	tok := admin.must(201, "POST", "/v1/principals/admin2/tokens", map[string]any{"description": "second"})
	kmstest.Secret(tok["token"].(string))
	admin.must(200, "PUT", "/v1/principals/admin/policies/no-access", nil)
	admin.must(403, "GET", "/v1/principals", nil)
	newCaller(t, s.URL, tok["token"].(string)).must(200, "GET", "/v1/principals", nil)
}
