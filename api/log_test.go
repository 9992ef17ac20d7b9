package api_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// One JSON log line per request, with request id, principal, operation,
// key, status and duration; never the plaintext.
func TestOneLogLinePerRequest(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	k := admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/logged"})
	req, _ := http.NewRequest("POST", s.URL+"/v1/encrypt", strings.NewReader(`{"key_id":"alias/logged","plaintext":"`+b64("log me not")+`"}`))
	req.Header.Set("Authorization", "Bearer "+kmstest.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", "chosen-by-the-client")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Header.Get("X-Request-Id")
	if id == "" || id == "chosen-by-the-client" {
		t.Fatalf("X-Request-Id %q: the server must choose it", id)
	}
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(kmstest.Logs()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "request" && m["request_id"] == id {
			lines = append(lines, m)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d request lines for the request, want 1", len(lines))
	}
	l := lines[0]
	if l["principal"] != "admin" || l["operation"] != "kms:Encrypt" || l["key_id"] != k["key_id"] ||
		l["key_version"] != float64(1) || l["status"] != float64(200) || l["duration_ms"] == nil {
		t.Errorf("request line: %v", l)
	}
}
