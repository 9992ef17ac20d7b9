package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// encrypt-file and decrypt-file: a file larger than the service's limit goes
// round trip; a wrong context, an altered or truncated envelope each exit 1
// with a clear error and leave no output (and an existing file unchanged).
func TestEncryptDecryptFileCommands(t *testing.T) {
	c := newCtl(t)
	c.ok("", "keys", "create", "--alias", "alias/files")
	dir := t.TempDir()
	plain := make([]byte, 300<<10+7)
	rand.Read(plain)
	in, sealed, back := filepath.Join(dir, "data.bin"), filepath.Join(dir, "data.bin.kms"), filepath.Join(dir, "data.out")
	os.WriteFile(in, plain, 0o600)

	var res struct {
		KeyID string `json:"key_id"`
		Bytes int64  `json:"plaintext_bytes"`
	}
	out := c.ok("", "--output", "json", "encrypt-file", "--key", "alias/files", "--in", in, "--out", sealed, "--context", "file=data.bin")
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Bytes != int64(len(plain)) || res.KeyID == "" {
		t.Fatalf("encrypt-file --output json: %v %s", err, out)
	}
	if out := c.ok("", "decrypt-file", "--in", sealed, "--out", back, "--context", "file=data.bin"); !strings.Contains(out, "plaintext_bytes") {
		t.Errorf("decrypt-file table:\n%s", out)
	}
	if got, _ := os.ReadFile(back); !bytes.Equal(got, plain) {
		t.Fatal("decrypt-file did not give back the file")
	}
	if st, _ := os.Stat(back); st.Mode().Perm() != 0o600 {
		t.Errorf("decrypted file mode %v", st.Mode().Perm())
	}
	// Through pipes, and without --context (the file's own is used).
	env := c.ok(string(plain), "encrypt-file", "--key", "alias/files", "--in", "-", "--out", "-")
	if got := c.ok(env, "decrypt-file", "--in", "-", "--out", "-"); got != string(plain) {
		t.Error("decrypt-file through pipes")
	}

	sealedBytes, _ := os.ReadFile(sealed)
	altered := bytes.Clone(sealedBytes)
	altered[len(altered)-100] ^= 1
	bad := filepath.Join(dir, "bad.kms")
	os.WriteFile(back, []byte("old content"), 0o600)
	for _, tc := range []struct {
		name     string
		envelope []byte
		args     []string
		want     string
	}{
		{"wrong context", sealedBytes, []string{"--context", "file=other"}, "context given differs"},
		{"altered", altered, nil, "fails authentication"},
		{"truncated", sealedBytes[:len(sealedBytes)-(300<<10+7-4*(64<<10))-16], nil, "truncated"},
		{"not an envelope", plain, nil, "not an hsmkms envelope"},
	} {
		os.WriteFile(bad, tc.envelope, 0o600)
		code, _, errOut := c.run("", append([]string{"decrypt-file", "--in", bad, "--out", back}, tc.args...)...)
		if code != 1 || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%s: exit %d %q, want exit 1 mentioning %q", tc.name, code, errOut, tc.want)
		}
		if got, _ := os.ReadFile(back); string(got) != "old content" {
			t.Errorf("%s: the existing output file was changed", tc.name)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 4 {
		t.Errorf("%d files in the directory, want 4 (no temporary left)", len(entries))
	}
	for _, args := range [][]string{
		{"encrypt-file", "--in", in, "--out", sealed},
		{"encrypt-file", "--key", "alias/files", "--in", in},
		{"decrypt-file", "--in", sealed, "--out", sealed},
	} {
		if code, _, _ := c.run("", args...); code != 2 {
			t.Errorf("kmsctl %v: exit %d, want 2", args, code)
		}
	}
}
