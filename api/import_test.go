package api_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/internal/byok"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

const byokAlg = "RSA_AES_KEY_WRAP_SHA_1" // what SoftHSM 2.6.1 can unwrap with a length check

// params asks for import parameters and parses the public key.
func params(t *testing.T, c caller, key string) (*rsa.PublicKey, string) {
	t.Helper()
	p := c.must(200, "POST", "/v1/keys/"+key+"/import-parameters", map[string]any{"wrapping_algorithm": byokAlg, "wrapping_key_spec": "RSA_3072"})
	der, _ := base64.StdEncoding.DecodeString(p["public_key"].(string))
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatalf("public_key is not DER SubjectPublicKeyInfo: %v", err)
	}
	rsaPub, ok := pub.(*rsa.PublicKey)
	if !ok || rsaPub.N.BitLen() != 3072 {
		t.Fatalf("public_key is not RSA-3072")
	}
	kmstest.Secret(p["import_token"].(string))
	return rsaPub, p["import_token"].(string)
}

func wrap(t *testing.T, pub *rsa.PublicKey, material []byte) string {
	t.Helper()
	w, err := byok.Wrap(byokAlg, pub, material)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(w)
}

// The BYOK round trip of the issue: wrap a locally generated key with the
// returned public key, import, encrypt with hsmkms, decrypt; delete the
// material, the blob fails; re-import the same material, it decrypts
// again; other material is refused; bad imports are clear errors that
// change nothing; material with valid_to expires.
func TestBringYourOwnKey(t *testing.T) {
	clock := kmstest.NewClock()
	f := newAccessFixtureWith(t, kmstest.Options{Config: service.Config{Clock: clock}})
	admin := f.admin
	k := admin.must(201, "POST", "/v1/keys", map[string]any{"origin": "EXTERNAL", "alias": "alias/byok"})
	id := k["key_id"].(string)
	if k["key_state"] != "PendingImport" || k["origin"] != "EXTERNAL" {
		t.Fatalf("EXTERNAL key: %v", k)
	}
	admin.must(409, "POST", "/v1/encrypt", map[string]any{"key_id": id, "plaintext": b64("x")})

	// Algorithms the token cannot do are a clear ValidationException.
	refused := kmstest.RefusedWrappingAlgorithm(t)
	r := admin.do("POST", "/v1/keys/"+id+"/import-parameters", map[string]any{"wrapping_algorithm": refused})
	if r.status != 400 || !strings.Contains(string(r.body), byokAlg) {
		t.Errorf("%s on this token: %d %s (want 400 naming what the token offers)", refused, r.status, r.body)
	}
	// Parameters are for EXTERNAL keys only.
	hsmKey := admin.must(201, "POST", "/v1/keys", map[string]any{})
	admin.must(409, "POST", "/v1/keys/"+hsmKey["key_id"].(string)+"/import-parameters", map[string]any{"wrapping_algorithm": byokAlg})
	// Authorisation: the viewer may do none of it.
	f.viewer.must(403, "POST", "/v1/keys/"+id+"/import-parameters", map[string]any{"wrapping_algorithm": byokAlg})

	material := make([]byte, 32)
	rand.Read(material)
	pub, token := params(t, admin, id)
	f.viewer.must(403, "POST", "/v1/keys/"+id+"/import", map[string]any{"import_token": token, "encrypted_key_material": wrap(t, pub, material)})

	// Bad imports: clear errors, nothing changed.
	other, _ := rsa.GenerateKey(rand.Reader, 3072)
	before := admin.must(200, "GET", "/v1/keys/"+id, nil)
	for name, body := range map[string]map[string]any{
		"no token":           {"encrypted_key_material": wrap(t, pub, material)},
		"unknown token":      {"import_token": "kmsimp_nope", "encrypted_key_material": wrap(t, pub, material)},
		"no material":        {"import_token": token},
		"bad base64":         {"import_token": token, "encrypted_key_material": "***"},
		"another public key": {"import_token": token, "encrypted_key_material": wrap(t, &other.PublicKey, material)},
		"AES-128 material":   {"import_token": token, "encrypted_key_material": wrap(t, pub, material[:16])},
		"damaged":            {"import_token": token, "encrypted_key_material": base64.StdEncoding.EncodeToString(make([]byte, 424))},
		"valid_to past":      {"import_token": token, "encrypted_key_material": wrap(t, pub, material), "valid_to": "2001-01-01T00:00:00Z"},
		"valid_to garbage":   {"import_token": token, "encrypted_key_material": wrap(t, pub, material), "valid_to": "soon"},
		"unknown field":      {"import_token": token, "encrypted_key_material": wrap(t, pub, material), "key": "x"},
	} {
		r := admin.do("POST", "/v1/keys/"+id+"/import", body)
		if r.status != 400 || r.code() != "ValidationException" {
			t.Errorf("%s: %d %s, want 400 ValidationException", name, r.status, r.body)
		}
		if after := admin.must(200, "GET", "/v1/keys/"+id, nil); !equalJSON(before, after) {
			t.Errorf("%s changed the key", name)
		}
	}
	// A token of another key is refused.
	k2 := admin.must(201, "POST", "/v1/keys", map[string]any{"origin": "EXTERNAL"})
	pub2, token2 := params(t, admin, k2["key_id"].(string))
	if r := admin.do("POST", "/v1/keys/"+id+"/import", map[string]any{"import_token": token2, "encrypted_key_material": wrap(t, pub2, material)}); r.status != 400 || !strings.Contains(string(r.body), "another key") {
		t.Errorf("token of another key: %d %s", r.status, r.body)
	}

	// The import (the failed attempts above did not spend the token).
	imported := admin.must(200, "POST", "/v1/keys/"+id+"/import", map[string]any{"import_token": token, "encrypted_key_material": wrap(t, pub, material)})
	if imported["key_state"] != "Enabled" || imported["primary_key_version"] != float64(1) {
		t.Fatalf("after import: %v", imported)
	}
	vs := admin.must(200, "GET", "/v1/keys/"+id+"/versions", nil)["versions"].([]any)
	if len(vs) != 1 || vs[0].(map[string]any)["origin"] != "EXTERNAL" {
		t.Errorf("versions after import: %v", vs)
	}
	enc := admin.must(200, "POST", "/v1/encrypt", map[string]any{"key_id": "alias/byok", "plaintext": b64("bring your own")})
	admin.must(200, "POST", "/v1/decrypt", map[string]any{"ciphertext_blob": enc["ciphertext_blob"]})
	// The token is spent; EXTERNAL keys never rotate.
	if r := admin.do("POST", "/v1/keys/"+id+"/import", map[string]any{"import_token": token, "encrypted_key_material": wrap(t, pub, material)}); r.status != 409 && r.status != 400 {
		t.Errorf("a second import with the token: %d %s", r.status, r.body)
	}
	admin.must(409, "POST", "/v1/keys/"+id+"/rotate", nil)
	admin.must(409, "PUT", "/v1/keys/"+id+"/rotation-policy", map[string]any{"automatic_rotation": true})

	// Delete the material: the blob fails with a clear error.
	f.viewer.must(403, "DELETE", "/v1/keys/"+id+"/key-material", nil)
	if d := admin.must(200, "DELETE", "/v1/keys/"+id+"/key-material", nil); d["key_state"] != "PendingImport" {
		t.Fatalf("after deleting the material: %v", d)
	}
	if r := admin.do("POST", "/v1/decrypt", map[string]any{"ciphertext_blob": enc["ciphertext_blob"]}); r.status != 409 || !strings.Contains(string(r.body), "import") {
		t.Errorf("decrypt without material: %d %s", r.status, r.body)
	}
	admin.must(409, "DELETE", "/v1/keys/"+id+"/key-material", nil)
	// The spent token stays spent, even with the key waiting for material.
	if r := admin.do("POST", "/v1/keys/"+id+"/import", map[string]any{"import_token": token, "encrypted_key_material": wrap(t, pub, material)}); r.status != 400 || !strings.Contains(string(r.body), "used already") {
		t.Errorf("a reused import token: %d %s, want 400 'used already'", r.status, r.body)
	}

	// Other material is refused; the same comes back, with an expiry.
	pub, token = params(t, admin, id)
	otherMaterial := make([]byte, 32)
	rand.Read(otherMaterial)
	if r := admin.do("POST", "/v1/keys/"+id+"/import", map[string]any{"import_token": token, "encrypted_key_material": wrap(t, pub, otherMaterial)}); r.status != 400 || !strings.Contains(string(r.body), "same key material") {
		t.Errorf("other material: %d %s", r.status, r.body)
	}
	if d := admin.must(200, "GET", "/v1/keys/"+id, nil); d["key_state"] != "PendingImport" {
		t.Errorf("after refused material: %v", d["key_state"])
	}
	validTo := clock.Now().Add(time.Hour).Format(time.RFC3339)
	admin.must(200, "POST", "/v1/keys/"+id+"/import", map[string]any{"import_token": token, "encrypted_key_material": wrap(t, pub, material), "valid_to": validTo})
	admin.must(200, "POST", "/v1/decrypt", map[string]any{"ciphertext_blob": enc["ciphertext_blob"]})

	// valid_to passes: the worker deletes the material.
	clock.Advance(2 * time.Hour)
	if err := f.s.Service.Worker.RunDue(kmstest.Ctx(t)); err != nil {
		t.Fatal(err)
	}
	if d := admin.must(200, "GET", "/v1/keys/"+id, nil); d["key_state"] != "PendingImport" {
		t.Errorf("after valid_to: %v", d["key_state"])
	}
	admin.must(409, "POST", "/v1/decrypt", map[string]any{"ciphertext_blob": enc["ciphertext_blob"]})

	// Import parameters expire after 24 hours.
	pub, token = params(t, admin, id)
	clock.Advance(25 * time.Hour)
	if r := admin.do("POST", "/v1/keys/"+id+"/import", map[string]any{"import_token": token, "encrypted_key_material": wrap(t, pub, material)}); r.status != 400 || !strings.Contains(string(r.body), "expired") {
		t.Errorf("expired parameters: %d %s", r.status, r.body)
	}
	// The worker removes expired parameters (and their wrapping keys): the
	// token is then unknown, and the error says what to do.
	if err := f.s.Service.Worker.RunDue(kmstest.Ctx(t)); err != nil {
		t.Fatal(err)
	}
	if r := admin.do("POST", "/v1/keys/"+id+"/import", map[string]any{"import_token": token, "encrypted_key_material": wrap(t, pub, material)}); r.status != 400 || !strings.Contains(string(r.body), "were removed") {
		t.Errorf("swept parameters: %d %s", r.status, r.body)
	}
}

// Cancelling the deletion of an EXTERNAL key without live material puts it
// back in PendingImport (it has nothing to encrypt with); with material it
// is Disabled, as any key.
func TestCancelDeletionOfAKeyWithoutMaterial(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	window := map[string]any{"pending_window_days": 7}

	empty := admin.must(201, "POST", "/v1/keys", map[string]any{"origin": "EXTERNAL"})["key_id"].(string)
	admin.must(200, "POST", "/v1/keys/"+empty+"/schedule-deletion", window)
	if k := admin.must(200, "POST", "/v1/keys/"+empty+"/cancel-deletion", nil); k["key_state"] != "PendingImport" {
		t.Errorf("never imported, deletion cancelled: %v, want PendingImport", k["key_state"])
	}

	withMaterial := admin.must(201, "POST", "/v1/keys", map[string]any{"origin": "EXTERNAL"})["key_id"].(string)
	material := make([]byte, 32)
	rand.Read(material)
	pub, token := params(t, admin, withMaterial)
	admin.must(200, "POST", "/v1/keys/"+withMaterial+"/import", map[string]any{"import_token": token, "encrypted_key_material": wrap(t, pub, material)})
	admin.must(200, "POST", "/v1/keys/"+withMaterial+"/schedule-deletion", window)
	if k := admin.must(200, "POST", "/v1/keys/"+withMaterial+"/cancel-deletion", nil); k["key_state"] != "Disabled" {
		t.Errorf("imported, deletion cancelled: %v, want Disabled", k["key_state"])
	}

	admin.must(200, "DELETE", "/v1/keys/"+withMaterial+"/key-material", nil)
	admin.must(200, "POST", "/v1/keys/"+withMaterial+"/schedule-deletion", window)
	if k := admin.must(200, "POST", "/v1/keys/"+withMaterial+"/cancel-deletion", nil); k["key_state"] != "PendingImport" {
		t.Errorf("material deleted, deletion cancelled: %v, want PendingImport", k["key_state"])
	}
	// And it takes its material again.
	pub, token = params(t, admin, withMaterial)
	admin.must(200, "POST", "/v1/keys/"+withMaterial+"/import", map[string]any{"import_token": token, "encrypted_key_material": wrap(t, pub, material)})
}
