package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// The real binary: -h exits 0; serving, its socket is 0600 and the
// apiserver's client works through it; SIGTERM ends it with exit 0 and
// removes the socket.
func TestBinaryServesAndStopsOnSIGTERM(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "kms-k8s-plugin")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "-h").CombinedOutput(); err != nil || !strings.Contains(string(out), "-listen") {
		t.Fatalf("-h: %v\n%s", err, out)
	}

	f := newFixture(t, kmstest.Options{}, nil, client.CreateKeyRequest{})
	sock := filepath.Join(t.TempDir(), "kms.sock")
	cmd := exec.Command(bin, "-listen", sock, "-addr", f.kmsd.url(), "-key", "alias/kubernetes-secrets")
	cmd.Env = []string{"KMS_TOKEN=" + f.token}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(stderr.String(), `"msg":"serving KMS v2"`); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("the plugin exited before serving: %v\n%s", err, stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving after 60 s:\n%s", stderr)
		}
	}
	st, err := os.Stat(sock)
	if err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v, want a 0600 socket", st.Mode(), err)
	}
	as := newAPIServer(t, sock)
	if got := as.mustProbe(t); got.KeyID != f.keyID+":v1" {
		t.Fatalf("Status: %+v", got)
	}
	data := as.write(t, "binary", []byte("through the real binary"))
	fresh := newAPIServer(t, sock)
	fresh.mustProbe(t)
	if got, _ := fresh.read(t, "binary", data); string(got) != "through the real binary" {
		t.Fatalf("read back %q", got)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("after SIGTERM: %v (want exit 0)\n%s", err, stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("still running 60 s after SIGTERM\n%s", stderr)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the socket is left after SIGTERM: %v", err)
	}
	if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no stop in the log:\n%s", stderr)
	}
}
