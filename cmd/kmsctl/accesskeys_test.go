package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/internal/kmstest"
)

func TestAccessKeyCommands(t *testing.T) {
	c := newCtl(t)
	c.ok("", "principals", "create", "app")
	var k struct {
		ID     string `json:"access_key_id"`
		Secret string `json:"secret_access_key"`
	}
	if err := json.Unmarshal([]byte(c.ok("", "--output", "json", "access-keys", "create", "app")), &k); err != nil || k.ID == "" || k.Secret == "" {
		t.Fatalf("access-keys create: %+v, %v", k, err)
	}
	kmstest.Secret(k.Secret)
	out := c.ok("", "access-keys", "list", "app")
	if !strings.Contains(out, "ACCESS_KEY_ID") || !strings.Contains(out, k.ID) || strings.Contains(out, k.Secret) {
		t.Errorf("access-keys list:\n%s", out)
	}
	if code, _, errOut := c.run("", "access-keys", "delete", "app"); code != exitUsage || errOut == "" {
		t.Errorf("delete without an id: exit %d %s", code, errOut)
	}
	if code, _, errOut := c.run("", "access-keys", "delete", "nobody", k.ID); code != exitError || !strings.Contains(errOut, "NotFoundException") {
		t.Errorf("delete under another principal: exit %d %s", code, errOut)
	}
	c.ok("", "access-keys", "delete", "app", k.ID)
	if out := c.ok("", "access-keys", "list", "app"); strings.Contains(out, k.ID) {
		t.Errorf("deleted key still listed:\n%s", out)
	}
}
