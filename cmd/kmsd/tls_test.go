package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// tlsFiles writes a CA and a server certificate for 127.0.0.1 signed by it;
// it returns the three PEM paths and the CA pool a client trusts.
func tlsFiles(t *testing.T) (certFile, keyFile, caFile string, roots *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	caCert, caKey, _ := kmstest.IssueCert(t, "kmsd test CA", nil, nil, true)
	_, _, server := kmstest.IssueCert(t, "kmsd", caCert, caKey, false)
	keyDER, err := x509.MarshalPKCS8PrivateKey(server.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	roots = x509.NewCertPool()
	roots.AddCert(caCert)
	return write("server.pem", "CERTIFICATE", server.Certificate[0]), write("server-key.pem", "PRIVATE KEY", keyDER),
		write("ca.pem", "CERTIFICATE", caCert.Raw), roots
}

// kmsd serves HTTPS with the configured certificate (and a client CA) and
// the API works over it; plain HTTP to the same port does not.
func TestServesTLS(t *testing.T) {
	certFile, keyFile, caFile, roots := tlsFiles(t)
	addr := freeAddr(t)
	env := append(kmsdEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "kms.db")),
		"KMS_TLS_CERT="+certFile, "KMS_TLS_KEY="+keyFile, "KMS_TLS_CLIENT_CA="+caFile, "KMS_LISTEN="+addr)
	p := &proc{url: "https://" + addr, done: make(chan error, 1)}
	startProc(t, p, env)

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 10 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kmsd not ready over TLS: %v\n%s", err, p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := client.New(p.url, adminToken, hc)
	k, err := c.CreateKey(ctx, client.CreateKeyRequest{Description: "over TLS"})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := c.Encrypt(ctx, k.KeyID, []byte("tls"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if dec, err := c.Decrypt(ctx, enc.CiphertextBlob, nil, ""); err != nil || string(dec.Plaintext) != "tls" {
		t.Fatalf("decrypt over TLS: %v", err)
	}
	if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP answered 200 on the TLS port")
		}
	}
	p.stop(t)
}
