package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// Help as people expect it: kmsctl help, a group alone lists its commands,
// -h prints to stdout and exits 0, an unknown command suggests the nearest,
// and bash and zsh completion scripts come out of kmsctl completion.
func TestHelpSuggestionsAndCompletion(t *testing.T) {
	c := ctl{t: t, url: "http://127.0.0.1:1"}
	for _, tc := range []struct {
		args     []string
		code     int
		stdout   []string // each must appear on stdout
		stderr   string   // must appear on stderr ("" means stderr empty)
		noStdout bool
	}{
		{[]string{"help"}, 0, []string{"keys", "encrypt", "completion", "Available Commands"}, "", false},
		{[]string{"-h"}, 0, []string{"Usage:", "--output", "KMS_ADDR"}, "", false},
		{[]string{"--help"}, 0, []string{"Usage:"}, "", false},
		{[]string{"keys"}, 0, []string{"create", "list", "rotate", "schedule-deletion", "import-parameters"}, "", false},
		{[]string{"keys", "create", "-h"}, 0, []string{"--alias", "--interval", "--output"}, "", false},
		{[]string{"help", "keys", "list"}, 0, []string{"kmsctl keys list"}, "", false},
		{[]string{"kyes", "list"}, 2, nil, "Did you mean this?\n\tkeys", true},
		{[]string{"keys", "lsit"}, 2, nil, "Did you mean this?\n\tkeys list", true},
		{[]string{"keys", "fly"}, 2, nil, `unknown command "keys fly"`, true},
		{[]string{"completion", "bash"}, 0, []string{"__start_kmsctl", "complete -o default -F __start_kmsctl kmsctl"}, "", false},
		{[]string{"completion", "zsh"}, 0, []string{"#compdef kmsctl", "_kmsctl"}, "", false},
		// What the completion scripts ask: commands, and --output's values.
		{[]string{"__complete", "keys", "cr"}, 0, []string{"create\t"}, "ShellCompDirectiveNoFileComp", false},
		{[]string{"__complete", "keys", "list", "--output", ""}, 0, []string{"table\n", "json\n"}, "ShellCompDirectiveNoFileComp", false},
		{[]string{"--version"}, 0, []string{"kmsctl ", "(commit ", "go1."}, "", false},
	} {
		code, out, errOut := c.run("", tc.args...)
		if code != tc.code {
			t.Errorf("kmsctl %v: exit %d, want %d (stderr %q)", tc.args, code, tc.code, errOut)
		}
		for _, w := range tc.stdout {
			if !strings.Contains(out, w) {
				t.Errorf("kmsctl %v: stdout lacks %q:\n%s", tc.args, w, out)
			}
		}
		if tc.stderr == "" && errOut != "" {
			t.Errorf("kmsctl %v: stderr %q, want none", tc.args, errOut)
		}
		if tc.stderr != "" && !strings.Contains(errOut, tc.stderr) {
			t.Errorf("kmsctl %v: stderr %q lacks %q", tc.args, errOut, tc.stderr)
		}
		if tc.noStdout && out != "" {
			t.Errorf("kmsctl %v: stdout %q, want none", tc.args, out)
		}
	}
}

// Global flags go before or after the command; KMS_OUTPUT sets the format;
// encrypt and decrypt speak JSON (base64 fields) too, and decrypt takes
// encrypt's JSON as its input; intervals given in days show in days.
func TestOutputEverywhere(t *testing.T) {
	c := newCtl(t)
	c.ok("", "keys", "create", "--alias", "alias/out", "--rotate", "--interval", "90d")
	for _, args := range [][]string{
		{"--output", "json", "keys", "describe", "alias/out"},
		{"keys", "describe", "alias/out", "--output", "json"},
		{"keys", "describe", "-o", "json", "alias/out"},
	} {
		var k struct {
			KeyID string `json:"key_id"`
		}
		if err := json.Unmarshal([]byte(c.ok("", args...)), &k); err != nil || k.KeyID == "" {
			t.Errorf("kmsctl %v: not a key in JSON: %v", args, err)
		}
	}
	if out := c.ok("", "keys", "describe", "alias/out"); !regexp.MustCompile(`(?m)^rotation_interval +90d$`).MatchString(out) {
		t.Errorf("the interval given as 90d is not shown in days:\n%s", out)
	}
	js := ctl{t: t, url: c.url, token: c.token, env: map[string]string{"KMS_OUTPUT": "json"}}
	var enc struct {
		CiphertextBlob []byte `json:"ciphertext_blob"`
		KeyID          string `json:"key_id"`
		KeyVersion     int    `json:"key_version"`
	}
	encOut := js.ok("hello json", "encrypt", "--key", "alias/out", "--context", "a=b")
	if err := json.Unmarshal([]byte(encOut), &enc); err != nil || len(enc.CiphertextBlob) == 0 || enc.KeyID == "" || enc.KeyVersion != 1 {
		t.Fatalf("KMS_OUTPUT=json encrypt: %v\n%s", err, encOut)
	}
	var dec struct {
		Plaintext []byte `json:"plaintext"`
	}
	if err := json.Unmarshal([]byte(js.ok(encOut, "decrypt", "--context", "a=b")), &dec); err != nil || string(dec.Plaintext) != "hello json" {
		t.Errorf("decrypt of encrypt's JSON, as JSON: %q %v", dec.Plaintext, err)
	}
	// --output table wins over KMS_OUTPUT: raw bytes again.
	if out := js.ok(encOut, "decrypt", "--context", "a=b", "--output", "table"); out != "hello json" {
		t.Errorf("decrypt --output table: %q", out)
	}
	if out := js.ok("", "random", "--bytes", "8"); !strings.Contains(out, `"plaintext": "`) {
		t.Errorf("random as JSON: %s", out)
	}
	if code, _, errOut := js.run("{not json", "decrypt"); code != 1 || !strings.Contains(errOut, "ciphertext_blob") {
		t.Errorf("broken JSON input: exit %d %q", code, errOut)
	}
	bad := ctl{t: t, url: c.url, token: c.token, env: map[string]string{"KMS_OUTPUT": "yaml"}}
	if code, _, errOut := bad.run("", "keys", "list"); code != 2 || !strings.Contains(errOut, "want table or json") {
		t.Errorf("KMS_OUTPUT=yaml: exit %d %q", code, errOut)
	}
}

// faultProxy stands between kmsctl and a real server: it turns away the
// first n requests (or all with n < 0) with the given status and API code,
// forwards the others, and counts what it saw.
type faultProxy struct {
	n      atomic.Int64
	seen   atomic.Int64
	status int
	code   string
}

func (f *faultProxy) start(t *testing.T, target string) *httptest.Server {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.seen.Add(1)
		if n := f.n.Load(); n != 0 {
			f.n.Add(-1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(f.status)
			json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": f.code, "message": "injected"}})
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Calls that are safe to repeat are retried on 503, 429 and 409
// ConflictException; what stays unavailable exits 3; a refusal no retry
// changes, and calls that create something, are not retried.
func TestRetriesAndExitCodes(t *testing.T) {
	c := newCtl(t)
	c.ok("", "keys", "create", "--alias", "alias/r")
	for _, tc := range []struct {
		status   int
		code     string
		fail     int64
		args     []string
		wantExit int
		wantSeen int64
	}{
		{503, "KeyUnavailableException", 2, []string{"encrypt", "--key", "alias/r"}, 0, 3},
		{429, "LimitExceededException", 3, []string{"keys", "describe", "alias/r"}, 0, 4},
		{409, "ConflictException", 1, []string{"decrypt-probe"}, 0, 2},
		{503, "KeyUnavailableException", -1, []string{"keys", "list"}, 3, 4},
		{503, "KeyUnavailableException", -1, []string{"--retries", "2", "keys", "list"}, 3, 2},
		{409, "KMSInvalidStateException", -1, []string{"encrypt", "--key", "alias/r"}, 1, 1},
		{503, "KeyUnavailableException", 1, []string{"keys", "create"}, 3, 1},
	} {
		f := &faultProxy{status: tc.status, code: tc.code}
		f.n.Store(tc.fail)
		p := ctl{t: t, url: f.start(t, c.url).URL, token: c.token}
		args := tc.args
		stdin := "retry me"
		if args[0] == "decrypt-probe" {
			stdin = c.ok("x", "encrypt", "--key", "alias/r")
			args = []string{"decrypt"}
		}
		code, _, errOut := p.run(stdin, append([]string{"--timeout", "2m"}, args...)...)
		if code != tc.wantExit || f.seen.Load() != tc.wantSeen {
			t.Errorf("%d %s ×%d, kmsctl %v: exit %d after %d requests, want exit %d after %d (%s)",
				tc.status, tc.code, tc.fail, args, code, f.seen.Load(), tc.wantExit, tc.wantSeen, errOut)
		}
	}
	// Nothing listens: unavailable, exit 3.
	down := ctl{t: t, url: "http://127.0.0.1:1", token: c.token}
	if code, _, errOut := down.run("", "--retries", "2", "keys", "list"); code != 3 {
		t.Errorf("no server: exit %d %q, want 3", code, errOut)
	}
}

// TLS: the server's CA from --ca-file or KMS_CACERT, the client certificate
// of mutual TLS from KMS_CLIENT_CERT / KMS_CLIENT_KEY.
func TestTLSFlags(t *testing.T) {
	c := newCtl(t)
	caCert, caKey, _ := kmstest.IssueCert(t, "test CA", nil, nil, true)
	_, _, serverCert := kmstest.IssueCert(t, "127.0.0.1", caCert, caKey, false)
	_, clientKey, clientCert := kmstest.IssueCert(t, "kmsctl", caCert, caKey, false)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	u, _ := url.Parse(c.url)
	srv := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(u))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below
	srv.StartTLS()
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", "CERTIFICATE", caCert.Raw)
	certFile := write("client.pem", "CERTIFICATE", clientCert.Certificate[0])
	keyDER, _ := x509.MarshalECPrivateKey(clientKey)
	keyFile := write("client.key", "EC PRIVATE KEY", keyDER)

	full := ctl{t: t, url: srv.URL, token: c.token, env: map[string]string{"KMS_CACERT": caFile, "KMS_CLIENT_CERT": certFile, "KMS_CLIENT_KEY": keyFile}}
	full.ok("", "keys", "list")
	flags := ctl{t: t, url: srv.URL, token: c.token}
	flags.ok("", "keys", "list", "--ca-file", caFile, "--client-cert", certFile, "--client-key", keyFile)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"keys", "list"}, 1, "certificate"},                                          // unknown CA
		{[]string{"keys", "list", "--ca-file", caFile}, 1, "certificate"},                     // no client certificate
		{[]string{"keys", "list", "--ca-file", caFile, "--client-cert", certFile}, 2, "both"}, // half a pair
		{[]string{"keys", "list", "--ca-file", filepath.Join(dir, "none")}, 2, "--ca-file"},   // no such file
		{[]string{"keys", "list", "--ca-file", keyFile}, 2, "no PEM certificate"},             // not a certificate
	} {
		code, _, errOut := flags.run("", append([]string{"--retries", "1"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("kmsctl %v: exit %d %q; want exit %d mentioning %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}
