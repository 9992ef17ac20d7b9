package api_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/apispec"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// send makes one request with exactly the headers given ("" omits one)
// and returns the status and the error code.
func send(t *testing.T, hc *http.Client, method, url, token, contentType, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e.Error.Code
}

// A request body must be declared application/json: browsers send
// text/plain, form and multipart bodies cross-site without a preflight,
// with the user's client certificate. Anything else is 415
// UnsupportedMediaTypeException, and nothing is created.
func TestRequestBodiesMustBeJSON(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	admin.must(200, "PUT", "/v1/policies/browser", map[string]any{"document": map[string]any{"statements": []map[string]any{
		{"effect": "allow", "actions": []string{"kms:*"}, "resources": []string{"*"}}}}})
	admin.must(201, "POST", "/v1/principals", map[string]any{"name": "browser", "policies": []string{"browser"}, "cert_subject": "CN=browser"})
	id := admin.must(201, "POST", "/v1/keys", nil)["key_id"].(string)

	caCert, caKey, _ := kmstest.IssueCert(t, "test CA", nil, nil, true)
	_, _, serverCert := kmstest.IssueCert(t, "127.0.0.1", caCert, caKey, false)
	_, _, userCert := kmstest.IssueCert(t, "browser", caCert, caKey, false)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	srv := httptest.NewUnstartedServer(api.New(api.Config{Service: s.Service, Logger: kmstest.Logger()}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool,
		ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	// Both go through the OpenAPI check: the document must list the 415.
	withCert := &http.Client{Transport: apispec.Transport(t, &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool,
		Certificates: []tls.Certificate{userCert}, MinVersion: tls.VersionTLS12}})}
	plain := &http.Client{Transport: apispec.Transport(t, nil)}

	keys := func() int { return len(admin.must(200, "GET", "/v1/keys", nil)["keys"].([]any)) }
	before := keys()
	body := `{"description":"made by a web page"}`
	for _, tc := range []struct {
		name        string
		hc          *http.Client
		url, token  string
		contentType string
		body        string
	}{
		{"certificate, text/plain", withCert, srv.URL, "", "text/plain", body},
		{"certificate, form", withCert, srv.URL, "", "application/x-www-form-urlencoded", body},
		{"certificate, multipart", withCert, srv.URL, "", "multipart/form-data; boundary=x", body},
		{"certificate, none declared", withCert, srv.URL, "", "", body},
		{"certificate, empty body undeclared", withCert, srv.URL, "", "", ""},
		{"certificate, empty body as text", withCert, srv.URL, "", "text/plain", ""},
		{"token, text/plain", plain, s.URL, kmstest.AdminToken, "text/plain", body},
		{"token, none declared", plain, s.URL, kmstest.AdminToken, "", body},
		{"token, AWS protocol type", plain, s.URL, kmstest.AdminToken, "application/x-amz-json-1.1", body},
		{"token, JSON of another charset", plain, s.URL, kmstest.AdminToken, "application/json; charset=latin1", body},
		{"token, malformed type", plain, s.URL, kmstest.AdminToken, "application/json;;", body},
	} {
		if st, code := send(t, tc.hc, "POST", tc.url+"/v1/keys", tc.token, tc.contentType, tc.body); st != 415 || code != "UnsupportedMediaTypeException" {
			t.Errorf("%s: %d %s, want 415 UnsupportedMediaTypeException", tc.name, st, code)
		}
	}
	// A body-less change by a certificate too (a page can POST with no body).
	if st, code := send(t, withCert, "POST", srv.URL+"/v1/keys/"+id+"/disable", "", "", ""); st != 415 {
		t.Errorf("certificate, body-less disable: %d %s, want 415", st, code)
	}
	if got := admin.must(200, "GET", "/v1/keys/"+id, nil)["key_state"]; got != "Enabled" {
		t.Errorf("key state %v after refused requests", got)
	}
	if after := keys(); after != before {
		t.Fatalf("refused requests created %d keys", after-before)
	}

	// The Go client (and kmsctl, which uses it) declares JSON on every
	// change, body or none, so it works with a certificate.
	certClient := client.New(srv.URL, "", withCert)
	if _, err := certClient.DisableKey(kmstest.Ctx(t), id); err != nil {
		t.Errorf("the Go client's body-less POST with a certificate: %v", err)
	}
	if _, err := certClient.EnableKey(kmstest.Ctx(t), id); err != nil {
		t.Errorf("the Go client's body-less POST with a certificate: %v", err)
	}

	// Declared JSON is served, with or without its charset; a bearer
	// token may leave an empty body undeclared (curl -X POST).
	for _, tc := range []struct {
		name        string
		hc          *http.Client
		url, token  string
		contentType string
		body        string
		path        string
		want        int
	}{
		{"certificate, JSON", withCert, srv.URL, "", "application/json", body, "/v1/keys", 201},
		{"certificate, JSON with charset", withCert, srv.URL, "", "Application/JSON; charset=UTF-8", body, "/v1/keys", 201},
		{"certificate, empty body declared", withCert, srv.URL, "", "application/json", "", "/v1/keys/" + id + "/disable", 200},
		{"token, JSON", plain, s.URL, kmstest.AdminToken, "application/json", body, "/v1/keys", 201},
		{"token, empty body undeclared", plain, s.URL, kmstest.AdminToken, "", "", "/v1/keys/" + id + "/enable", 200},
		{"certificate, GET", withCert, srv.URL, "", "", "", "/v1/keys/" + id, 200},
	} {
		method := "POST"
		if tc.name == "certificate, GET" {
			method = "GET"
		}
		if st, code := send(t, tc.hc, method, tc.url+tc.path, tc.token, tc.contentType, tc.body); st != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, st, code, tc.want)
		}
	}
}
