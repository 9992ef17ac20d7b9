package api_test

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

// sqlStack is a server on a database the test also writes directly, as
// someone with write access to it would: SQLite, or PostgreSQL with
// KMS_TEST_STORE=postgres. The auth cache is short so that a row changed
// underneath is read again soon. run executes one statement written with
// '?' placeholders.
func sqlStack(t *testing.T, cfg service.Config) (s *kmstest.Stack, run func(query string, args ...any)) {
	t.Helper()
	dsn, driver := "sqlite:"+filepath.Join(t.TempDir(), "kms.db"), "sqlite"
	if kmstest.OnPostgres() {
		dsn, driver = kmstest.PostgresDSN(t), "pgx"
	}
	if cfg.AuthCacheTTL == 0 {
		cfg.AuthCacheTTL = time.Millisecond
	}
	s = kmstest.Start(t, kmstest.Options{Store: kmstest.StoreAt(t, dsn), Config: cfg})
	raw, err := sql.Open(driver, strings.TrimPrefix(dsn, "sqlite:"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return s, func(query string, args ...any) {
		t.Helper()
		if driver == "pgx" {
			for i := 1; strings.Contains(query, "?"); i++ {
				query = strings.Replace(query, "?", "$"+strconv.Itoa(i), 1)
			}
		}
		if _, err := raw.Exec(query, args...); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
	}
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Issue 16, item 7: whoever can write the database cannot make a working
// bearer token. The stored value is a MAC made in the token; a row with
// the SHA-256 of a chosen string (what worked before), or with a guess at
// the new form, authenticates nothing, and neither does a genuine row
// moved to another principal or given a longer life.
func TestADatabaseWriterCannotMintABearerToken(t *testing.T) {
	s, run := sqlStack(t, service.Config{})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	admin.must(200, "PUT", "/v1/policies/reader", map[string]any{"document": map[string]any{"statements": []map[string]any{
		{"effect": "allow", "resources": []string{"*"}, "actions": []string{"kms:ListKeys"}}}}})
	admin.must(201, "POST", "/v1/principals", map[string]any{"name": "reader", "policies": []string{"reader"}})
	now := time.Now().UnixMicro()

	chosen := "kms_0123456789abcdef_" + strings.Repeat("A", 43)
	kmstest.Secret(chosen)
	bootstrapChoice := "Chosen-Bootstrap-Value-42"
	kmstest.Secret(bootstrapChoice)
	for _, tc := range []struct {
		name   string
		bearer string
		plant  func()
	}{
		{"a new administrator token row with the SHA-256 of a chosen token", chosen, func() {
			run(`INSERT INTO bearer_tokens (id, principal, hash, description, created_at) VALUES (?, 'admin', ?, '', ?)`,
				"0123456789abcdef", sha256Hex(chosen), now)
		}},
		{"the same row in the MAC form, with the SHA-256 as the MAC", chosen, func() {
			run(`UPDATE bearer_tokens SET hash = ? WHERE id = ?`, "hmac:"+sha256Hex(chosen), "0123456789abcdef")
		}},
	} {
		tc.plant()
		if r := newCaller(t, s.URL, tc.bearer).do("GET", "/v1/principals", nil); r.status != 401 || r.code() != "UnauthenticatedException" {
			t.Errorf("%s: %d %s, want 401 UnauthenticatedException", tc.name, r.status, r.body)
		}
	}

	// A genuine token: what the database keeps of it is not its SHA-256.
	tok := admin.must(201, "POST", "/v1/principals/reader/tokens", map[string]any{"description": "reader"})
	bearer, id := tok["token"].(string), tok["token_id"].(string)
	kmstest.Secret(bearer)
	reader := newCaller(t, s.URL, bearer)
	reader.must(200, "GET", "/v1/keys", nil)
	// Moved to the administrator, it stops working; moved back, it works.
	run(`UPDATE bearer_tokens SET principal = 'admin' WHERE id = ?`, id)
	waitStatus(t, reader, "GET", "/v1/principals", 401)
	run(`UPDATE bearer_tokens SET principal = 'reader' WHERE id = ?`, id)
	waitStatus(t, reader, "GET", "/v1/keys", 200)
	reader.must(403, "GET", "/v1/principals", nil)

	// An expiring token given no expiry (or a later one) stops working.
	exp := admin.must(201, "POST", "/v1/principals/reader/tokens", map[string]any{"expires_in": "1h"})
	expiring := newCaller(t, s.URL, exp["token"].(string))
	kmstest.Secret(expiring.token)
	expiring.must(200, "GET", "/v1/keys", nil)
	for _, v := range []any{nil, time.Now().Add(1000 * time.Hour).UnixMicro()} {
		run(`UPDATE bearer_tokens SET expires_at = ? WHERE id = ?`, v, exp["token_id"])
		waitStatus(t, expiring, "GET", "/v1/keys", 401)
	}

	// Last (the administrator's token is gone then): the bootstrap row's
	// hash replaced with the SHA-256 of a chosen value.
	run(`UPDATE bearer_tokens SET hash = ? WHERE id = 'bootstrap'`, sha256Hex(bootstrapChoice))
	waitStatus(t, newCaller(t, s.URL, bootstrapChoice), "GET", "/v1/principals", 401)
	waitStatus(t, admin, "GET", "/v1/principals", 401)
}

// waitStatus repeats a request until it answers status: a row changed in
// the database is read again once the auth cache entry is older than its
// TTL (a millisecond here). The bound is generous: it fails only if the
// change never takes effect.
func waitStatus(t *testing.T, c caller, method, path string, status int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := c.do(method, path, nil)
		if r.status == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: still %d %s, want %d", method, path, r.status, r.body, status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Issue 16, item 13, over HTTP: a token created with expires_in works
// until then and is a 401 after; the principal shows its expiry and last
// use, which its requests move at most once a minute.
func TestExpiringTokensOverHTTP(t *testing.T) {
	clock := kmstest.NewClock()
	s := kmstest.Start(t, kmstest.Options{Config: service.Config{Clock: clock}})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	tok := admin.must(201, "POST", "/v1/principals/admin/tokens", map[string]any{"description": "a day", "expires_in": "1d"})
	kmstest.Secret(tok["token"].(string))
	if want := clock.Now().Add(24 * time.Hour).Format(time.RFC3339Nano); tok["expiration_date"] != want {
		t.Errorf("expiration_date %v, want %s", tok["expiration_date"], want)
	}
	day := newCaller(t, s.URL, tok["token"].(string))
	day.must(200, "GET", "/v1/keys", nil)
	used := clock.Now()
	clock.Advance(30 * time.Second)
	day.must(200, "GET", "/v1/keys", nil)
	var info map[string]any
	for _, tk := range admin.must(200, "GET", "/v1/principals/admin", nil)["tokens"].([]any) {
		if tk.(map[string]any)["token_id"] == tok["token_id"] {
			info = tk.(map[string]any)
		}
	}
	if info["expiration_date"] != tok["expiration_date"] || info["last_used_date"] != used.Format(time.RFC3339Nano) {
		t.Errorf("token as listed: %v, want its expiry and last use %s", info, used.Format(time.RFC3339Nano))
	}
	clock.Advance(24 * time.Hour)
	r := day.do("GET", "/v1/keys", nil)
	if r.status != 401 || r.code() != "UnauthenticatedException" || !strings.Contains(string(r.body), "expired") {
		t.Errorf("after expiry: %d %s, want 401 saying the token expired", r.status, r.body)
	}
}
