package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
)

// devRepo lays out what `make run` uses (scripts/dev-setup.sh, its helper
// and softhsm.conf) in a fresh directory, as a clone has them.
func devRepo(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		t.Skip("softhsm2-util missing; run `make test`, which installs softhsm2")
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"scripts/dev-setup.sh", "scripts/ensure-softhsm.sh", "softhsm.conf"} {
		b, err := os.ReadFile(filepath.Join("..", "..", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// devSetup runs scripts/dev-setup.sh in dir and returns its output.
func devSetup(t *testing.T, dir string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", "scripts/dev-setup.sh")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF=") // the script sets its own
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startDevKmsd starts kmsd as `make run` does: in the repository root, on
// its SoftHSM configuration, PIN file and bootstrap token.
func startDevKmsd(t *testing.T, dir string) (*proc, string) {
	t.Helper()
	boot, err := os.ReadFile(filepath.Join(dir, "var", "bootstrap-token"))
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	p := &proc{url: "http://" + addr, done: make(chan error, 1)}
	startProcIn(t, p, dir, []string{
		"PATH=" + os.Getenv("PATH"),
		"SOFTHSM2_CONF=" + filepath.Join(dir, "softhsm.conf"),
		"KMS_PIN_FILE=var/pin",
		"KMS_BOOTSTRAP_TOKEN=" + strings.TrimSpace(string(boot)),
		"KMS_LOG_LEVEL=warn",
		"KMS_LISTEN=" + addr,
	})
	if ok, err := p.waitReady(60 * time.Second); !ok {
		t.Fatalf("kmsd not ready: %v\n%s", err, p.log())
	}
	return p, strings.TrimSpace(string(boot))
}

// SoftHSM 2.6.1 rewrites token.object in place at each C_Login, so a kill
// -9 of kmsd at that moment leaves it empty (issue: the development token
// lost). make run snapshots token and database while no kmsd runs and
// restores both when it finds the token damaged: the key made before the
// snapshot still decrypts, and the damaged files are kept, not deleted.
func TestDevSetupRestoresADamagedToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := devRepo(t)
	if out, err := devSetup(t, dir); err != nil {
		t.Fatalf("first dev-setup: %v\n%s", err, out)
	}

	p, token := startDevKmsd(t, dir)
	c := client.New(p.url, token, nil)
	if _, err := c.CreateKey(ctx, client.CreateKeyRequest{Alias: "alias/dev"}); err != nil {
		t.Fatal(err)
	}
	enc, err := c.Encrypt(ctx, "alias/dev", []byte("kept across the crash"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.stop(t)

	// The next start takes the snapshot that includes the key.
	if out, err := devSetup(t, dir); err != nil {
		t.Fatalf("second dev-setup: %v\n%s", err, out)
	}

	// What SoftHSM leaves behind after a kill -9 during C_Login.
	objs, err := filepath.Glob(filepath.Join(dir, "var", "softhsm", "tokens", "*", "token.object"))
	if err != nil || len(objs) != 1 {
		t.Fatalf("token.object files: %v %v", objs, err)
	}
	if err := os.Truncate(objs[0], 0); err != nil {
		t.Fatal(err)
	}

	out, err := devSetup(t, dir)
	if err != nil {
		t.Fatalf("dev-setup on a damaged token: %v\n%s", err, out)
	}
	if !strings.Contains(out, "restored token and database") {
		t.Fatalf("dev-setup did not say it restored the token:\n%s", out)
	}
	aside, _ := filepath.Glob(filepath.Join(dir, "var", "broken-*", "tokens", "*", "token.object"))
	if len(aside) != 1 {
		t.Fatalf("the damaged token was not kept aside: %v", aside)
	}

	p, _ = startDevKmsd(t, dir)
	c = client.New(p.url, token, nil)
	dec, err := c.Decrypt(ctx, enc.CiphertextBlob, nil, "")
	if err != nil {
		t.Fatalf("decrypt after restore: %v\n%s", err, p.log())
	}
	if string(dec.Plaintext) != "kept across the crash" {
		t.Fatalf("plaintext %q", dec.Plaintext)
	}
	p.stop(t)
}

// Without a snapshot there is nothing to restore: dev-setup stops with one
// line saying what happened and what to do, and touches nothing.
func TestDevSetupExplainsADamagedTokenWithoutBackup(t *testing.T) {
	dir := devRepo(t)
	if out, err := devSetup(t, dir); err != nil {
		t.Fatalf("dev-setup: %v\n%s", err, out)
	}
	if err := os.RemoveAll(filepath.Join(dir, "var", "backup")); err != nil {
		t.Fatal(err)
	}
	objs, _ := filepath.Glob(filepath.Join(dir, "var", "softhsm", "tokens", "*", "token.object"))
	if len(objs) != 1 {
		t.Fatalf("token.object files: %v", objs)
	}
	if err := os.Truncate(objs[0], 0); err != nil {
		t.Fatal(err)
	}
	out, err := devSetup(t, dir)
	if err == nil {
		t.Fatalf("dev-setup succeeded on a damaged token without backup:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 || !strings.Contains(out, "damaged") || !strings.Contains(out, "no backup") {
		t.Fatalf("want one line explaining the damage, got:\n%s", out)
	}
	if fi, err := os.Stat(objs[0]); err != nil || fi.Size() != 0 {
		t.Fatalf("the damaged token was changed: %v %v", fi, err)
	}
}

// A running kmsd of `make run` holds var/kmsd.lock: dev-setup must not copy
// a token that kmsd is writing.
func TestDevSetupRefusesWhileKmsdRuns(t *testing.T) {
	dir := devRepo(t)
	if out, err := devSetup(t, dir); err != nil {
		t.Fatalf("dev-setup: %v\n%s", err, out)
	}
	// Blocking, not -n: the probe below takes the lock for an instant, and a
	// non-blocking holder that met it would give up.
	hold := exec.Command("flock", filepath.Join(dir, "var", "kmsd.lock"), "sleep", "60")
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hold.Process.Kill(); hold.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Wait until flock holds the lock (it may not have taken it yet).
		if exec.Command("flock", "-n", filepath.Join(dir, "var", "kmsd.lock"), "true").Run() != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("flock never took the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A file only the current snapshot has: a replaced snapshot lacks it.
	marker := filepath.Join(dir, "var", "backup", "marker")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := devSetup(t, dir)
	if err == nil || !strings.Contains(out, "another 'make run'") {
		t.Fatalf("dev-setup ran beside a running kmsd: %v\n%s", err, out)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the snapshot was replaced while kmsd ran: %v", err)
	}
}
