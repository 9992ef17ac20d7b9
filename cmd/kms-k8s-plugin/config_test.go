package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// runOnce runs the plugin until it says it serves, then stops it as
// SIGTERM would. It returns the exit code, stderr, and the socket's mode
// while it served (0 if it never did).
func runOnce(t *testing.T, env map[string]string, args ...string) (int, string, os.FileMode) {
	t.Helper()
	sock := ""
	for i, a := range args {
		if a == "-listen" && i+1 < len(args) {
			sock = args[i+1]
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, stderr, mapEnv(env)) }()
	var mode os.FileMode
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		select {
		case code := <-done:
			return code, stderr.String(), mode
		default:
		}
		if mode == 0 && strings.Contains(stderr.String(), `"msg":"serving KMS v2"`) {
			st, err := os.Lstat(sock)
			if err != nil {
				t.Fatalf("serving, but no socket: %v", err)
			}
			mode = st.Mode()
			cancel()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v: neither served nor stopped in 30 s:\n%s", args, stderr)
		}
	}
}

// -h documents every flag and the environment, and exits 0.
func TestHelp(t *testing.T) {
	code, out, _ := runOnce(t, nil, "-h")
	if code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	for _, want := range []string{"-listen", "-addr", "-key", "-ca-file", "-client-cert", "-client-key", "-token-file", "-timeout",
		"KMS_TOKEN", "0600", "kms:DescribeKey, kms:Encrypt and kms:Decrypt", "docs/kubernetes.md", "every minute", "(default 2s)", "KMS_LOG_LEVEL"} {
		if !strings.Contains(out, want) {
			t.Errorf("-h does not mention %q:\n%s", want, out)
		}
	}
}

// Every bad command line stops the plugin with one line naming the flag,
// before anything is listened on.
func TestBadCommandLines(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "kms.sock")
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	base := []string{"-listen", sock, "-addr", "http://127.0.0.1:1", "-key", "alias/k8s"}
	tok := map[string]string{"KMS_TOKEN": "kms_0123456789abcdef_secret"}
	with := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }
	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		msg  string
	}{
		{"no -listen", tok, []string{"-addr", "http://127.0.0.1:1", "-key", "k"}, 2, "-listen is required"},
		{"no -addr", tok, []string{"-listen", sock, "-key", "k"}, 2, "-addr is required"},
		{"no -key", tok, []string{"-listen", sock, "-addr", "http://127.0.0.1:1"}, 2, "-key is required"},
		{"bare alias/", tok, []string{"-listen", sock, "-addr", "http://127.0.0.1:1", "-key", "alias/"}, 2, "alias/ needs a name"},
		{"no credentials", nil, base, 2, "no credentials"},
		{"token twice", tok, with("-token-file", empty), 2, "not both"},
		{"cert without key", tok, with("-client-cert", empty), 2, "go together"},
		{"not a URL", tok, []string{"-listen", sock, "-addr", "127.0.0.1:8080", "-key", "k"}, 2, "want http(s)://HOST"},
		{"ftp", tok, []string{"-listen", sock, "-addr", "ftp://kms", "-key", "k"}, 2, "want http(s)://HOST"},
		{"user in URL", tok, []string{"-listen", sock, "-addr", "https://u:p@kms", "-key", "k"}, 2, "no user, query or fragment"},
		{"plain http off loopback", tok, []string{"-listen", sock, "-addr", "http://kms.example:8080", "-key", "k"}, 2, "use https"},
		{"TLS flags on http", tok, with("-ca-file", empty), 2, "need an https -addr"},
		{"zero timeout", tok, with("-timeout", "0s"), 2, "-timeout must be positive"},
		{"unknown flag", tok, with("-pin", "1234"), 2, "flag provided but not defined: -pin"},
		{"argument", tok, with("extra"), 2, `unexpected argument "extra"`},
		{"empty token file", nil, with("-token-file", empty), 1, "is empty"},
		{"missing token file", nil, with("-token-file", filepath.Join(dir, "none")), 1, "-token-file: open"},
		{"missing CA file", tok, []string{"-listen", sock, "-addr", "https://127.0.0.1:1", "-key", "k", "-ca-file", filepath.Join(dir, "none")}, 1, "-ca-file: open"},
		{"CA file without PEM", tok, []string{"-listen", sock, "-addr", "https://127.0.0.1:1", "-key", "k", "-ca-file", empty}, 1, "no PEM certificate"},
		{"bad client key pair", tok, []string{"-listen", sock, "-addr", "https://127.0.0.1:1", "-key", "k", "-client-cert", empty, "-client-key", empty}, 1, "-client-cert/-client-key"},
	}
	for _, c := range cases {
		code, out, _ := runOnce(t, c.env, c.args...)
		if code != c.code || !strings.Contains(out, c.msg) {
			t.Errorf("%s: exit %d, %q; want %d and %q", c.name, code, out, c.code, c.msg)
		}
		if strings.Contains(out, "kms_0123456789abcdef_secret") {
			t.Errorf("%s: the token was printed", c.name)
		}
		if _, err := os.Stat(sock); err == nil {
			t.Fatalf("%s: a socket was created", c.name)
		}
	}
}

// A wrong token, a key the principal may not use, or no such key stop the
// plugin at start with one line; an unreachable kmsd does not (it serves).
func TestStartChecksTheKey(t *testing.T) {
	f := newFixture(t, kmstest.Options{}, nil, client.CreateKeyRequest{})
	if _, err := f.admin.CreateKey(kmstest.Ctx(t), client.CreateKeyRequest{Alias: "alias/not-the-plugins"}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "kms.sock")
	cases := []struct {
		name, token, key, msg string
	}{
		{"unknown token", "kms_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "alias/kubernetes-secrets", "UnauthenticatedException"},
		{"another key", f.token, "alias/not-the-plugins", "AccessDeniedException"},
		{"no such key", f.token, "alias/nowhere", "AccessDeniedException"}, // existence is not disclosed
		{"the admin's no such key", kmstest.AdminToken, "alias/nowhere", "NotFoundException"},
	}
	for _, c := range cases {
		code, out, _ := runOnce(t, map[string]string{"KMS_TOKEN": c.token}, "-listen", sock, "-addr", f.kmsd.url(), "-key", c.key)
		if code != 1 || !strings.HasPrefix(out, "kms-k8s-plugin: -key "+c.key+": "+c.msg) || strings.Count(out, "\n") != 1 {
			t.Errorf("%s: exit %d, %q", c.name, code, out)
		}
		if _, err := os.Stat(sock); err == nil {
			t.Fatalf("%s: a socket was created", c.name)
		}
	}
	f.kmsd.stop()
	code, out, _ := runOnce(t, map[string]string{"KMS_TOKEN": f.token}, "-listen", sock, "-addr", f.kmsd.url(), "-key", "alias/kubernetes-secrets")
	if code != 0 || !contains(out, "kmsd not reachable at start", `"msg":"serving KMS v2"`, `"msg":"stopped"`) {
		t.Errorf("kmsd down at start: exit %d, %s", code, out)
	}
	if _, err := os.Stat(sock); err == nil {
		t.Error("the socket is left after the stop")
	}
}

// -listen refuses a path that is not a socket (and leaves it alone) or a
// socket someone serves on; it replaces a stale socket, and makes it 0600.
func TestListenPath(t *testing.T) {
	f := newFixture(t, kmstest.Options{}, nil, client.CreateKeyRequest{})
	dir := t.TempDir()
	env := map[string]string{"KMS_TOKEN": f.token}
	args := func(path string) []string {
		return []string{"-listen", path, "-addr", f.kmsd.url(), "-key", "alias/kubernetes-secrets"}
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("keep me"), 0o644)
	if code, out, _ := runOnce(t, env, args(file)...); code != 1 || !strings.Contains(out, "is not a socket; not touching it") {
		t.Errorf("a regular file: exit %d, %q", code, out)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Error("the file was changed")
	}
	if code, out, _ := runOnce(t, env, args(filepath.Join(dir, "no-such-dir", "kms.sock"))...); code != 1 || !strings.Contains(out, "-listen: listen unix") {
		t.Errorf("a missing directory: exit %d, %q", code, out)
	}

	live := filepath.Join(dir, "live.sock")
	ln, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if code, out, _ := runOnce(t, env, args(live)...); code != 1 || !strings.Contains(out, "another process is serving on it") {
		t.Errorf("a live socket: exit %d, %q", code, out)
	}
	ln.Close()

	stale := filepath.Join(dir, "stale.sock")
	sl, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	sl.SetUnlinkOnClose(false)
	sl.Close() // a crashed plugin's socket: the file stays, nobody listens
	code, out, mode := runOnce(t, env, args(stale)...)
	if code != 0 || !strings.Contains(out, `"msg":"serving KMS v2"`) {
		t.Errorf("a stale socket: exit %d, %q", code, out)
	}
	if mode.Type() != os.ModeSocket || mode.Perm() != 0o600 {
		t.Errorf("socket mode %v, want a 0600 socket", mode)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("the socket is left after the stop")
	}
}
