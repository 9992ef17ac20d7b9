package main

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
)

// devWindow is the development pending window of TestDeletionWithDevWindow:
// long enough to see PendingDeletion, short enough for a test.
const devWindow = 3 * time.Second

// With KMS_DEV_MODE=true and KMS_DEV_PENDING_WINDOW, the real worker of
// the real binary deletes a key and destroys a version within seconds:
// PendingDeletion, then the token objects gone, then Deleted / Destroyed.
// kmsd warns about the setting at start.
func TestDeletionWithDevWindow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := kmsdEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "kms.db"),
		"KMS_DEV_MODE=true", "KMS_DEV_PENDING_WINDOW="+devWindow.String(), "KMS_WORKER_TICK=200ms")
	p := startKmsd(t, env)
	if !logShows(p, "DEVELOPMENT") || !logShows(p, "KMS_DEV_PENDING_WINDOW") {
		t.Fatalf("no warning about the development window at start:\n%s", p.log())
	}
	c := client.New(p.url, adminToken, nil)
	doomed, err := c.CreateKey(ctx, client.CreateKeyRequest{Alias: "alias/doomed"})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := c.Encrypt(ctx, doomed.KeyID, []byte("soon gone"), nil)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := c.CreateKey(ctx, client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RotateKey(ctx, kept.KeyID); err != nil {
		t.Fatal(err)
	}
	objects := tokenObjects(t, doomed.KeyID, kept.KeyID)
	if objects[doomed.KeyID] != "1" || objects[kept.KeyID] != "1,2" {
		t.Fatalf("token objects before: %v", objects)
	}

	before := time.Now()
	d, err := c.ScheduleKeyDeletion(ctx, doomed.KeyID, 7)
	after := time.Now()
	if err != nil || d.KeyState != "PendingDeletion" || d.DeletionDate == nil ||
		d.DeletionDate.Before(before.Add(devWindow-time.Second)) || d.DeletionDate.After(after.Add(devWindow+time.Second)) {
		t.Fatalf("schedule deletion: %v %+v; want PendingDeletion in about %v", err, d, devWindow)
	}
	v, err := c.ChangeVersion(ctx, kept.KeyID, 1, "schedule-destruction", 0)
	if err != nil || v.State != "PendingDestruction" || v.DestructionDate == nil || v.DestructionDate.After(time.Now().Add(devWindow+time.Second)) {
		t.Fatalf("schedule destruction: %v %+v", err, v)
	}
	if _, err := c.Encrypt(ctx, doomed.KeyID, []byte("x"), nil); client.Code(err) != "KMSInvalidStateException" {
		t.Fatalf("encrypt while pending deletion: %v", err)
	}

	// The worker (every 200 ms) acts once the window has passed; the bound
	// is generous for a loaded machine.
	deadline := time.Now().Add(60 * time.Second)
	for {
		k, kerr := c.DescribeKey(ctx, doomed.KeyID)
		vs, verr := c.ListVersions(ctx, kept.KeyID)
		if kerr == nil && verr == nil && k.KeyState == "Deleted" && len(vs) == 2 && vs[0].State == "Destroyed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not deleted and destroyed 60s after a %v window: %v %v %+v %+v\n%s", devWindow, kerr, verr, k, vs, p.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := c.Decrypt(ctx, enc.CiphertextBlob, nil, ""); client.Code(err) != "KMSInvalidStateException" {
		t.Fatalf("decrypt of the deleted key's blob: %v", err)
	}
	if _, err := c.DescribeKey(ctx, "alias/doomed"); client.Code(err) != "NotFoundException" {
		t.Fatalf("alias of the deleted key: %v", err)
	}
	p.stop(t)
	if objects := tokenObjects(t, doomed.KeyID, kept.KeyID); objects[doomed.KeyID] != "" || objects[kept.KeyID] != "2" {
		t.Fatalf("token objects after: %v; want none of the deleted key and only version 2 of the other", objects)
	}
}

// tokenObjects lists, per key id, the versions the test token holds
// objects of ("1,2"), read with a token session of this process.
func tokenObjects(t *testing.T, ids ...string) map[string]string {
	t.Helper()
	ctx := context.Background()
	tok, err := hsm.Open(ctx, kmstest.HSMConfig(t, softhsmtest.Get(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	inv, err := tok.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, id := range ids {
		var ns []int
		for _, o := range inv {
			if o.Ref.KeyID == uuid.MustParse(id) {
				ns = append(ns, o.Ref.Version)
			}
		}
		slices.Sort(ns)
		vs := make([]string, len(ns))
		for i, n := range ns {
			vs[i] = strconv.Itoa(n)
		}
		out[id] = strings.Join(vs, ",")
	}
	return out
}
