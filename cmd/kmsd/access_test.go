package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
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
		cmd.Env = []string{"KMS_DB=" + db}
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
