package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/store"
)

// A real crash: kmsd is killed with SIGKILL while rotations, key creations
// and encryptions are in flight. After a restart (whose reconciler rolls
// back what was cut short) every blob answered before the crash decrypts,
// each key has exactly one primary version, and the token holds exactly
// the objects the store knows.
func TestSIGKILLDuringRotations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dbPath := filepath.Join(t.TempDir(), "kms.db")
	// A token of its own: every object in it must be this test's.
	tokEnv := softhsmtest.ExtraToken(t, "crash-test")
	env := append(kmsdEnv(t, "sqlite:"+dbPath), "KMS_PENDING_GRACE=1ms", "KMS_LEASE_DURATION=1s",
		"KMS_RECONCILE_EVERY=200ms")
	env = append(env, tokEnv.Environ()...)

	totalCut := 0
	// Three rounds, and more (up to eight) while no kill has yet cut a
	// creation or rotation short: where a SIGKILL lands is chance.
	for round := 0; round < 3 || totalCut == 0 && round < 8; round++ {
		p := startKmsd(t, env)
		c := client.New(p.url, adminToken, nil)
		var keys []string
		for i := 0; i < 4; i++ {
			k, err := c.CreateKey(ctx, client.CreateKeyRequest{Description: fmt.Sprintf("crash %d/%d", round, i)})
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k.KeyID)
		}
		type blob struct {
			data  []byte
			plain string
		}
		var mu sync.Mutex
		var blobs []blob
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 6; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					key := keys[(w+n)%len(keys)]
					switch n % 3 {
					case 0:
						_, _ = c.RotateKey(ctx, key) // may fail once the server is gone
					case 1:
						_, _ = c.CreateKey(ctx, client.CreateKeyRequest{Description: "cut short?"})
					default:
						plain := fmt.Sprintf("round %d worker %d n %d", round, w, n)
						if enc, err := c.Encrypt(ctx, key, []byte(plain), nil); err == nil {
							mu.Lock()
							blobs = append(blobs, blob{enc.CiphertextBlob, plain})
							mu.Unlock()
						}
					}
				}
			}()
		}
		// Kill once the workers are well under way (a loaded machine may
		// take a while to answer the first requests).
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			mu.Lock()
			n := len(blobs)
			mu.Unlock()
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no encryption answered within 30 s\n%s", p.log())
			}
		}
		time.Sleep(time.Duration(150+100*(round%3)) * time.Millisecond)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		p.done <- nil
		close(stop)
		wg.Wait()
		cut := pendingVersions(t, dbPath)
		totalCut += cut

		p2 := startKmsd(t, env)
		c2 := client.New(p2.url, adminToken, nil)
		// The reconciler runs at start; wait until nothing is pending.
		deadline := time.Now().Add(30 * time.Second)
		for {
			if pendingVersions(t, dbPath) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pending versions left 30s after the restart\n%s", p2.log())
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The rows go first, the objects after: when there was something
		// to roll back, wait for the pass's closing report, so that the
		// stop below does not cut its last destroys short.
		for cut > 0 && !strings.Contains(p2.log(), "reconciler repaired") {
			if time.Now().After(deadline) {
				t.Fatalf("the reconciler's pass did not finish 30s after the restart\n%s", p2.log())
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, b := range blobs {
			dec, err := c2.Decrypt(ctx, b.data, nil, "")
			if err != nil || string(dec.Plaintext) != b.plain {
				t.Fatalf("round %d: a blob answered before the crash does not decrypt: %v", round, err)
			}
		}
		p2.stop(t)
		checkTokenMatchesStore(t, "sqlite:"+dbPath, tokEnv)
		t.Logf("round %d: %d unfinished creations/rotations at SIGKILL; %d blobs made before it all decrypt", round, cut, len(blobs))
	}
	if totalCut == 0 {
		t.Error("no SIGKILL hit an unfinished creation or rotation: the test proved nothing about recovery")
	}
}

func pendingVersions(t *testing.T, dbPath string) int {
	t.Helper()
	db, err := store.Open(context.Background(), "sqlite:"+dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	vs, err := db.VersionsInState(context.Background(), service.VersionPending)
	if err != nil {
		t.Fatal(err)
	}
	return len(vs)
}

// checkTokenMatchesStore: each key of the store has exactly one primary;
// the token holds an object for every live version of the store's keys and
// none for a version it does not know or has destroyed.
func checkTokenMatchesStore(t *testing.T, dsn string, env *softhsmtest.Env) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tok, err := hsm.Open(ctx, kmstest.HSMConfig(t, env))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	inv, err := tok.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := db.ListKeys(ctx, service.Page{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	mine := map[string]bool{}
	for _, k := range keys {
		mine[k.ID] = true
		if k.State == service.KeyCreating {
			t.Errorf("key %s is still Creating after the reconciler ran", k.ID)
		}
		vs, err := db.ListVersions(ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		primaries := 0
		for _, v := range vs {
			switch v.State {
			case service.VersionPrimary:
				primaries++
			case service.VersionPending:
				t.Errorf("key %s version %d still Pending", k.ID, v.Version)
			}
			if v.State != service.VersionDestroyed {
				want[v.TokenLabel] = true
			}
		}
		if k.State != service.KeyDeleted && primaries != 1 {
			t.Errorf("key %s has %d primary versions", k.ID, primaries)
		}
	}
	got := map[string]bool{}
	for _, o := range inv {
		if o.Ref.KeyID == service.AuditSealKeyID || o.Ref.KeyID == service.MACKeyID {
			continue
		}
		if !mine[o.Ref.KeyID.String()] {
			t.Errorf("object %s has no key in the store (a creation cut short was not rolled back)", o.Label)
			continue
		}
		got[o.Label] = true
		if o.Extractable || !o.Sensitive {
			t.Errorf("object %s is extractable or not sensitive", o.Label)
		}
	}
	if d := diff(want, got); d != "" {
		t.Errorf("token and store differ: %s", d)
	}
}

func diff(want, got map[string]bool) string {
	var missing, extra []string
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing)+len(extra) == 0 {
		return ""
	}
	return fmt.Sprintf("objects missing for live versions %v; objects without a live version %v", missing, extra)
}
