package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/internal/byok"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
)

func TestMain(m *testing.M) { os.Exit(softhsmtest.Run(m)) }

// ctl runs kmsctl against a stack with the administrator's token in
// KMS_TOKEN, and returns exit code, stdout and stderr.
type ctl struct {
	t     *testing.T
	url   string
	token string
	env   map[string]string // more variables (KMS_OUTPUT, KMS_CACERT, ...)
}

func (c ctl) run(stdin string, args ...string) (int, string, string) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) string {
		if v, ok := c.env[k]; ok {
			return v
		}
		switch k {
		case "KMS_ADDR":
			return c.url
		case "KMS_TOKEN":
			return c.token
		}
		return ""
	}
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut, getenv)
	for _, s := range []string{out.String(), errOut.String()} {
		if c.token != "" && strings.Contains(s, c.token) {
			c.t.Fatalf("kmsctl %v printed the bearer token", args)
		}
	}
	return code, out.String(), errOut.String()
}

func (c ctl) ok(stdin string, args ...string) string {
	c.t.Helper()
	code, out, errOut := c.run(stdin, args...)
	if code != 0 {
		c.t.Fatalf("kmsctl %v: exit %d: %s", args, code, errOut)
	}
	return out
}

func newCtl(t *testing.T) ctl {
	s := kmstest.Start(t, kmstest.Options{})
	return ctl{t: t, url: s.URL, token: kmstest.AdminToken}
}

// A file of binary data goes through encrypt and decrypt unchanged, via an
// alias, with an encryption context; a context that differs is refused.
func TestEncryptDecryptFiles(t *testing.T) {
	c := newCtl(t)
	var key struct {
		KeyID string `json:"key_id"`
	}
	if err := json.Unmarshal([]byte(c.ok("", "--output", "json", "keys", "create", "--alias", "alias/files", "--tag", "team=a")), &key); err != nil || key.KeyID == "" {
		t.Fatalf("keys create --output json: %v", err)
	}
	dir := t.TempDir()
	plain := []byte{0, 1, 2, 0xff, 0, 'x', '\n', 0}
	in, blob, back := filepath.Join(dir, "in"), filepath.Join(dir, "blob"), filepath.Join(dir, "back")
	if err := os.WriteFile(in, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	c.ok("", "encrypt", "--key", "alias/files", "--in", in, "--out", blob, "--context", "app=files")
	c.ok("", "decrypt", "--in", blob, "--out", back, "--context", "app=files")
	got, _ := os.ReadFile(back)
	if !bytes.Equal(got, plain) {
		t.Fatalf("decrypted %x, want %x", got, plain)
	}
	if st, _ := os.Stat(back); st.Mode().Perm() != 0o600 {
		t.Errorf("decrypted file mode %v, want 0600", st.Mode().Perm())
	}
	// Over an existing world-readable file: still 0600, and nothing else
	// left in the directory.
	if err := os.WriteFile(back, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(back, 0o644)
	c.ok("", "decrypt", "--in", blob, "--out", back, "--context", "app=files")
	if st, _ := os.Stat(back); st.Mode().Perm() != 0o600 {
		t.Errorf("decrypted over a 0644 file: mode %v, want 0600", st.Mode().Perm())
	}
	if got, _ := os.ReadFile(back); !bytes.Equal(got, plain) {
		t.Errorf("decrypted over an existing file: %x", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("%d files in the directory, want 3 (no temporary left)", len(entries))
	}
	// More than the service takes: refused locally, no output.
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 4097), 0o600)
	if code, _, errOut := c.run("", "encrypt", "--key", "alias/files", "--in", big, "--out", filepath.Join(dir, "big.kms")); code != 1 || !strings.Contains(errOut, "at most 4096") {
		t.Errorf("4097-byte plaintext: exit %d %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "big.kms")); err == nil {
		t.Error("an output file was written for a refused plaintext")
	}
	os.Remove(big)
	code, _, errOut := c.run("", "decrypt", "--in", blob, "--context", "app=other")
	if code != 1 || !strings.HasPrefix(errOut, "kmsctl: InvalidCiphertextException: ") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("wrong context: exit %d, %q", code, errOut)
	}
	// stdin/stdout, base64.
	b64 := c.ok("aGVsbG8gcGlwZXM=", "encrypt", "--key", key.KeyID, "--base64")
	if out := c.ok(b64, "decrypt", "--base64"); strings.TrimSpace(out) != "aGVsbG8gcGlwZXM=" {
		t.Errorf("base64 round trip: %q", out)
	}
	// re-encrypt to another key keeps the plaintext out of kmsctl.
	c.ok("", "keys", "create", "--alias", "alias/files2")
	moved := c.ok(b64, "re-encrypt", "--key", "alias/files2", "--base64")
	if out := c.ok(moved, "decrypt", "--base64", "--key", "alias/files2"); strings.TrimSpace(out) != "aGVsbG8gcGlwZXM=" {
		t.Errorf("after re-encrypt: %q", out)
	}
	if out := c.ok("", "random", "--bytes", "16"); len(out) != 16 {
		t.Errorf("random --bytes 16 wrote %d bytes", len(out))
	}
	if out := c.ok("", "--output", "json", "generate-data-key", "--key", "alias/files", "--without-plaintext"); strings.Contains(out, "plaintext") {
		t.Errorf("data key without plaintext shows one: %s", out)
	}
}

// A plaintext that looks like JSON, even like encrypt's --output json
// answer, is data: encrypt takes the file's bytes as they are, and decrypt
// gives them back byte for byte.
func TestEncryptJSONLookingPlaintext(t *testing.T) {
	c := newCtl(t)
	c.ok("", "keys", "create", "--alias", "alias/json")
	dir := t.TempDir()
	for _, tc := range []struct{ name, plain string }{
		{"config", `{"name":"app","port":8080}`},
		{"answer-shaped", `{"ciphertext_blob":"aGVsbG8="}`},
		{"spaces first", " \n\t{\"ciphertext_blob\":\"aGVsbG8=\"}\n"},
		{"broken json", "{not json"},
	} {
		in, blob, back := filepath.Join(dir, "in"), filepath.Join(dir, "blob"), filepath.Join(dir, "back")
		if err := os.WriteFile(in, []byte(tc.plain), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, _, errOut := c.run("", "encrypt", "--key", "alias/json", "--in", in, "--out", blob); code != 0 {
			t.Errorf("%s: encrypt --in of %q: exit %d %s", tc.name, tc.plain, code, errOut)
			continue
		}
		c.ok("", "decrypt", "--in", blob, "--out", back)
		if got, _ := os.ReadFile(back); string(got) != tc.plain {
			t.Errorf("%s: decrypted %q, want the file's %q", tc.name, got, tc.plain)
		}
		// From stdin, to stdout: the same.
		if out := c.ok(c.ok(tc.plain, "encrypt", "--key", "alias/json"), "decrypt"); out != tc.plain {
			t.Errorf("%s: stdin round trip gave %q, want %q", tc.name, out, tc.plain)
		}
	}
}

// Tables and JSON, lists, key lifecycle, versions, aliases, access and audit.
func TestManagementCommands(t *testing.T) {
	c := newCtl(t)
	c.ok("", "keys", "create", "--alias", "alias/m", "--description", "managed by kmsctl")
	if out := c.ok("", "keys", "describe", "alias/m"); !strings.Contains(out, "key_state") || !strings.Contains(out, "Enabled") || !strings.Contains(out, "managed by kmsctl") {
		t.Errorf("keys describe table:\n%s", out)
	}
	c.ok("", "keys", "rotate", "alias/m")
	if out := c.ok("", "keys", "versions", "alias/m"); !strings.Contains(out, "DecryptOnly") || !strings.Contains(out, "Primary") || !strings.HasPrefix(out, "VERSION") {
		t.Errorf("keys versions:\n%s", out)
	}
	c.ok("", "versions", "disable", "alias/m", "1")
	c.ok("", "versions", "schedule-destruction", "alias/m", "1", "--days", "7")
	c.ok("", "versions", "cancel-destruction", "alias/m", "1")
	c.ok("", "keys", "rotation-policy", "alias/m", "--enabled", "--interval", "90d")
	if out := c.ok("", "--output", "json", "keys", "rotation-status", "alias/m"); !strings.Contains(out, `"automatic_rotation": "Enabled"`) {
		t.Errorf("rotation-status json:\n%s", out)
	}
	c.ok("", "keys", "disable", "alias/m")
	c.ok("", "keys", "enable", "alias/m")
	c.ok("", "keys", "update", "alias/m", "--description", "renamed", "--tag", "team=a", "--tag", "env=prod")
	if out := c.ok("", "--output", "json", "keys", "describe", "alias/m"); !strings.Contains(out, `"env": "prod"`) {
		t.Errorf("tags after update:\n%s", out)
	}
	if out := c.ok("", "--output", "json", "keys", "update", "alias/m", "--clear-tags"); strings.Contains(out, "prod") || !strings.Contains(out, "renamed") {
		t.Errorf("--clear-tags left tags, or changed the description:\n%s", out)
	}
	c.ok("", "aliases", "create", "alias/m2", "alias/m")
	if out := c.ok("", "aliases", "list"); !strings.Contains(out, "alias/m2") {
		t.Errorf("aliases list:\n%s", out)
	}
	c.ok("", "aliases", "delete", "alias/m2")
	if out := c.ok("", "keys", "list"); !strings.Contains(out, "alias/m") || !strings.Contains(out, "renamed") {
		t.Errorf("keys list:\n%s", out)
	}
	c.ok("", "keys", "schedule-deletion", "alias/m", "--days", "7")
	c.ok("", "keys", "cancel-deletion", "alias/m")
	c.ok("", "keys", "enable", "alias/m")

	c.ok(`{"statements":[{"effect":"allow","actions":["kms:Encrypt"],"resources":["alias/m"]}]}`, "policies", "put", "enc")
	c.ok("", "principals", "create", "app", "--policy", "enc")
	var tok struct {
		TokenID string `json:"token_id"`
		Token   string `json:"token"`
	}
	if err := json.Unmarshal([]byte(c.ok("", "--output", "json", "tokens", "create", "app")), &tok); err != nil || tok.Token == "" {
		t.Fatalf("tokens create: %v", err)
	}
	kmstest.Secret(tok.Token)
	app := ctl{t: t, url: c.url, token: tok.Token}
	app.ok("x", "encrypt", "--key", "alias/m")
	if code, _, errOut := app.run("", "keys", "list"); code != 1 || !strings.Contains(errOut, "AccessDeniedException") {
		t.Errorf("app lists keys: exit %d %s", code, errOut)
	}
	exp := c.ok("", "tokens", "create", "app", "--description", "a day", "--expires-in", "1d")
	if !strings.Contains(exp, "expiration_date") {
		t.Errorf("tokens create --expires-in shows no expiration_date:\n%s", exp)
	}
	if code, _, errOut := c.run("", "tokens", "create", "app", "--expires-in", "soon"); code != 1 || !strings.Contains(errOut, "ValidationException") {
		t.Errorf("tokens create --expires-in soon: exit %d %s", code, errOut)
	}
	list := c.ok("", "tokens", "list", "app")
	for _, want := range []string{"EXPIRATION_DATE", "LAST_USED_DATE", tok.TokenID, "a day"} {
		if !strings.Contains(list, want) {
			t.Errorf("tokens list lacks %q:\n%s", want, list)
		}
	}
	var listed struct {
		Tokens []struct {
			TokenID  string `json:"token_id"`
			LastUsed string `json:"last_used_date"`
			Expires  string `json:"expiration_date"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(c.ok("", "--output", "json", "tokens", "list", "app")), &listed); err != nil {
		t.Fatal(err)
	}
	for _, lt := range listed.Tokens {
		if (lt.TokenID == tok.TokenID) != (lt.LastUsed != "") || (lt.TokenID == tok.TokenID) == (lt.Expires != "") {
			t.Errorf("tokens list: %+v (the used token has a last use, the other an expiry)", lt)
		}
	}
	c.ok("", "tokens", "revoke", "app", tok.TokenID)
	if code, _, errOut := app.run("x", "encrypt", "--key", "alias/m"); code != 1 || !strings.Contains(errOut, "UnauthenticatedException") {
		t.Errorf("revoked token: exit %d %s", code, errOut)
	}
	if out := c.ok("", "audit", "list", "--principal", "app"); !strings.Contains(out, "kms:Encrypt") || !strings.Contains(out, "denied") ||
		!strings.Contains(out, "CREDENTIAL") || !strings.Contains(out, "token:"+tok.TokenID) {
		t.Errorf("audit list:\n%s", out)
	}
	if out := c.ok("", "audit", "verify"); !strings.Contains(out, "intact") || !strings.Contains(out, "true") {
		t.Errorf("audit verify:\n%s", out)
	}
	c.ok("", "principals", "delete", "app")
	c.ok("", "policies", "delete", "enc")
}

// The command line itself: usage errors exit 2 with a message, a missing
// token is one clear line.
func TestCommandLineErrors(t *testing.T) {
	c := newCtl(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, 2, "Usage:\n  kmsctl"},
		{[]string{"keys", "fly"}, 2, `unknown command "keys fly"`},
		{[]string{"--output", "xml", "keys", "list"}, 2, "--output"},
		{[]string{"keys", "describe"}, 2, "want KEY"},
		{[]string{"keys", "list", "--nope"}, 2, "unknown flag: --nope"},
		{[]string{"encrypt"}, 2, "--key is required"},
		{[]string{"versions", "disable", "alias/x", "one"}, 2, "not a positive number"},
		{[]string{"keys", "rotation-policy", "alias/x"}, 2, "--enabled"},
		{[]string{"audit", "list", "--from", "yesterday"}, 2, "RFC 3339"},
		{[]string{"keys", "update", "alias/x", "--clear-tags", "--tag", "a=b"}, 2, "exclude each other"},
		{[]string{"keys", "describe", "alias/none"}, 1, "kmsctl: NotFoundException: "},
		{[]string{"encrypt", "--key", "alias/none", "--in", "/nonexistent/file"}, 1, "--in:"},
	} {
		code, _, errOut := c.run("", tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("kmsctl %v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
	none := ctl{t: t, url: c.url}
	if code, _, errOut := none.run("", "keys", "list"); code != 2 || errOut != "kmsctl: no bearer token: set KMS_TOKEN, or give --token-file\n" {
		t.Errorf("no token: exit %d %q", code, errOut)
	}
	file := filepath.Join(t.TempDir(), "token")
	os.WriteFile(file, []byte(kmstest.AdminToken+"\n"), 0o600)
	if code, _, errOut := none.run("", "--token-file", file, "keys", "list"); code != 0 {
		t.Errorf("--token-file: exit %d %s", code, errOut)
	}
	if code, _, errOut := none.run("", "--token-file", file, "--timeout", "0", "keys", "list"); code != 0 {
		t.Errorf("--timeout 0 (no limit): exit %d %s", code, errOut)
	}
}

// Bring your own key from the shell: parameters to a file, the customer's
// wrap, import, use, deletion of the material.
func TestImportCommands(t *testing.T) {
	c := newCtl(t)
	var k struct {
		KeyID string `json:"key_id"`
	}
	json.Unmarshal([]byte(c.ok("", "--output", "json", "keys", "create", "--origin", "EXTERNAL", "--alias", "alias/mine")), &k)
	pubFile := filepath.Join(t.TempDir(), "pub.der")
	var p struct {
		ImportToken string `json:"import_token"`
	}
	if err := json.Unmarshal([]byte(c.ok("", "--output", "json", "keys", "import-parameters", "alias/mine", "--public-key", pubFile)), &p); err != nil || p.ImportToken == "" {
		t.Fatalf("import-parameters: %v", err)
	}
	kmstest.Secret(p.ImportToken)
	der, _ := os.ReadFile(pubFile)
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatal(err)
	}
	material := make([]byte, 32)
	rand.Read(material)
	wrapped, err := byok.Wrap("RSA_AES_KEY_WRAP_SHA_1", pub.(*rsa.PublicKey), material)
	if err != nil {
		t.Fatal(err)
	}
	if out := c.ok(string(wrapped), "keys", "import", "alias/mine", "--import-token", p.ImportToken); !strings.Contains(out, "Enabled") {
		t.Fatalf("import:\n%s", out)
	}
	blob := c.ok("c2VjcmV0", "encrypt", "--key", "alias/mine", "--base64")
	c.ok("", "keys", "delete-material", "alias/mine")
	if code, _, errOut := c.run(blob, "decrypt", "--base64"); code != 1 || !strings.Contains(errOut, "KMSInvalidStateException") {
		t.Errorf("decrypt without material: exit %d %s", code, errOut)
	}
	if code, _, _ := c.run("", "keys", "import", "alias/mine"); code != 2 {
		t.Errorf("import without --import-token: exit %d", code)
	}
}

// A server that hands back the same next_token would make a listing loop
// for ever: it is an error instead.
func TestAllPagesStopsOnARepeatedToken(t *testing.T) {
	calls := 0
	_, err := allPages(func(next string) ([]int, string, error) {
		calls++
		if calls > 10 {
			t.Fatal("still paging after 10 pages")
		}
		return []int{calls}, "same", nil
	})
	if err == nil || !strings.Contains(err.Error(), "same next_token") {
		t.Fatalf("repeated token: %v", err)
	}
	got, err := allPages(func(next string) ([]int, string, error) {
		switch next {
		case "":
			return []int{1}, "a", nil
		case "a":
			return []int{2}, "b", nil
		}
		return []int{3}, "", nil
	})
	if err != nil || len(got) != 3 {
		t.Fatalf("three pages: %v %v", got, err)
	}
}
