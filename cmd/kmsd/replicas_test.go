package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/store"
)

// Two kmsd processes on one PostgreSQL database and one SoftHSM token: what
// one does is usable, or refused, on the other at once or within a second,
// and their two rotation workers make exactly one version per due rotation.
func TestTwoReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dsn := kmstest.PostgresDSN(t)
	tokEnv := softhsmtest.ExtraToken(t, "replicas-test")
	env := append(kmsdEnv(t, dsn), "KMS_MIN_ROTATION_INTERVAL=1s", "KMS_WORKER_TICK=100ms")
	env = append(env, tokEnv.Environ()...)
	a := startKmsd(t, env)
	b := startKmsd(t, env)
	ca, cb := client.New(a.url, adminToken, nil), client.New(b.url, adminToken, nil)

	// A key created on A is usable on B at once; blobs made on either
	// decrypt on both.
	k, err := ca.CreateKey(ctx, client.CreateKeyRequest{Alias: "alias/shared"})
	if err != nil {
		t.Fatal(err)
	}
	encB, err := cb.Encrypt(ctx, "alias/shared", []byte("made on B"), nil)
	if err != nil {
		t.Fatalf("encrypt on B with a key just created on A: %v", err)
	}
	encA, err := ca.Encrypt(ctx, k.KeyID, []byte("made on A"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{ca, cb} {
		for blob, want := range map[string]string{string(encA.CiphertextBlob): "made on A", string(encB.CiphertextBlob): "made on B"} {
			if d, err := c.Decrypt(ctx, []byte(blob), nil, ""); err != nil || string(d.Plaintext) != want {
				t.Fatalf("decrypt across replicas: %v", err)
			}
		}
	}

	// Changes on A take effect on B once B's cache entries expire (500 ms
	// by default). The bound here is looser, for a loaded CI machine with
	// race-built binaries; the cache's TTL itself is tested with a clock.
	within := func(what string, check func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !check() {
			if time.Now().After(deadline) {
				t.Fatalf("%s on A not seen by B within 10 s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	k2, err := ca.CreateKey(ctx, client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.UpdateAlias(ctx, "alias/shared", k2.KeyID); err != nil {
		t.Fatal(err)
	}
	within("an alias update", func() bool {
		r, err := cb.Encrypt(ctx, "alias/shared", []byte("x"), nil)
		return err == nil && r.KeyID == k2.KeyID
	})
	if _, err := ca.DisableKey(ctx, k.KeyID); err != nil {
		t.Fatal(err)
	}
	within("a disable", func() bool {
		_, err := cb.Encrypt(ctx, k.KeyID, []byte("x"), nil)
		return client.Code(err) == "DisabledException"
	})
	if _, err := ca.ScheduleKeyDeletion(ctx, k2.KeyID, 7); err != nil {
		t.Fatal(err)
	}
	within("a scheduled deletion", func() bool {
		_, err := cb.Encrypt(ctx, k2.KeyID, []byte("x"), nil)
		return client.Code(err) == "KMSInvalidStateException"
	})

	// Both workers run while keys fall due: exactly one new version per
	// due rotation. Meanwhile both replicas encrypt with them.
	var keys []string
	for i := 0; i < 6; i++ {
		kk, err := ca.CreateKey(ctx, client.CreateKeyRequest{Description: fmt.Sprintf("rotating %d", i),
			AutomaticRotation: true, RotationInterval: "1s"})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, kk.KeyID)
	}
	var mu sync.Mutex
	var blobs [][]byte
	var wg sync.WaitGroup
	var retried atomic.Int64
	stop := make(chan struct{})
	for i, c := range []*client.Client{ca, cb, ca, cb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				// KeyUnavailableException is "safe to retry" (docs/API.md), and a
				// client does. Two processes on one SoftHSM token directory
				// need it: an object one makes can stay invisible to the
				// other until the first writes the token again (SoftHSM's
				// token generation counter; docs/operations.md). Anything
				// else, or unavailability that outlasts the retries, fails.
				var r *client.EncryptResult
				var err error
				for retryUntil := time.Now().Add(30 * time.Second); ; {
					r, err = c.Encrypt(ctx, keys[(i+n)%len(keys)], []byte("during rotations"), nil)
					if client.Code(err) != "KeyUnavailableException" || time.Now().After(retryUntil) {
						break
					}
					retried.Add(1)
					time.Sleep(200 * time.Millisecond)
				}
				if err != nil {
					t.Errorf("encrypt during rotations: %v", err)
					return
				}
				mu.Lock()
				blobs = append(blobs, r.CiphertextBlob)
				mu.Unlock()
			}
		}()
	}
	// At least 3.5 s of rotations (each key falls due every second), and
	// until every key has rotated at least once.
	time.Sleep(3500 * time.Millisecond)
	waitForRotations(t, ctx, dsn, keys, 60*time.Second)
	close(stop)
	wg.Wait()
	a.stop(t)
	b.stop(t)
	if t.Failed() {
		t.Logf("replica A's log:\n%s\nreplica B's log:\n%s", a.log(), b.log())
	}

	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rotated := 0
	for _, id := range keys {
		vs, err := db.ListVersions(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		rots, err := db.ListRotations(ctx, id, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		primaries := 0
		for i, v := range vs {
			if v.Version != i+1 {
				t.Errorf("key %s: versions not consecutive: %d at position %d", id, v.Version, i)
			}
			if v.State == service.VersionPrimary {
				primaries++
			}
		}
		if primaries != 1 || len(rots) != len(vs)-1 {
			t.Errorf("key %s: %d versions, %d rotation records, %d primaries", id, len(vs), len(rots), primaries)
		}
		for i, r := range rots {
			if r.Version != i+2 || r.Type != service.RotationAutomatic {
				t.Errorf("key %s: rotation %d is %+v", id, i, r)
			}
			if i > 0 && r.At.Sub(rots[i-1].At) < 900*time.Millisecond {
				t.Errorf("key %s: rotations %d and %d only %v apart: one due rotation made two versions", id, i+1, i+2, r.At.Sub(rots[i-1].At))
			}
		}
		rotated += len(rots)
	}
	if t.Failed() {
		t.Logf("replica A's log:\n%s\nreplica B's log:\n%s", a.log(), b.log())
	}
	if rotated < len(keys) {
		t.Fatalf("only %d rotations of %d keys", rotated, len(keys))
	}
	// The token holds exactly the store's live versions.
	checkTokenMatchesStore(t, dsn, tokEnv)

	// Every blob made during the rotations decrypts on a restarted replica.
	c := startKmsd(t, env)
	cc := client.New(c.url, adminToken, nil)
	for _, blob := range blobs {
		if _, err := cc.Decrypt(ctx, blob, nil, ""); err != nil {
			t.Fatalf("a blob made during the rotations: %v", err)
		}
	}
	t.Logf("%d automatic rotations of %d keys by two workers, %d blobs made meanwhile all decrypt (%d encrypts retried after KeyUnavailable)",
		rotated, len(keys), len(blobs), retried.Load())
}

// waitForRotations waits until every key has at least one rotation record.
func waitForRotations(t *testing.T, ctx context.Context, dsn string, keys []string, limit time.Duration) {
	t.Helper()
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(limit)
	for _, id := range keys {
		for {
			rots, err := db.ListRotations(ctx, id, 0, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(rots) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("key %s did not rotate within %v of falling due", id, limit)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
