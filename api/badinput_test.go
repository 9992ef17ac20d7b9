package api_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// snapshot is everything a client can see; a failed request must not change it.
type snapshot struct {
	Keys    []client.Key
	Aliases []client.Alias
}

func takeSnapshot(t *testing.T, ctx context.Context, c *client.Client) snapshot {
	t.Helper()
	keys, err := c.ListKeys(ctx, 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	aliases, err := c.ListAliases(ctx, "", 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{Keys: keys.Keys, Aliases: aliases.Aliases}
}

// Every bad input of every implemented endpoint gets a clear 4xx error with
// the documented code, and none of them changes anything.
func TestBadInputsAreRejectedAndChangeNothing(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ctx := kmstest.Ctx(t)
	c := s.Client
	k, err := c.CreateKey(ctx, client.CreateKeyRequest{Alias: "alias/good", Description: "d", Tags: map[string]string{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	disabled, err := c.CreateKey(ctx, client.CreateKeyRequest{Alias: "alias/off"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DisableKey(ctx, disabled.KeyID); err != nil {
		t.Fatal(err)
	}
	enc, err := c.Encrypt(ctx, k.KeyID, []byte("keep me"), nil)
	if err != nil {
		t.Fatal(err)
	}
	blob := base64.StdEncoding.EncodeToString(enc.CiphertextBlob)
	missing := "00000000-0000-4000-8000-000000000000"
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	before := takeSnapshot(t, ctx, c)

	const (
		V  = "ValidationException"
		NF = "NotFoundException"
		AE = "AlreadyExistsException"
		IC = "InvalidCiphertextException"
		DI = "DisabledException"
		IS = "KMSInvalidStateException"
	)
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		// Malformed bodies, on every endpoint that takes one.
		{"create: malformed json", "POST", "/v1/keys", `{"description":`, 400, V},
		{"create: not an object", "POST", "/v1/keys", `[1,2]`, 400, V},
		{"create: unknown field", "POST", "/v1/keys", `{"descriptio":"x"}`, 400, V},
		{"create: wrong type", "POST", "/v1/keys", `{"description":5}`, 400, V},
		{"create: trailing data", "POST", "/v1/keys", `{} {}`, 400, V},
		{"create: bad origin", "POST", "/v1/keys", `{"origin":"AWS"}`, 400, V},
		{"create: bad key spec", "POST", "/v1/keys", `{"key_spec":"RSA_2048"}`, 400, V},
		{"create: bad alias", "POST", "/v1/keys", `{"alias":"MyKey"}`, 400, V},
		{"create: alias bad chars", "POST", "/v1/keys", `{"alias":"alias/a b"}`, 400, V},
		{"create: alias taken", "POST", "/v1/keys", `{"alias":"alias/good"}`, 409, AE},
		{"create: reserved alias", "POST", "/v1/keys", `{"alias":"alias/managed/x"}`, 400, V},
		{"create: reserved aws alias", "POST", "/v1/keys", `{"alias":"alias/aws/x"}`, 400, V},
		{"create: name of another case", "POST", "/v1/keys", `{"Description":"x"}`, 400, V},
		{"create: name repeated", "POST", "/v1/keys", `{"description":"x","description":"y"}`, 400, V},
		{"create: nested name repeated", "POST", "/v1/keys", `{"tags":{"a":"x","a":"y"}}`, 400, V},
		{"deletion: window zero", "POST", "/v1/keys/" + k.KeyID + "/schedule-deletion", `{"pending_window_days":0}`, 400, V},
		{"deletion: window of another case", "POST", "/v1/keys/" + k.KeyID + "/schedule-deletion", `{"Pending_Window_Days":7}`, 400, V},
		{"destruction: window zero", "POST", "/v1/keys/" + k.KeyID + "/versions/1/schedule-destruction", `{"pending_window_days":0}`, 400, V},
		{"create: bad interval", "POST", "/v1/keys", `{"automatic_rotation":true,"rotation_interval":"soon"}`, 400, V},
		{"create: interval too short", "POST", "/v1/keys", `{"automatic_rotation":true,"rotation_interval":"1d"}`, 400, V},
		{"create: interval too long", "POST", "/v1/keys", `{"automatic_rotation":true,"rotation_interval":"3000d"}`, 400, V},
		{"create: tags not strings", "POST", "/v1/keys", `{"tags":{"a":1}}`, 400, V},
		{"create: empty tag key", "POST", "/v1/keys", `{"tags":{"":"x"}}`, 400, V},
		{"create: description too long", "POST", "/v1/keys", `{"description":"` + strings.Repeat("x", 9000) + `"}`, 400, V},

		{"describe: no such key", "GET", "/v1/keys/" + missing, "", 404, NF},
		{"describe: not a uuid", "GET", "/v1/keys/nope", "", 400, V},
		{"describe: no such alias", "GET", "/v1/keys/alias/nope", "", 404, NF},
		{"list: bad limit", "GET", "/v1/keys?limit=0", "", 400, V},
		{"list: limit too big", "GET", "/v1/keys?limit=1001", "", 400, V},
		{"list: limit not a number", "GET", "/v1/keys?limit=x", "", 400, V},
		{"list: bad next_token", "GET", "/v1/keys?next_token=!!", "", 400, V},
		{"update: unknown field", "PATCH", "/v1/keys/" + k.KeyID, `{"state":"Disabled"}`, 400, V},
		{"update: wrong type", "PATCH", "/v1/keys/" + k.KeyID, `{"tags":"a"}`, 400, V},
		{"update: no such key", "PATCH", "/v1/keys/" + missing, `{"description":"x"}`, 404, NF},
		{"enable: no such key", "POST", "/v1/keys/" + missing + "/enable", "", 404, NF},
		{"disable: body not empty object", "POST", "/v1/keys/" + k.KeyID + "/disable", `{"x":1}`, 400, V},
		{"version: not a number", "POST", "/v1/keys/" + k.KeyID + "/versions/one/disable", "", 400, V},
		{"version: zero", "POST", "/v1/keys/" + k.KeyID + "/versions/0/disable", "", 400, V},
		{"version: beyond 32 bits", "POST", "/v1/keys/" + k.KeyID + "/versions/2147483648/disable", "", 400, V},
		{"version: huge", "POST", "/v1/keys/" + k.KeyID + "/versions/99999999999999999999/enable", "", 400, V},
		{"version: none such", "POST", "/v1/keys/" + k.KeyID + "/versions/9/schedule-destruction", "", 404, NF},
		{"version: the primary", "POST", "/v1/keys/" + k.KeyID + "/versions/1/disable", "", 409, IS},
		{"rotations: next_token beyond 32 bits", "GET", "/v1/keys/" + k.KeyID + "/rotations?next_token=" + base64.RawURLEncoding.EncodeToString([]byte("2147483648")), "", 400, V},

		{"alias: missing name", "POST", "/v1/aliases", `{"target_key_id":"` + k.KeyID + `"}`, 400, V},
		{"alias: missing target", "POST", "/v1/aliases", `{"alias_name":"alias/new"}`, 400, V},
		{"alias: bad name", "POST", "/v1/aliases", `{"alias_name":"new","target_key_id":"` + k.KeyID + `"}`, 400, V},
		{"alias: taken", "POST", "/v1/aliases", `{"alias_name":"alias/good","target_key_id":"` + k.KeyID + `"}`, 409, AE},
		{"alias: target missing", "POST", "/v1/aliases", `{"alias_name":"alias/new","target_key_id":"` + missing + `"}`, 404, NF},
		{"alias: target bad id", "POST", "/v1/aliases", `{"alias_name":"alias/new","target_key_id":"x"}`, 400, V},
		{"alias: unknown field", "POST", "/v1/aliases", `{"alias_name":"alias/new","target_key_id":"` + k.KeyID + `","x":1}`, 400, V},
		{"update alias: missing", "PUT", "/v1/aliases/nope", `{"target_key_id":"` + k.KeyID + `"}`, 404, NF},
		{"update alias: target missing", "PUT", "/v1/aliases/good", `{"target_key_id":"` + missing + `"}`, 404, NF},
		{"update alias: no target", "PUT", "/v1/aliases/good", `{}`, 400, V},
		{"delete alias: missing", "DELETE", "/v1/aliases/nope", "", 404, NF},
		{"list aliases: key missing", "GET", "/v1/aliases?key_id=" + missing, "", 404, NF},

		{"encrypt: no key", "POST", "/v1/encrypt", `{"plaintext":"` + b64(1) + `"}`, 400, V},
		{"encrypt: no plaintext", "POST", "/v1/encrypt", `{"key_id":"` + k.KeyID + `"}`, 400, V},
		{"encrypt: empty plaintext", "POST", "/v1/encrypt", `{"key_id":"` + k.KeyID + `","plaintext":""}`, 400, V},
		{"encrypt: plaintext too long", "POST", "/v1/encrypt", `{"key_id":"` + k.KeyID + `","plaintext":"` + b64(4097) + `"}`, 400, V},
		{"encrypt: bad base64", "POST", "/v1/encrypt", `{"key_id":"` + k.KeyID + `","plaintext":"a$=="}`, 400, V},
		{"encrypt: unpadded base64", "POST", "/v1/encrypt", `{"key_id":"` + k.KeyID + `","plaintext":"YQ"}`, 400, V},
		{"encrypt: context not strings", "POST", "/v1/encrypt", `{"key_id":"` + k.KeyID + `","plaintext":"YQ==","encryption_context":{"a":1}}`, 400, V},
		{"encrypt: empty context key", "POST", "/v1/encrypt", `{"key_id":"` + k.KeyID + `","plaintext":"YQ==","encryption_context":{"":"x"}}`, 400, V},
		{"encrypt: no such key", "POST", "/v1/encrypt", `{"key_id":"` + missing + `","plaintext":"YQ=="}`, 404, NF},
		{"encrypt: no such alias", "POST", "/v1/encrypt", `{"key_id":"alias/nope","plaintext":"YQ=="}`, 404, NF},
		{"encrypt: disabled key", "POST", "/v1/encrypt", `{"key_id":"alias/off","plaintext":"YQ=="}`, 409, DI},
		{"decrypt: no blob", "POST", "/v1/decrypt", `{}`, 400, V},
		{"decrypt: bad base64", "POST", "/v1/decrypt", `{"ciphertext_blob":"%%%"}`, 400, V},
		{"decrypt: garbage blob", "POST", "/v1/decrypt", `{"ciphertext_blob":"` + b64(60) + `"}`, 400, IC},
		{"decrypt: key id not a uuid", "POST", "/v1/decrypt", `{"ciphertext_blob":"` + blob + `","key_id":"x"}`, 400, V},
		{"decrypt: unknown field", "POST", "/v1/decrypt", `{"ciphertext_blob":"` + blob + `","plaintext":"x"}`, 400, V},
		{"data key: no spec", "POST", "/v1/generate-data-key", `{"key_id":"` + k.KeyID + `"}`, 400, V},
		{"data key: both", "POST", "/v1/generate-data-key", `{"key_id":"` + k.KeyID + `","key_spec":"AES_256","number_of_bytes":32}`, 400, V},
		{"data key: bad spec", "POST", "/v1/generate-data-key", `{"key_id":"` + k.KeyID + `","key_spec":"AES_512"}`, 400, V},
		{"data key: too many bytes", "POST", "/v1/generate-data-key", `{"key_id":"` + k.KeyID + `","number_of_bytes":1025}`, 400, V},
		{"data key: negative bytes", "POST", "/v1/generate-data-key", `{"key_id":"` + k.KeyID + `","number_of_bytes":-1}`, 400, V},
		{"data key: fractional bytes", "POST", "/v1/generate-data-key", `{"key_id":"` + k.KeyID + `","number_of_bytes":1.5}`, 400, V},
		{"data key: disabled", "POST", "/v1/generate-data-key", `{"key_id":"alias/off","key_spec":"AES_256"}`, 409, DI},
		{"data key np: missing key", "POST", "/v1/generate-data-key-without-plaintext", `{"key_id":"` + missing + `","key_spec":"AES_256"}`, 404, NF},
		{"re-encrypt: no blob", "POST", "/v1/re-encrypt", `{"destination_key_id":"` + k.KeyID + `"}`, 400, V},
		{"re-encrypt: no destination", "POST", "/v1/re-encrypt", `{"ciphertext_blob":"` + blob + `"}`, 400, V},
		{"re-encrypt: destination disabled", "POST", "/v1/re-encrypt", `{"ciphertext_blob":"` + blob + `","destination_key_id":"alias/off"}`, 409, DI},
		{"re-encrypt: wrong source context", "POST", "/v1/re-encrypt", `{"ciphertext_blob":"` + blob + `","destination_key_id":"` + k.KeyID + `","source_encryption_context":{"a":"b"}}`, 400, IC},
		{"random: zero", "POST", "/v1/generate-random", `{"number_of_bytes":0}`, 400, V},
		{"random: too many", "POST", "/v1/generate-random", `{"number_of_bytes":1025}`, 400, V},
		{"random: string", "POST", "/v1/generate-random", `{"number_of_bytes":"8"}`, 400, V},

		{"body too large", "POST", "/v1/encrypt", `{"key_id":"` + k.KeyID + `","plaintext":"` + b64(70000) + `"}`, 413, V},
		{"unknown endpoint", "GET", "/v1/nothing", "", 404, NF},
		{"wrong method", "DELETE", "/v1/encrypt", "", 405, V},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			err := c.Do(ctx, tc.method, tc.path, body, nil)
			var e *client.Error
			if !asError(err, &e) {
				t.Fatalf("got %v, want %d %s", err, tc.status, tc.code)
			}
			if e.Status != tc.status || e.Code != tc.code || e.Message == "" || e.RequestID == "" {
				t.Fatalf("got %d %s %q (request id %q), want %d %s", e.Status, e.Code, e.Message, e.RequestID, tc.status, tc.code)
			}
		})
	}

	if after := takeSnapshot(t, ctx, c); !reflect.DeepEqual(before, after) {
		t.Fatalf("failed requests changed state:\nbefore %+v\nafter  %+v", before, after)
	}
	dec, err := c.Decrypt(ctx, enc.CiphertextBlob, nil, "")
	if err != nil || string(dec.Plaintext) != "keep me" {
		t.Fatalf("blob after bad inputs: %v", err)
	}
}

func asError(err error, target **client.Error) bool {
	e, ok := err.(*client.Error)
	if ok {
		*target = e
	}
	return ok
}

// Requests without a valid bearer token are refused before anything runs;
// health endpoints need none; every response has an X-Request-Id.
func TestAuthenticationAndRequestID(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ctx := kmstest.Ctx(t)
	for _, tc := range []struct {
		name, token string
	}{{"no token", ""}, {"unknown token", "not-the-admin-token-at-all"}, {"almost", kmstest.AdminToken + "x"}} {
		c := client.New(s.URL, tc.token, nil)
		_, err := c.CreateKey(ctx, client.CreateKeyRequest{})
		if client.Code(err) != "UnauthenticatedException" {
			t.Errorf("%s: %v, want UnauthenticatedException", tc.name, err)
		}
	}
	if keys, err := s.Client.ListKeys(ctx, 0, ""); err != nil || len(keys.Keys) != 0 {
		t.Fatalf("unauthenticated requests created keys: %v %v", keys, err)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("%s: %d, request id %q", path, resp.StatusCode, resp.Header.Get("X-Request-Id"))
		}
	}
	req, _ := http.NewRequest("GET", s.URL+"/v1/keys", nil)
	req.Header.Set("Authorization", fmt.Sprintf("Basic %s", "abc"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("basic auth: %d", resp.StatusCode)
	}
}

// A body over the limit is 413 whether its length is declared or it comes
// in chunks, and the key is not used.
func TestChunkedBodyOverTheLimit(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	id := admin.must(201, "POST", "/v1/keys", nil)["key_id"].(string)
	body := `{"key_id":"` + id + `","plaintext":"` + strings.Repeat("QUFB", 20000) + `"}`
	// A reader of unknown length makes the client send it chunked.
	req, err := http.NewRequest("POST", s.URL+"/v1/encrypt", struct{ io.Reader }{strings.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+kmstest.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 413 || !strings.Contains(string(got), "ValidationException") {
		t.Fatalf("chunked body over the limit: %d %s", resp.StatusCode, got)
	}
	recs := admin.must(200, "GET", "/v1/audit?key_id="+id, nil)["records"].([]any)
	for _, r := range recs {
		if r.(map[string]any)["action"] == "kms:Encrypt" && r.(map[string]any)["outcome"] == "allowed" {
			t.Errorf("the key was used: %v", r)
		}
	}
}
