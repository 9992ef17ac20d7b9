package api_test

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/internal/apispec"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// Every route the server registers is in the OpenAPI document and every
// operation of the document is a route: neither can drift.
func TestOpenAPIMatchesTheRoutes(t *testing.T) {
	doc, _, err := apispec.Load()
	if err != nil {
		t.Fatalf("openapi.yaml does not load or validate: %v", err)
	}
	param := regexp.MustCompile(`(:[a-z_]+|\{[a-z_]+\})`)
	norm := func(method, path string) string { return method + " " + param.ReplaceAllString(path, "{}") }
	served := map[string]bool{}
	for _, r := range api.New(api.Config{Logger: kmstest.Logger()}).Routes() {
		if strings.HasPrefix(r.Path, "/v1") || strings.HasPrefix(r.Path, "/healthz") || strings.HasPrefix(r.Path, "/readyz") || r.Path == "/openapi.yaml" {
			served[norm(r.Method, r.Path)] = true
		}
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if path == "/metrics" {
				continue // registered by kmsd (api.Config.Extra), not by api.New
			}
			documented[norm(method, path)] = true
		}
	}
	var missing, extra []string
	for r := range served {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for r := range documented {
		if !served[r] {
			extra = append(extra, r)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("routes the document does not describe: %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("documented operations the server does not serve: %v", extra)
	}
}

// GET /openapi.yaml serves the document itself, without a bearer token.
func TestOpenAPIIsServed(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	resp, err := http.Get(s.URL + "/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Equal(body, api.OpenAPI) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/yaml") {
		t.Fatalf("GET /openapi.yaml: %d %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
}
