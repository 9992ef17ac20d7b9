package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// The plugin's principal (docs/kubernetes.md's policy) can describe, encrypt
// and decrypt with its key, and is refused everything else.
func TestPrincipalIsRefusedAnythingElse(t *testing.T) {
	f := newFixture(t, kmstest.Options{}, nil, client.CreateKeyRequest{})
	ctx := kmstest.Ctx(t)
	other, err := f.admin.CreateKey(ctx, client.CreateKeyRequest{Alias: "alias/other"})
	if err != nil {
		t.Fatal(err)
	}
	otherBlob, err := f.admin.Encrypt(ctx, other.KeyID, []byte("not yours"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(f.kmsd.url(), f.token, nil)
	own, err := c.Encrypt(ctx, f.keyID, []byte("mine"), nil)
	if err != nil {
		t.Fatalf("the plugin's principal cannot encrypt with its key: %v", err)
	}
	if _, err := c.Decrypt(ctx, own.CiphertextBlob, nil, ""); err != nil {
		t.Fatalf("decrypt with its key: %v", err)
	}
	if _, err := c.DescribeKey(ctx, "alias/kubernetes-secrets"); err != nil {
		t.Fatalf("describe its key: %v", err)
	}
	refused := map[string]func() error{
		"CreateKey":         func() error { _, err := c.CreateKey(ctx, client.CreateKeyRequest{}); return err },
		"ListKeys":          func() error { _, err := c.ListKeys(ctx, 0, ""); return err },
		"RotateKey":         func() error { _, err := c.RotateKey(ctx, f.keyID); return err },
		"DisableKey":        func() error { _, err := c.DisableKey(ctx, f.keyID); return err },
		"PutRotationPolicy": func() error { _, err := c.PutRotationPolicy(ctx, f.keyID, false, ""); return err },
		"UpdateAlias":       func() error { _, err := c.UpdateAlias(ctx, "alias/kubernetes-secrets", other.KeyID); return err },
		"GenerateDataKey": func() error {
			_, err := c.GenerateDataKey(ctx, client.DataKeyRequest{KeyID: f.keyID, KeySpec: "AES_256"})
			return err
		},
		"GenerateRandom":      func() error { _, err := c.GenerateRandom(ctx, 16); return err },
		"Encrypt, other key":  func() error { _, err := c.Encrypt(ctx, other.KeyID, []byte("x"), nil); return err },
		"Decrypt, other key":  func() error { _, err := c.Decrypt(ctx, otherBlob.CiphertextBlob, nil, ""); return err },
		"DescribeKey, other":  func() error { _, err := c.DescribeKey(ctx, "alias/other"); return err },
		"ReadAudit":           func() error { _, err := c.ListAudit(ctx, client.AuditFilter{}, 0, ""); return err },
		"ManageAccess":        func() error { _, err := c.CreateToken(ctx, principal, "another"); return err },
		"ManageAccess policy": func() error { _, err := c.PutPolicy(ctx, principal, client.PolicyDocument{}); return err },
	}
	for name, call := range refused {
		if err := call(); client.Code(err) != "AccessDeniedException" {
			t.Errorf("%s: %v, want AccessDeniedException", name, err)
		}
	}
	// Nothing changed: still one version, the alias where it was.
	if k, err := f.admin.DescribeKey(ctx, "alias/kubernetes-secrets"); err != nil || k.KeyID != f.keyID || k.PrimaryKeyVersion != 1 || k.KeyState != "Enabled" {
		t.Fatalf("the key changed: %+v %v", k, err)
	}
}

// The plugin reads -token-file at every call: a token rotated with the
// admin API is picked up from the file without a restart.
func TestTokenFileIsReadAtEveryCall(t *testing.T) {
	f := newFixture(t, kmstest.Options{}, nil, client.CreateKeyRequest{})
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(f.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startPlugin(t, nil, "-addr", f.kmsd.url(), "-key", f.keyID, "-token-file", file)
	as := newAPIServer(t, p.socket)
	as.mustProbe(t)
	ctx := kmstest.Ctx(t)
	pr, err := f.admin.GetPrincipal(ctx, principal)
	if err != nil || len(pr.Tokens) != 1 {
		t.Fatalf("principal: %+v %v", pr, err)
	}
	rotated, err := f.admin.RotateToken(ctx, principal, pr.Tokens[0].TokenID)
	if err != nil {
		t.Fatal(err)
	}
	kmstest.Secret(rotated.Token)
	// The old token is revoked: not ok until the file holds the new one.
	if st, err := as.svc.Status(ctx); err != nil || st.Healthz == "ok" || !strings.Contains(st.Healthz, "UnauthenticatedException") {
		t.Fatalf("Status with a revoked token: %+v %v", st, err)
	}
	if err := os.WriteFile(file, []byte(rotated.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	as.mustProbe(t)
	as.write(t, "after-rotation", []byte("still works"))
}

// With mutual TLS the client certificate alone authenticates the plugin
// (no token), -ca-file verifies kmsd; a CA that did not sign kmsd's
// certificate makes Status not ok.
func TestMutualTLS(t *testing.T) {
	caCert, caKey, _ := kmstest.IssueCert(t, "test CA", nil, nil, true)
	_, _, serverCert := kmstest.IssueCert(t, "127.0.0.1", caCert, caKey, false)
	_, _, pluginCert := kmstest.IssueCert(t, principal, caCert, caKey, false)
	otherCA, _, _ := kmstest.IssueCert(t, "other CA", nil, nil, true)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	f := newFixture(t, kmstest.Options{}, &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool,
		ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}, client.CreateKeyRequest{})
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(pluginCert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile, otherFile := write("ca.pem", "CERTIFICATE", caCert.Raw), write("other.pem", "CERTIFICATE", otherCA.Raw)
	certFile, keyFile := write("plugin.pem", "CERTIFICATE", pluginCert.Certificate[0]), write("plugin-key.pem", "PRIVATE KEY", keyDER)

	p := startPlugin(t, nil, "-addr", f.kmsd.url(), "-key", "alias/kubernetes-secrets",
		"-ca-file", caFile, "-client-cert", certFile, "-client-key", keyFile)
	as := newAPIServer(t, p.socket)
	if st := as.mustProbe(t); st.KeyID != f.keyID+":v1" {
		t.Fatalf("Status over mutual TLS: %+v", st)
	}
	data := as.write(t, "mtls", []byte("over mutual TLS"))
	fresh := newAPIServer(t, p.socket)
	fresh.mustProbe(t)
	if got, _ := fresh.read(t, "mtls", data); string(got) != "over mutual TLS" {
		t.Fatalf("read back %q", got)
	}

	wrong := startPlugin(t, nil, "-addr", f.kmsd.url(), "-key", f.keyID,
		"-ca-file", otherFile, "-client-cert", certFile, "-client-key", keyFile)
	st, err := newAPIServer(t, wrong.socket).svc.Status(kmstest.Ctx(t))
	if err != nil || st.Healthz == "ok" || !strings.Contains(st.Healthz, "certificate") {
		t.Fatalf("Status with a CA that did not sign kmsd: %+v %v", st, err)
	}
}
