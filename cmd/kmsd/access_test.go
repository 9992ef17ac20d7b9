package main

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
)

// `kmsd init` creates the administrator once and prints its token once; a
// later start needs no bootstrap token, and a bootstrap token given to a
// database that has principals grants nothing.
func TestInitCreatesTheAdministratorOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := "sqlite:" + filepath.Join(t.TempDir(), "kms.db")
	initCmd := func() (string, error) {
		cmd := exec.Command(kmsdBin, "init")
		cmd.Env = withoutVar(kmsdEnv(t, db), "KMS_BOOTSTRAP_TOKEN") // init needs the token too
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := initCmd()
	if err != nil {
		t.Fatalf("kmsd init: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	token := lines[len(lines)-1]
	if !strings.HasPrefix(token, "kms_") || len(token) < 40 {
		t.Fatalf("kmsd init printed no token:\n%s", out)
	}
	again, err := initCmd()
	if err == nil || strings.Contains(again, "kms_") || strings.Count(strings.TrimSpace(again), "\n") != 0 {
		t.Fatalf("second kmsd init: err %v, output:\n%s", err, again)
	}

	env := withoutVar(kmsdEnv(t, db), "KMS_BOOTSTRAP_TOKEN")
	p := startKmsd(t, append(env, "KMS_LOG_LEVEL=debug"))
	if _, err := client.New(p.url, token, nil).ListKeys(ctx, 0, ""); err != nil {
		t.Fatalf("the token kmsd init printed: %v", err)
	}
	p.stop(t)

	p2 := startKmsd(t, append(env, "KMS_BOOTSTRAP_TOKEN="+adminToken, "KMS_LOG_LEVEL=debug"))
	if _, err := client.New(p2.url, adminToken, nil).ListKeys(ctx, 0, ""); client.Code(err) != "UnauthenticatedException" {
		t.Fatalf("a bootstrap token on a database with principals: %v, want UnauthenticatedException", err)
	}
	if _, err := client.New(p2.url, token, nil).ListKeys(ctx, 0, ""); err != nil {
		t.Fatal(err)
	}
	p2.stop(t)
	for _, p := range []*proc{p, p2} {
		for _, secret := range []string{token, adminToken, softhsmPIN(t)} {
			if strings.Contains(p.log(), secret) {
				t.Errorf("kmsd's log holds a secret (%.6s...)", secret)
			}
		}
	}
}

func softhsmPIN(t *testing.T) string { return softhsmtest.Get(t).PIN }

// SIGTERM while requests are in flight: every request that was answered
// has its audit record after the restart, and the chain is intact.
func TestShutdownLosesNoAuditRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := kmsdEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "kms.db"))
	p := startKmsd(t, env)
	if _, err := client.New(p.url, adminToken, nil).CreateKey(ctx, client.CreateKeyRequest{Alias: "alias/flush"}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var answered []string
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := `{"key_id":"alias/flush","plaintext":"c2h1dGRvd24="}`
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", p.url+"/v1/encrypt", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+adminToken)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return // the server is gone
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mu.Lock()
					answered = append(answered, resp.Header.Get("X-Request-Id"))
					mu.Unlock()
				}
			}
		}()
	}
	// Shut down while requests are in flight, once some have been answered.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		n := len(answered)
		mu.Unlock()
		if n >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d requests answered in 30 s", n)
		}
	}
	p.stop(t)
	close(stop)
	wg.Wait()
	if len(answered) == 0 {
		t.Fatal("no request was answered before the shutdown")
	}

	p2 := startKmsd(t, env)
	c := client.New(p2.url, adminToken, nil)
	seen := map[string]bool{}
	next := ""
	for {
		page, err := c.ListAudit(ctx, client.AuditFilter{}, 1000, next)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Records {
			seen[r.RequestID] = true
		}
		if next = page.NextToken; next == "" {
			break
		}
	}
	for _, id := range answered {
		if !seen[id] {
			t.Fatalf("request %s was answered but has no audit record after the restart", id)
		}
	}
	v, err := c.VerifyAudit(ctx)
	if err != nil || !v.Intact {
		t.Fatalf("audit chain after shutdown: %v %+v", err, v)
	}
	t.Logf("%d answered requests, all audited", len(answered))
}
