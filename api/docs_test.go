package api_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/internal/apispec"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// docs/API.md, the users' description of the API, names every /v1 route
// the server serves (the /v1/keys/alias/{name}/... twin of a per-key route
// is covered by the rule that both forms work) and every error code the
// OpenAPI document, checked against real responses, lists; and it has no
// notes addressed to the project's developers.
func TestAPIDocDescribesTheServer(t *testing.T) {
	b, err := os.ReadFile("../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	param := regexp.MustCompile(`(:[a-z_]+|\{[a-z_]+\})`)
	norm := func(method, path string) string { return method + " " + param.ReplaceAllString(path, "{}") }
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("(GET|POST|PUT|PATCH|DELETE) (/v1/[^`?, ]*)").FindAllStringSubmatch(doc, -1) {
		listed[norm(m[1], m[2])] = true
	}
	for _, r := range api.New(api.Config{Logger: kmstest.Logger()}).Routes() {
		if !strings.HasPrefix(r.Path, "/v1/") || strings.HasPrefix(r.Path, "/v1/keys/alias/") {
			continue
		}
		if !listed[norm(r.Method, r.Path)] {
			t.Errorf("docs/API.md does not describe %s %s", r.Method, r.Path)
		}
	}
	spec, _, err := apispec.Load()
	if err != nil {
		t.Fatal(err)
	}
	codes := spec.Components.Schemas["Error"].Value.Properties["error"].Value.Properties["code"].Value.Enum
	if len(codes) == 0 {
		t.Fatal("the OpenAPI document lists no error codes")
	}
	for _, c := range codes {
		if !strings.Contains(doc, "| "+c.(string)+" |") {
			t.Errorf("docs/API.md's error table lacks %s", c)
		}
	}
	for _, note := range []string{"do not rename", "shared folder", "the contract:", "tests rely on"} {
		if strings.Contains(strings.ToLower(doc), note) || strings.Contains(strings.ToLower(string(api.OpenAPI)), note) {
			t.Errorf("a note for developers in the user docs: %q", note)
		}
	}
}
