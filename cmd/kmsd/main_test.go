package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
)

var kmsdBin string

func TestMain(m *testing.M) {
	os.Exit(softhsmtest.Run(&buildFirst{m}))
}

// buildFirst builds the kmsd binary once before the tests run it as a subprocess.
type buildFirst struct{ m *testing.M }

func (b *buildFirst) Run() int {
	dir, err := os.MkdirTemp("", "kmsd-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Readable by everyone: the fault tests run kmsd as another user.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kmsdBin = filepath.Join(dir, "kmsd")
	out, err := exec.Command("go", "build", "-o", kmsdBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build kmsd: %v\n%s", err, out)
		return 1
	}
	return b.m.Run()
}

const adminToken = "kmsd-test-admin-token-0123456789"

// proc is one running kmsd.
type proc struct {
	cmd    *exec.Cmd
	url    string
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan error
	// cred, when set, runs kmsd as another user (faults_test.go).
	cred *syscall.Credential
	// stdout, when set, is kmsd's standard output (auditsink_test.go).
	stdout *os.File
}

// freeAddr picks a port for a kmsd to listen on, free when picked. It is
// below Linux's ephemeral range (32768–60999), from which the kernel takes
// the ports of ":0" listeners and of outgoing connections, so the other
// test packages running meanwhile do not take it before kmsd binds it; and
// never one it handed out before in this process.
func freeAddr(t *testing.T) string {
	t.Helper()
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		if handedOut[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		handedOut[port] = true
		return ln.Addr().String()
	}
	t.Fatal("no free port between 20000 and 32000")
	return ""
}

var (
	handedOutMu sync.Mutex
	handedOut   = map[int]bool{}
)

// kmsdEnv is the environment of a kmsd on the test token with database db.
func kmsdEnv(t *testing.T, db string, extra ...string) []string {
	env := softhsmtest.Get(t)
	base := []string{
		"PATH=" + os.Getenv("PATH"),
		"KMS_PIN=" + env.PIN,
		"KMS_DB=" + db,
		"KMS_BOOTSTRAP_TOKEN=" + adminToken,
		"KMS_LOG_LEVEL=warn",
	}
	base = append(base, env.Environ()...)
	return append(base, extra...)
}

// startKmsd runs kmsd and waits until /readyz answers 200.
// The port is picked free and released before kmsd binds it: if another
// process takes it meanwhile, kmsd says so and is started on another.
func startKmsd(t *testing.T, env []string) *proc {
	t.Helper()
	return startKmsdAs(t, nil, env)
}

// startKmsdAs is startKmsd with kmsd running as cred's user (nil: this
// process's).
func startKmsdAs(t *testing.T, cred *syscall.Credential, env []string) *proc {
	t.Helper()
	return startKmsdWith(t, &proc{cred: cred}, env)
}

// startKmsdWith is startKmsd with the user and standard output of opts.
func startKmsdWith(t *testing.T, opts *proc, env []string) *proc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		addr := freeAddr(t)
		p := &proc{url: "http://" + addr, done: make(chan error, 1), cred: opts.cred, stdout: opts.stdout}
		startProc(t, p, append(env, "KMS_LISTEN="+addr))
		ready, err := p.waitReady(60 * time.Second)
		if ready {
			return p
		}
		if attempt < 3 && strings.Contains(p.log(), "address already in use") {
			continue
		}
		t.Fatalf("kmsd not ready: %v\n%s", err, p.log())
	}
}

// startTogether starts one kmsd for each environment, all before any is
// ready (so that their start-ups race), and waits until each is. One whose
// port another process took meanwhile is started again on another.
func startTogether(t *testing.T, envs ...[]string) []*proc {
	t.Helper()
	ps := make([]*proc, len(envs))
	for i, env := range envs {
		addr := freeAddr(t)
		ps[i] = &proc{url: "http://" + addr, done: make(chan error, 1)}
		startProc(t, ps[i], append(slices.Clip(env), "KMS_LISTEN="+addr)) // envs may share an array
	}
	for i, p := range ps {
		if ready, err := p.waitReady(60 * time.Second); !ready {
			if !strings.Contains(p.log(), "address already in use") {
				t.Fatalf("kmsd not ready: %v\n%s", err, p.log())
			}
			ps[i] = startKmsd(t, envs[i])
		}
	}
	return ps
}

// waitReady waits until /readyz answers 200, kmsd exits, or limit passes.
func (p *proc) waitReady(limit time.Duration) (bool, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		resp, err := http.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return true, nil
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			return false, fmt.Errorf("kmsd exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false, fmt.Errorf("not ready after %v", limit)
}

// startProc runs kmsd with env, collecting its stderr, and kills it when
// the test ends.
func startProc(t *testing.T, p *proc, env []string) {
	t.Helper()
	startProcIn(t, p, "", env)
}

// startProcIn is startProc with kmsd's working directory set to dir.
func startProcIn(t *testing.T, p *proc, dir string, env []string) {
	t.Helper()
	p.cmd = exec.Command(kmsdBin)
	p.cmd.Dir = dir
	p.cmd.Env = env
	if p.cred != nil {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	if p.stdout != nil {
		p.cmd.Stdout = p.stdout
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// stop sends SIGTERM and expects a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("kmsd exit after SIGTERM: %v\n%s", err, p.log())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("kmsd did not stop within 30s of SIGTERM")
	}
}

// Restart: stop kmsd and start it again on the same token and database;
// every blob made before still decrypts, every key and alias is there.
func TestRestartKeepsEverything(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := kmsdEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "kms.db"))
	p := startKmsd(t, env)
	c := client.New(p.url, adminToken, nil)

	type made struct {
		blob  []byte
		plain string
		ctx   map[string]string
	}
	var blobs []made
	var keyIDs []string
	for i := 0; i < 4; i++ {
		alias := fmt.Sprintf("alias/restart-%d", i)
		k, err := c.CreateKey(ctx, client.CreateKeyRequest{Alias: alias, Description: alias})
		if err != nil {
			t.Fatal(err)
		}
		keyIDs = append(keyIDs, k.KeyID)
		for j := 0; j < 3; j++ {
			plain := fmt.Sprintf("secret %d/%d", i, j)
			ec := map[string]string{"n": fmt.Sprint(j)}
			enc, err := c.Encrypt(ctx, alias, []byte(plain), ec)
			if err != nil {
				t.Fatal(err)
			}
			blobs = append(blobs, made{enc.CiphertextBlob, plain, ec})
		}
	}
	p.stop(t)

	p2 := startKmsd(t, env)
	c2 := client.New(p2.url, adminToken, nil)
	for _, b := range blobs {
		dec, err := c2.Decrypt(ctx, b.blob, b.ctx, "")
		if err != nil || string(dec.Plaintext) != b.plain {
			t.Fatalf("blob made before the restart: %v", err)
		}
	}
	for i, id := range keyIDs {
		k, err := c2.DescribeKey(ctx, fmt.Sprintf("alias/restart-%d", i))
		if err != nil || k.KeyID != id || k.KeyState != "Enabled" {
			t.Fatalf("key %d after restart: %v %+v", i, err, k)
		}
	}
	if _, err := c2.Encrypt(ctx, "alias/restart-0", []byte("after"), nil); err != nil {
		t.Fatalf("encrypt after restart: %v", err)
	}
}

// Start-up failures exit non-zero with one clear line, before listening.
func TestStartupFailuresSayWhatIsWrong(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "kms.db")
	certFile, keyFile, _, _ := tlsFiles(t)
	cases := []struct {
		name  string
		env   []string
		want  string
		leaks string // a secret that must not appear in the output
	}{
		{"wrong PIN", append(kmsdEnv(t, db), "KMS_PIN=wrong-pin-1234"), "login", "wrong-pin-1234"},
		{"no PIN", withoutVar(kmsdEnv(t, db), "KMS_PIN"), "KMS_PIN", ""},
		{"PIN file missing", append(withoutVar(kmsdEnv(t, db), "KMS_PIN"), "KMS_PIN_FILE=/nonexistent/pin"), "KMS_PIN_FILE", ""},
		{"unknown token", append(kmsdEnv(t, db), "KMS_TOKEN_LABEL=no-such-token"), "no-such-token", ""},
		{"missing module", append(kmsdEnv(t, db), "KMS_PKCS11_MODULE=/nonexistent/libpkcs11.so"), "/nonexistent/libpkcs11.so", ""},
		{"token IVs from a token that makes none", append(kmsdEnv(t, db), "KMS_HSM_TOKEN_IV=true"), "does not generate GCM IVs", ""},
		{"bad database", append(kmsdEnv(t, db), "KMS_DB=mysql://x"), "sqlite:", ""},
		{"postgres unreachable", append(kmsdEnv(t, db), "KMS_DB=postgres://u:hunter2secret@127.0.0.1:1/db?connect_timeout=2"), "database", "hunter2secret"},
		{"no bootstrap token", withoutVar(kmsdEnv(t, db), "KMS_BOOTSTRAP_TOKEN"), "KMS_BOOTSTRAP_TOKEN", ""},
		{"bootstrap token shaped like an issued one", append(withoutVar(kmsdEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "fresh.db")), "KMS_BOOTSTRAP_TOKEN"),
			"KMS_BOOTSTRAP_TOKEN=kms_0123456789abcdef_issuedlookingsecret0123456789"), "form of an issued token", "issuedlookingsecret"},
		{"plain HTTP off loopback", append(kmsdEnv(t, db), "KMS_LISTEN=0.0.0.0:0"), "TLS", ""},
		{"development window without development mode", append(kmsdEnv(t, db), "KMS_DEV_PENDING_WINDOW=2m"), "KMS_DEV_MODE=true", ""},
		{"certificate missing", append(kmsdEnv(t, db), "KMS_TLS_CERT=/nonexistent/c.pem", "KMS_TLS_KEY=/nonexistent/k.pem"), "tls-cert", ""},
		{"client CA missing", append(kmsdEnv(t, db), "KMS_TLS_CERT="+certFile, "KMS_TLS_KEY="+keyFile,
			"KMS_TLS_CLIENT_CA=/nonexistent/ca.pem"), "tls-client-ca", ""},
		{"client CA not PEM", append(kmsdEnv(t, db), "KMS_TLS_CERT="+certFile, "KMS_TLS_KEY="+keyFile,
			"KMS_TLS_CLIENT_CA="+keyFile), "no PEM certificate", ""},
		{"unknown audit sink", append(kmsdEnv(t, db), "KMS_AUDIT_SINK=kafka://broker:9092"), "audit-sink: \"kafka://broker:9092\" is not file:/path", ""},
		{"unknown syslog transport", append(kmsdEnv(t, db), "KMS_AUDIT_SINK=syslog:http://x"), "the syslog transport must be", ""},
		{"audit sink policy", append(kmsdEnv(t, db), "KMS_AUDIT_SINK=stdout", "KMS_AUDIT_SINK_FAILURE=maybe"), "audit-sink-failure: \"maybe\" is not block or drop", ""},
		{"audit sink queue", append(kmsdEnv(t, db), "KMS_AUDIT_SINK=stdout", "KMS_AUDIT_SINK_QUEUE=0"), "audit-sink-queue", ""},
		{"audit sink file relative", append(kmsdEnv(t, db), "KMS_AUDIT_SINK=file:audit.log"), "absolute path", ""},
		{"audit sink file in no directory", append(kmsdEnv(t, db), "KMS_AUDIT_SINK=file:/nonexistent/audit.log"), "audit-sink: file:/nonexistent/audit.log: no such file or directory", ""},
		{"audit sink file a directory", append(kmsdEnv(t, db), "KMS_AUDIT_SINK=file:"+t.TempDir()), "is a directory", ""},
		{"audit sink FIFO nobody reads", append(kmsdEnv(t, db), "KMS_AUDIT_SINK=file:"+fifo(t)), "a FIFO that no process reads", ""},
		{"audit sink a symbolic link", append(kmsdEnv(t, db), "KMS_AUDIT_SINK=file:"+symlinkTo(t, db)), "a symbolic link (not followed", ""},
		{"audit sink readable by every user", append(kmsdEnv(t, db), "KMS_AUDIT_SINK=file:"+worldReadable(t)), "mode 0644 lets every user read", ""},
		{"audit sink state unwritable", append(kmsdEnv(t, db), "KMS_AUDIT_SINK=stdout", "KMS_AUDIT_SINK_STATE=/nonexistent/audit.state"), "audit-sink-state: cannot write", ""},
		{"audit sink state not a number", append(kmsdEnv(t, db), "KMS_AUDIT_SINK=stdout", "KMS_AUDIT_SINK_STATE="+junkFile(t)), "does not hold a record number", ""},
		{"audit sink with auditing off", append(kmsdEnv(t, db), "KMS_AUDIT=off", "KMS_AUDIT_SINK=stdout"), "nothing to export", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(kmsdBin)
			cmd.Env = tc.env
			if !hasVar(tc.env, "KMS_LISTEN") {
				cmd.Env = append(cmd.Env, "KMS_LISTEN="+freeAddr(t))
			}
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("kmsd started; output:\n%s", out.String())
				}
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("kmsd did not exit; output:\n%s", out.String())
			}
			text := strings.TrimSpace(out.String())
			if strings.Count(text, "\n") != 0 || !strings.Contains(text, tc.want) {
				t.Fatalf("want one line mentioning %q, got:\n%s", tc.want, text)
			}
			if tc.leaks != "" && strings.Contains(text, tc.leaks) {
				t.Fatalf("output leaks a secret: %s", text)
			}
		})
	}
}

// fifo is a named pipe nobody reads.
func fifo(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// symlinkTo is a symbolic link to the file of the database URL db (an
// audit sink there would append to kmsd's own database).
func symlinkTo(t *testing.T, db string) string {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.Symlink(strings.TrimPrefix(db, "sqlite:"), path); err != nil {
		t.Fatal(err)
	}
	return path
}

// worldReadable is an existing file of mode 0644.
func worldReadable(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return path
}

// junkFile is a file holding no record number.
func junkFile(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "junk")
	if err := os.WriteFile(path, []byte("not a number\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func withoutVar(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func hasVar(env []string, name string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return true
		}
	}
	return false
}

// Usage text (-h, or any bad flag) never shows the database password that
// KMS_DB holds.
func TestUsageDoesNotShowTheDatabasePassword(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"-no-such-flag"}, {"init", "-h"}} {
		cmd := exec.Command(kmsdBin, args...)
		cmd.Env = []string{"KMS_DB=postgres://kms:hunter2secret@db.internal/kms"}
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), "-db") || strings.Contains(string(out), "hunter2secret") {
			t.Errorf("kmsd %v:\n%s", args, out)
		}
	}
}

// -h prints the usage and exits 0 (it is what was asked for); -version
// prints the build and exits 0 without a PIN, a token or a database; a bad
// flag exits non-zero.
func TestHelpAndVersion(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, 0, "-listen"},
		{[]string{"--help"}, 0, "-version"},
		{[]string{"init", "-h"}, 0, "-db"},
		{[]string{"-version"}, 0, "kmsd "},
		{[]string{"--version"}, 0, "(commit "},
		{[]string{"-no-such-flag"}, 1, "flag provided but not defined"},
	} {
		cmd := exec.Command(kmsdBin, tc.args...)
		cmd.Env = []string{}
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(string(out), tc.want) {
			t.Errorf("kmsd %v: exit %d, want %d, output lacking %q:\n%s", tc.args, code, tc.code, tc.want, out)
		}
	}
}
