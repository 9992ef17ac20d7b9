package api_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// With mutual TLS, a verified client certificate whose subject is mapped to
// a principal authenticates as that principal; an unmapped subject, a
// certificate of another CA, or no certificate and no token does not.
func TestMutualTLSMapsCertificateSubjects(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/app-tls"})
	admin.must(200, "PUT", "/v1/policies/tls-app", map[string]any{"document": map[string]any{"statements": []map[string]any{
		{"effect": "allow", "actions": []string{"kms:Encrypt", "kms:DescribeKey"}, "resources": []string{"alias/app-*"}}}}})
	admin.must(201, "POST", "/v1/principals", map[string]any{"name": "tls-app", "policies": []string{"tls-app"}, "cert_subject": "CN=tls-app"})

	caCert, caKey, _ := kmstest.IssueCert(t, "test CA", nil, nil, true)
	_, _, serverCert := kmstest.IssueCert(t, "127.0.0.1", caCert, caKey, false)
	_, _, appCert := kmstest.IssueCert(t, "tls-app", caCert, caKey, false)
	_, _, strangerCert := kmstest.IssueCert(t, "stranger", caCert, caKey, false)
	otherCA, otherKey, _ := kmstest.IssueCert(t, "other CA", nil, nil, true)
	_, _, forgedCert := kmstest.IssueCert(t, "tls-app", otherCA, otherKey, false)

	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	srv := httptest.NewUnstartedServer(api.New(api.Config{Service: s.Service, Logger: kmstest.Logger()}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool,
		ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	with := func(cert *tls.Certificate) caller {
		tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		c := caller{t: t, url: srv.URL}
		c.client = &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
		return c
	}
	app := with(&appCert)
	app.must(200, "GET", "/v1/keys/alias/app-tls", nil)
	app.must(200, "POST", "/v1/encrypt", map[string]any{"key_id": "alias/app-tls", "plaintext": b64("over mTLS")})
	app.must(403, "GET", "/v1/keys", nil) // authenticated, but not allowed
	// Its records name the certificate it authenticated with.
	recs := listAudit(t, admin, "&principal=tls-app")
	if len(recs) != 3 {
		t.Errorf("%d records of tls-app, want 3", len(recs))
	}
	for _, r := range recs {
		if r["credential"] != "certificate:CN=tls-app" {
			t.Errorf("record %v of tls-app: credential %v", r["seq"], r["credential"])
		}
	}
	with(&strangerCert).must(401, "GET", "/v1/keys/alias/app-tls", nil)
	with(nil).must(401, "GET", "/v1/keys/alias/app-tls", nil)
	// A bearer token still works over TLS.
	tok := with(nil)
	tok.token = kmstest.AdminToken
	tok.must(200, "GET", "/v1/keys", nil)
	// A certificate of another CA authenticates no one: the handshake fails,
	// or the client, seeing the server's CA list, does not send it at all.
	forged := with(&forgedCert)
	if resp, err := forged.client.Get(srv.URL + "/v1/keys/alias/app-tls"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a certificate of an unknown CA got %d, want 401 or a failed handshake", resp.StatusCode)
		}
	}
}
