package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pinFile writes the test token's PIN into a file of the given mode.
func pinFile(t *testing.T, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(p, []byte(softhsmPIN(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// runFails runs kmsd, expects it to exit non-zero within 30 s, and returns
// its output.
func runFails(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(kmsdBin, args...)
	cmd.Env = append(env, "KMS_LISTEN="+freeAddr(t))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("kmsd %v started; output:\n%s", args, out.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("kmsd %v did not exit; output:\n%s", args, out.String())
	}
	return strings.TrimSpace(out.String())
}

// A PIN file that group or others can read is refused with one line; the
// same PIN in a 0600 file, or in a systemd credential, starts kmsd.
func TestPINFileMustBePrivate(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "kms.db")
	pin := softhsmPIN(t)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		env := append(withoutVar(kmsdEnv(t, db), "KMS_PIN"), "KMS_PIN_FILE="+pinFile(t, mode))
		text := runFails(t, env)
		if strings.Count(text, "\n") != 0 || !strings.Contains(text, "KMS_PIN_FILE") || !strings.Contains(text, "readable by group or others") {
			t.Errorf("PIN file of mode %04o: want one line saying it is readable by group or others, got:\n%s", mode, text)
		}
		if strings.Contains(text, pin) {
			t.Fatalf("output shows the PIN: %s", text)
		}
	}
	p := startKmsd(t, append(withoutVar(kmsdEnv(t, db), "KMS_PIN"), "KMS_PIN_FILE="+pinFile(t, 0o600)))
	p.stop(t)
	// A systemd credential: 0400 with read for the service user through an
	// ACL, which stat shows as 0440 (TestSecretFileACL has the other shapes).
	cred := pinFile(t, 0o400)
	setfacl(t, cred, "-m", fmt.Sprintf("u:%d:r", os.Getuid()))
	p = startKmsd(t, append(withoutVar(kmsdEnv(t, db), "KMS_PIN"), "KMS_PIN_FILE="+cred))
	p.stop(t)
}

// A database password is never taken from a flag, which every user sees
// in ps; the message points to KMS_DB and a password file.
func TestDatabasePasswordNotInAFlag(t *testing.T) {
	env := kmsdEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "kms.db"))
	for _, args := range [][]string{
		{"-db", "postgres://kms:hunter2secret@127.0.0.1:1/kms"},
		{"-db", "postgresql://kms@127.0.0.1:1/kms?password=hunter2secret"},
		{"init", "-db", "postgres://kms:hunter2secret@127.0.0.1:1/kms"},
	} {
		text := runFails(t, env, args...)
		if strings.Count(text, "\n") != 0 || !strings.Contains(text, "KMS_DB") || !strings.Contains(text, "ps") {
			t.Errorf("kmsd %v: want one line pointing to KMS_DB, got:\n%s", args[:len(args)-1], text)
		}
		if strings.Contains(text, "hunter2secret") {
			t.Errorf("kmsd %v: the output shows the password: %s", args[:len(args)-1], text)
		}
	}
}

// HTTPS is TLS 1.2 or later with AEAD cipher suites only: TLS 1.1 and the
// CBC suites that Go still offers by default are refused at the handshake.
func TestTLSIsModernOnly(t *testing.T) {
	certFile, keyFile, _, roots := tlsFiles(t)
	addr := freeAddr(t)
	env := append(kmsdEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "kms.db")),
		"KMS_TLS_CERT="+certFile, "KMS_TLS_KEY="+keyFile, "KMS_LISTEN="+addr)
	p := &proc{url: "https://" + addr, done: make(chan error, 1)}
	startProc(t, p, env)
	get := func(tc *tls.Config) error {
		tc.RootCAs = roots
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
		resp, err := hc.Get(p.url + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for get(&tls.Config{}) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("kmsd not serving TLS:\n%s", p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"TLS 1.3", &tls.Config{MinVersion: tls.VersionTLS13}, true},
		{"TLS 1.2, AES-GCM", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, true},
		{"TLS 1.2, ChaCha20-Poly1305", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, true},
		{"TLS 1.2, AES-CBC", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}}, false},
		{"TLS 1.1", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false},
	} {
		err := get(tc.cfg)
		if tc.ok != (err == nil) {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	p.stop(t)
}
