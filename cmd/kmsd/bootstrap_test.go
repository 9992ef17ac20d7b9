package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
)

// Weak bootstrap tokens are refused; random ones pass.
func TestBootstrapTokenStrength(t *testing.T) {
	for tok, ok := range map[string]bool{
		"aaaaaaaaaaaaaaaa":                 false, // one character
		"abababababababababab":             false, // two
		"abcdefghijklmnopqrst":             false, // lower case only
		"01234567890123456789":             false, // digits only
		"Ab1-Ab1-Ab1-Ab1-Ab1-":             false, // four kinds, four characters
		"short-Token-1":                    false, // too short
		"kmsd-test-admin-token-0123456789": true,
		"3f9a1c0e77b24d5e8a61c2f0b9d4e7a1": true, // openssl rand -hex 16
		"q2Zk8pW0xVb4Rn7tYc1Ls9Hd":         true, // openssl rand -base64 18
	} {
		err := strongBootstrapToken(tok)
		if ok != (err == nil) {
			t.Errorf("%q: %v, want accepted=%v", tok, err, ok)
		}
		if err != nil && strings.Contains(err.Error(), tok) {
			t.Errorf("the error shows the token: %v", err)
		}
	}
}

// kmsd refuses a weak KMS_BOOTSTRAP_TOKEN at start, and once principals
// exist it warns that the variable is set: still a working administrator
// token until revoked, ignored after that (or when it is another value).
func TestBootstrapTokenAtLaterStarts(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "kms.db")
	text := runFails(t, append(withoutVar(kmsdEnv(t, db), "KMS_BOOTSTRAP_TOKEN"), "KMS_BOOTSTRAP_TOKEN=aaaaaaaaaaaaaaaa"))
	if strings.Count(text, "\n") != 0 || !strings.Contains(text, "KMS_BOOTSTRAP_TOKEN is too weak") {
		t.Fatalf("weak bootstrap token: want one line saying it is too weak, got:\n%s", text)
	}

	first := startKmsd(t, kmsdEnv(t, db))
	if strings.Contains(first.log(), "KMS_BOOTSTRAP_TOKEN is set") {
		t.Errorf("the first start warned:\n%s", first.log())
	}
	first.stop(t)

	again := startKmsd(t, kmsdEnv(t, db))
	if !logShows(again, "still a working administrator token") {
		t.Errorf("restart with the bootstrap token: no warning that it still works:\n%s", again.log())
	}
	// Rotate it away: a new administrator token, the bootstrap one revoked.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var tok struct {
		Token string `json:"token"`
	}
	if err := client.New(again.url, adminToken, nil).Do(ctx, "POST", "/v1/principals/admin/tokens", map[string]any{"description": "replaces the bootstrap token"}, &tok); err != nil {
		t.Fatal(err)
	}
	if err := client.New(again.url, tok.Token, nil).Do(ctx, "DELETE", "/v1/principals/admin/tokens/bootstrap", nil, nil); err != nil {
		t.Fatal(err)
	}
	again.stop(t)

	for name, env := range map[string][]string{
		"the revoked bootstrap token": kmsdEnv(t, db),
		"another value":               append(withoutVar(kmsdEnv(t, db), "KMS_BOOTSTRAP_TOKEN"), "KMS_BOOTSTRAP_TOKEN=another-Bootstrap-token-42"),
	} {
		p := startKmsd(t, env)
		if !logShows(p, "KMS_BOOTSTRAP_TOKEN is set but principals exist: it is ignored") {
			t.Errorf("restart with %s: no warning that it is ignored:\n%s", name, p.log())
		}
		if err := client.New(p.url, adminToken, nil).Do(ctx, "GET", "/v1/keys", nil, nil); client.Code(err) != "UnauthenticatedException" {
			t.Errorf("restart with %s: the old bootstrap token: %v, want UnauthenticatedException", name, err)
		}
		p.stop(t)
	}
}

// logShows waits (up to 10 s) for kmsd's log to hold text: lines written
// before it became ready may still be on their way through the pipe.
func logShows(p *proc, text string) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(p.log(), text) {
			return true
		}
	}
	return false
}
