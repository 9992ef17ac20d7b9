package apispec

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps what Errorf said.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Helper() {}

// The validator is strict: each kind of drift is reported, and a
// conforming exchange is not.
func TestTransportCatchesDrift(t *testing.T) {
	key := `{"key_id":"2f1c8a4e-0000-4000-8000-000000000001","description":"","aliases":[],"key_state":"Enabled","origin":"HSM","key_spec":"AES_256","key_usage":"ENCRYPT_DECRYPT","key_manager":"CUSTOMER","creation_date":"2026-01-01T00:00:00Z","primary_key_version":1,"automatic_rotation":"Disabled","rotation_interval":"31536000s","tags":{}}`
	cases := []struct {
		name, method, path, body string
		status                   int
		answer                   string
		wantDrift                bool
	}{
		{"conforming", "GET", "/v1/keys/2f1c8a4e-0000-4000-8000-000000000001", "", 200, key, false},
		{"conforming error", "GET", "/v1/keys/x", "", 404, `{"error":{"code":"NotFoundException","message":"no"}}`, false},
		{"field not in the document", "GET", "/v1/keys/2f1c8a4e-0000-4000-8000-000000000001", "", 200, strings.Replace(key, `"tags":{}`, `"tags":{},"secret":"x"`, 1), true},
		{"required field missing", "GET", "/v1/keys/2f1c8a4e-0000-4000-8000-000000000001", "", 200, strings.Replace(key, `"key_usage":"ENCRYPT_DECRYPT",`, "", 1), true},
		{"wrong enum", "GET", "/v1/keys/2f1c8a4e-0000-4000-8000-000000000001", "", 200, strings.Replace(key, `"Enabled"`, `"Active"`, 1), true},
		{"undocumented status", "GET", "/v1/keys", "", 418, `{"error":{"code":"ValidationException","message":"tea"}}`, true},
		{"unknown error code", "GET", "/v1/keys", "", 400, `{"error":{"code":"Oops","message":"x"}}`, true},
		{"undocumented route answered", "GET", "/v1/secret-admin", "", 200, `{}`, true},
		{"forbidden request accepted", "POST", "/v1/generate-random", `{"number_of_bytes":5000}`, 200, `{"plaintext":"AAAA"}`, true},
		{"forbidden request refused", "POST", "/v1/generate-random", `{"number_of_bytes":5000}`, 400, `{"error":{"code":"ValidationException","message":"x"}}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("X-Request-Id", "r1")
				w.WriteHeader(tc.status)
				fmt.Fprint(w, tc.answer)
			}))
			defer srv.Close()
			rec := &recorder{TB: t}
			c := &http.Client{Transport: Transport(rec, nil)}
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer x")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := len(rec.errs) > 0; got != tc.wantDrift {
				t.Errorf("drift reported: %v, want %v: %v", got, tc.wantDrift, rec.errs)
			}
		})
	}
}
