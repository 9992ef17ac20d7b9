package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
)

const provisionYAML = `keys:
  - alias: alias/ci-app
    description: the CI application's key
    automatic_rotation: true
    rotation_interval: 90d
    tags: {team: payments}
    extra_aliases: [alias/ci-app-legacy]
  - alias: alias/ci-other
`

// KMS_PROVISION_FILE creates its keys at the first start and nothing at the
// next: a pipeline gets the same aliases every time.
func TestProvisionFileAtStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	file := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(file, []byte(provisionYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(kmsdEnv(t, "sqlite:"+filepath.Join(dir, "kms.db")), "KMS_PROVISION_FILE="+file)
	var ids []string
	for run := 0; run < 2; run++ {
		p := startKmsd(t, env)
		c := client.New(p.url, adminToken, nil)
		k, err := c.DescribeKey(ctx, "alias/ci-app-legacy")
		if err != nil || k.AutomaticRotation != "Enabled" || k.RotationInterval != "7776000s" || k.Tags["team"] != "payments" {
			t.Fatalf("run %d: provisioned key %v %+v", run, err, k)
		}
		keys, err := c.ListKeys(ctx, 100, "")
		if err != nil || len(keys.Keys) != 2 {
			t.Fatalf("run %d: %d keys (%v), want 2", run, len(keys.Keys), err)
		}
		ids = append(ids, k.KeyID)
		p.stop(t)
	}
	if ids[0] != ids[1] {
		t.Fatalf("the second start made a new key: %v", ids)
	}
}

// A bad provision file stops kmsd with one line naming the problem.
func TestProvisionFileErrors(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"unknown field":    "keys:\n  - alias: alias/a\n    rotation: 90d\n",
		"no alias":         "keys:\n  - description: x\n",
		"bad interval":     "keys:\n  - alias: alias/a\n    rotation_interval: soon\n",
		"bad alias":        "keys:\n  - alias: nope\n",
		"not yaml":         "keys: [\n",
		"interval too low": "keys:\n  - alias: alias/a\n    automatic_rotation: true\n    rotation_interval: 1h\n",
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
			if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(kmsdBin)
			cmd.Env = append(kmsdEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "kms.db")),
				"KMS_PROVISION_FILE="+file, "KMS_LISTEN="+freeAddr(t))
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err == nil {
				t.Fatalf("kmsd started with a bad provision file:\n%s", out.String())
			}
			text := strings.TrimSpace(out.String())
			if strings.Count(text, "\n") != 0 || !strings.Contains(text, "provision") {
				t.Fatalf("want one line about the provision file, got:\n%s", text)
			}
		})
	}
	if _, err := loadProvisionFile(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing file loaded")
	}
}
