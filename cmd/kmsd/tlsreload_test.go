package main

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// serverPair issues a server certificate for 127.0.0.1 under the CA and
// puts it in place of certFile and keyFile (each written whole, then
// renamed, as a certificate manager does); it returns its serial number.
func serverPair(t *testing.T, caCert *x509.Certificate, caKey *ecdsa.PrivateKey, certFile, keyFile string) *big.Int {
	t.Helper()
	certPEM, keyPEM, serial := issuePair(t, caCert, caKey)
	replace(t, keyFile, keyPEM)
	replace(t, certFile, certPEM)
	return serial
}

// issuePair is a new server certificate for 127.0.0.1, and its key, as PEM.
func issuePair(t *testing.T, caCert *x509.Certificate, caKey *ecdsa.PrivateKey) (certPEM, keyPEM []byte, serial *big.Int) {
	t.Helper()
	leaf, _, pair := kmstest.IssueCert(t, "kmsd", caCert, caKey, false)
	keyDER, err := x509.MarshalPKCS8PrivateKey(pair.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), leaf.SerialNumber
}

// unseenPair puts a new pair in place that the reloader's change check
// cannot see: files of the same sizes, with the old modification times put
// back. Only an explicit reload (SIGHUP) can then explain the new one.
func unseenPair(t *testing.T, caCert *x509.Certificate, caKey *ecdsa.PrivateKey, certFile, keyFile string) *big.Int {
	t.Helper()
	before := [2]fileStamp{stampOf(certFile), stampOf(keyFile)}
	for range 1000 {
		certPEM, keyPEM, serial := issuePair(t, caCert, caKey)
		if int64(len(certPEM)) != before[0].size || int64(len(keyPEM)) != before[1].size {
			continue // ECDSA signatures and serials vary in length
		}
		replace(t, keyFile, keyPEM)
		replace(t, certFile, certPEM)
		for i, f := range []string{certFile, keyFile} {
			if err := os.Chtimes(f, before[i].modTime, before[i].modTime); err != nil {
				t.Fatal(err)
			}
		}
		if now := [2]fileStamp{stampOf(certFile), stampOf(keyFile)}; now != before {
			t.Fatalf("the files' sizes and times changed: %v, were %v", now, before)
		}
		return serial
	}
	t.Fatal("no certificate of the same size in 1000 tries")
	return nil
}

func replace(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// served is the serial of the certificate a new connection gets.
func served(t *testing.T, url string, roots *x509.CertPool) *big.Int {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true}}
	resp, err := hc.Get(url + "/readyz")
	if err != nil {
		t.Fatalf("new connection: %v", err)
	}
	resp.Body.Close()
	return resp.TLS.PeerCertificates[0].SerialNumber
}

// waitServed waits until new connections get the certificate of serial.
func waitServed(t *testing.T, p *proc, roots *x509.CertPool, serial *big.Int, why string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for served(t, p.url, roots).Cmp(serial) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: new connections still get another certificate\n%s", why, p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kmsd replaces its certificate on SIGHUP and when the files change, while
// a connection opened before keeps working on the certificate it had; a
// half-written pair leaves the previous certificate in service.
func TestTLSCertificateReload(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey, _ := kmstest.IssueCert(t, "kmsd test CA", nil, nil, true)
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	first := serverPair(t, caCert, caKey, certFile, keyFile)

	addr := freeAddr(t)
	env := append(kmsdEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "kms.db")),
		"KMS_TLS_CERT="+certFile, "KMS_TLS_KEY="+keyFile, "KMS_LISTEN="+addr, "KMS_LOG_LEVEL=info")
	p := &proc{url: "https://" + addr, done: make(chan error, 1)}
	startProc(t, p, env)
	deadline := time.Now().Add(60 * time.Second)
	kept := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	var resp *http.Response
	var err error
	for {
		if resp, err = kept.Get(p.url + "/readyz"); err == nil && resp.StatusCode == 200 {
			io.Copy(io.Discard, resp.Body) // read to the end: the connection stays for reuse
			resp.Body.Close()
			break
		}
		if err == nil {
			resp.Body.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("kmsd not ready over TLS: %v\n%s", err, p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := resp.TLS.PeerCertificates[0].SerialNumber; got.Cmp(first) != 0 {
		t.Fatalf("served serial %v, want the first certificate's %v", got, first)
	}

	// SIGHUP, and only SIGHUP: the change check cannot see the new pair.
	second := unseenPair(t, caCert, caKey, certFile, keyFile)
	if got := served(t, p.url, roots); got.Cmp(first) != 0 {
		t.Fatalf("before SIGHUP, serial %v, want the first's %v: something besides SIGHUP reloaded", got, first)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitServed(t, p, roots, second, "after SIGHUP")

	// The connection of before is still open, on the first certificate.
	reused := false
	trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", p.url+"/readyz", nil)
	resp, err = kept.Do(req)
	if err != nil {
		t.Fatalf("the connection opened before the reload: %v", err)
	}
	resp.Body.Close()
	if !reused || resp.StatusCode != 200 || resp.TLS.PeerCertificates[0].SerialNumber.Cmp(first) != 0 {
		t.Errorf("after the reload, the old connection: reused %v, status %d, serial %v (want the first, %v)",
			reused, resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber, first)
	}

	// The files change, no signal: the next handshakes notice.
	third := serverPair(t, caCert, caKey, certFile, keyFile)
	waitServed(t, p, roots, third, "after the files changed")

	// Half a renewal (a certificate that is not one): the third stays.
	replace(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for !strings.Contains(p.log(), "TLS certificate not reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no log of the failed reload:\n%s", p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := served(t, p.url, roots); got.Cmp(third) != 0 {
		t.Errorf("after a failed reload, serial %v, want the previous %v", got, third)
	}
	kept.CloseIdleConnections()
	p.stop(t)
}

// run leaves no SIGHUP goroutine behind when it returns (here: the token
// label names no token, after the signal handler was set up).
func TestRunLeavesNoSIGHUPGoroutine(t *testing.T) {
	vars := map[string]string{}
	for _, kv := range kmsdEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "kms.db"), "KMS_TOKEN_LABEL=no such token", "KMS_LISTEN="+freeAddr(t)) {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	for i := 0; i < 3; i++ {
		if err := run(t.Context(), nil, func(k string) string { return vars[k] }); err == nil || !strings.HasPrefix(err.Error(), "token: ") {
			t.Fatalf("run with no such token = %v, want a token error", err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		n := strings.Count(stacks, "kmsd.reloadOnHUP(")
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d SIGHUP goroutines left after run returned", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
