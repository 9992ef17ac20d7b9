package main

import (
	"context"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
)

// faultUser is the user kmsd runs as in the fault tests, because
// permissions mean nothing to root: under root, hsmkms-test (made with
// useradd when missing, as scripts/pg-test.sh does) or else nobody;
// otherwise this process's own user (cred nil).
func faultUser(t *testing.T) (cred *syscall.Credential, uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil, os.Geteuid(), os.Getegid()
	}
	u, err := user.Lookup("hsmkms-test")
	if err != nil {
		_ = exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "hsmkms-test").Run()
		if u, err = user.Lookup("hsmkms-test"); err != nil {
			if u, err = user.Lookup("nobody"); err != nil {
				t.Fatalf("no unprivileged user to run kmsd as (useradd hsmkms-test failed, no nobody): %v", err)
			}
		}
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid
}

// chownTree hands dir and everything in it to uid:gid.
func chownTree(t *testing.T, dir string, uid, gid int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// readyz is /readyz's status and how long it took to answer.
func readyz(t *testing.T, url string) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(url + "/readyz")
	if err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// retryable fails the test unless err is nil or KeyUnavailableException,
// the only answer a fault of a dependency may give (never a 500).
func retryable(t *testing.T, what string, err error) bool {
	t.Helper()
	if err != nil && client.Code(err) != "KeyUnavailableException" {
		t.Fatalf("%s during a fault: %v (want success or KeyUnavailableException)", what, err)
	}
	return err == nil
}

// waitFor polls cond until it holds or limit passes, and returns how long
// it took.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// TestTokenStorageFault: with the token's storage unreadable or moved away
// while kmsd (not root) runs, creating and rotating keys answer 503
// KeyUnavailableException, never 500; encrypt and decrypt answer or say
// 503; /readyz says not ready exactly when a key cannot be used (SoftHSM
// then shows no object; NSS softoken keeps its open databases and only
// fails writes); and once the storage is back everything works again
// without a restart, the blobs made before included (pitfalls item 58).
func TestTokenStorageFault(t *testing.T) {
	faults := []struct {
		name        string
		apply, undo func(dir string) error
	}{
		{"chmod 000",
			func(d string) error { return os.Chmod(d, 0) },
			func(d string) error { return os.Chmod(d, 0o700) }},
		{"moved away",
			func(d string) error { return os.Rename(d, d+".away") },
			func(d string) error { return os.Rename(d+".away", d) }},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			tok := softhsmtest.IsolatedToken(t, "storage-fault")
			cred, uid, gid := faultUser(t)
			dbDir, err := os.MkdirTemp("", "kmsd-fault-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dbDir) })
			chownTree(t, tok.Dir, uid, gid)
			chownTree(t, dbDir, uid, gid)
			env := append(kmsdEnv(t, "sqlite:"+filepath.Join(dbDir, "kms.db")), tok.Environ()...)
			p := startKmsdAs(t, cred, env)
			c := client.New(p.url, adminToken, nil)
			k, err := c.CreateKey(ctx, client.CreateKeyRequest{Alias: "alias/before-the-fault"})
			if err != nil {
				t.Fatal(err)
			}
			enc, err := c.Encrypt(ctx, k.KeyID, []byte("made before the fault"), nil)
			if err != nil {
				t.Fatal(err)
			}

			storage := tok.Storage()
			if err := f.apply(storage); err != nil {
				t.Fatal(err)
			}
			undone := false
			t.Cleanup(func() {
				if !undone {
					f.undo(storage)
				}
			})
			var slowest time.Duration
			took := waitFor(t, 30*time.Second, "create-key and rotate answering 503 and /readyz agreeing with decrypt", func() bool {
				_, errC := c.CreateKey(ctx, client.CreateKeyRequest{})
				_, errR := c.RotateKey(ctx, k.KeyID)
				_, errE := c.Encrypt(ctx, k.KeyID, []byte("x"), nil)
				retryable(t, "create-key", errC)
				retryable(t, "rotate", errR)
				retryable(t, "encrypt", errE)
				decrypts := retryable(t, "decrypt", func() error { _, err := c.Decrypt(ctx, enc.CiphertextBlob, nil, ""); return err }())
				status, d := readyz(t, p.url)
				slowest = max(slowest, d)
				return errC != nil && errR != nil && (status == http.StatusOK) == decrypts
			})
			t.Logf("fault seen in %s; slowest /readyz %s", took.Round(time.Millisecond), slowest.Round(time.Millisecond))
			if slowest > 5*time.Second {
				t.Errorf("/readyz took %s during the fault", slowest)
			}

			if err := f.undo(storage); err != nil {
				t.Fatal(err)
			}
			undone = true
			took = waitFor(t, 30*time.Second, "recovery once the storage is back", func() bool {
				status, _ := readyz(t, p.url)
				d, errD := c.Decrypt(ctx, enc.CiphertextBlob, nil, "")
				_, errE := c.Encrypt(ctx, k.KeyID, []byte("x"), nil)
				_, errC := c.CreateKey(ctx, client.CreateKeyRequest{})
				_, errR := c.RotateKey(ctx, k.KeyID)
				for what, err := range map[string]error{"decrypt": errD, "encrypt": errE, "create-key": errC, "rotate": errR} {
					retryable(t, what, err)
				}
				return status == http.StatusOK && errD == nil && string(d.Plaintext) == "made before the fault" &&
					errE == nil && errC == nil && errR == nil
			})
			t.Logf("recovered %s after the storage came back, without a restart", took.Round(time.Millisecond))
			if strings.Contains(p.log(), `"internal error"`) {
				t.Errorf("kmsd logged internal errors during the fault:\n%s", p.log())
			}
			p.stop(t)
		})
	}
}
