package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
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

// decrypt-file --key refuses a forged file: one whose data key is under
// another key that the same caller may decrypt with (without --key such a
// file opens).
func TestDecryptFileKey(t *testing.T) {
	c := newCtl(t)
	c.ok("", "keys", "create", "--alias", "alias/mine")
	c.ok("", "keys", "create", "--alias", "alias/forger")
	dir := t.TempDir()
	in, genuine, forged, back := filepath.Join(dir, "in"), filepath.Join(dir, "genuine.kms"), filepath.Join(dir, "forged.kms"), filepath.Join(dir, "back")
	os.WriteFile(in, []byte("the real file"), 0o600)
	c.ok("", "encrypt-file", "--key", "alias/mine", "--in", in, "--out", genuine)
	os.WriteFile(in, []byte("the forger's file"), 0o600)
	c.ok("", "encrypt-file", "--key", "alias/forger", "--in", in, "--out", forged)

	c.ok("", "decrypt-file", "--key", "alias/mine", "--in", genuine, "--out", back)
	if got, _ := os.ReadFile(back); string(got) != "the real file" {
		t.Fatalf("decrypt-file --key of the genuine file: %q", got)
	}
	code, _, errOut := c.run("", "decrypt-file", "--key", "alias/mine", "--in", forged, "--out", back)
	if code != 1 || !strings.Contains(errOut, "IncorrectKeyException") {
		t.Errorf("forged file with --key: exit %d %q, want exit 1 IncorrectKeyException", code, errOut)
	}
	if got, _ := os.ReadFile(back); string(got) != "the real file" {
		t.Errorf("the refused forgery changed the output file: %q", got)
	}
	if got := c.ok("", "decrypt-file", "--in", forged, "--out", "-"); got != "the forger's file" {
		t.Errorf("without --key: %q", got)
	}
}

// A read error in the middle of encrypt-file aborts the writer (which wipes
// the plaintext it buffered) instead of leaving it, unclosed, to the
// garbage collector: it takes no more data and writes no last chunk.
func TestSealAllAbortsOnError(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	k, err := s.Client.CreateKey(context.Background(), client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w, err := s.Client.NewEnvelopeWriter(context.Background(), &out, k.KeyID, nil)
	if err != nil {
		t.Fatal(err)
	}
	header := out.Len()
	readErr := errors.New("disk gone")
	in := io.MultiReader(strings.NewReader("plaintext before the error"), iotest.ErrReader(readErr))
	if _, err := sealAll(w, in); !errors.Is(err, readErr) {
		t.Fatalf("sealAll = %v, want the read error", err)
	}
	if err := w.Close(); err == nil || out.Len() != header {
		t.Errorf("after the error Close = %v and %d bytes after the header; want an aborted writer, nothing written", err, out.Len()-header)
	}
}
