package main

import (
	"context"
	"errors"
	"fmt"
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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
	"github.com/hsmkms/hsmkms/service"
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

// pgCluster is a throwaway PostgreSQL cluster of this test alone
// (scripts/pg-test.sh), since stopping the shared one would stop every
// other test of the run.
type pgCluster struct {
	dir, url string
}

// startPostgres starts a cluster, stopped when the test ends. Without
// PostgreSQL the test is skipped, except under CI.
func startPostgres(t *testing.T) *pgCluster {
	t.Helper()
	dir, err := os.MkdirTemp("", "kmsd-hung-pg-")
	if err != nil {
		t.Fatal(err)
	}
	script, _ := filepath.Abs("../../scripts/pg-test.sh")
	out, err := exec.Command(script, "start", dir).Output()
	if err != nil {
		os.RemoveAll(dir)
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		if os.Getenv("CI") != "" {
			t.Fatalf("pg-test.sh start: %v\n%s", err, stderr)
		}
		t.Skipf("PostgreSQL unavailable (%v: %s); make test installs it", err, strings.TrimSpace(string(stderr)))
	}
	pg := &pgCluster{dir: dir, url: strings.TrimSpace(string(out))}
	t.Cleanup(func() {
		pg.signal(t, syscall.SIGCONT) // always: a stopped cluster cannot stop
		if b, err := exec.Command(script, "stop", dir).CombinedOutput(); err != nil {
			t.Errorf("pg-test.sh stop: %v\n%s", err, b)
		}
	})
	return pg
}

// pids are the cluster's postmaster (from postmaster.pid in its data
// directory) and its children, found by their parent in /proc.
func (pg *pgCluster) pids(t *testing.T) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(pg.dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatalf("postmaster.pid: %v", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pm, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		t.Fatalf("postmaster.pid: %q", first)
	}
	pids := []int{pm}
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		stat, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		i := strings.LastIndexByte(string(stat), ')')
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pm) {
			pid, _ := strconv.Atoi(strings.Fields(string(stat))[0])
			pids = append(pids, pid)
		}
	}
	return pids
}

// signal sends sig to every process of the cluster; the postmaster
// first, so that it forks no new backend meanwhile.
func (pg *pgCluster) signal(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	pids := pg.pids(t)
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && err != syscall.ESRCH {
			t.Errorf("kill -%d %d: %v", sig, pid, err)
		}
	}
	return len(pids)
}

// TestHungDatabase: with every PostgreSQL process stopped (SIGSTOP: the
// database answers neither with data nor with an error), every request,
// its audit write included, answers KeyUnavailableException within a
// bound (2 × KMS_DB_TIMEOUT for the data path, its own KMS_DB_TIMEOUT for
// a management change, whatever the 30 s request timeout), /readyz says
// not ready within 2 s, and once the database resumes everything works
// again by itself, the audit trail intact.
func TestHungDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pg := startPostgres(t)
	const dbTimeout = 2 * time.Second
	p := startKmsd(t, append(kmsdEnv(t, pg.url), "KMS_DB_TIMEOUT="+dbTimeout.String(),
		"KMS_AWS_REGION=eu-west-1", "KMS_AWS_ACCOUNT_ID=123456789012"))
	c := client.New(p.url, adminToken, &http.Client{Timeout: 2 * time.Minute})
	k, err := c.CreateKey(ctx, client.CreateKeyRequest{Alias: "alias/hung"})
	if err != nil {
		t.Fatal(err)
	}
	// An access key made before the hang and first used during it: its
	// load (row, secret, principal) is bounded like the other caches'.
	ak, err := c.CreateAccessKey(ctx, "admin")
	if err != nil {
		t.Fatal(err)
	}
	kmstest.Secret(ak.SecretAccessKey)
	awsc := kms.New(kms.Options{Region: "eu-west-1", BaseEndpoint: aws.String(p.url),
		Credentials: credentials.NewStaticCredentialsProvider(ak.AccessKeyID, ak.SecretAccessKey, ""),
		Retryer:     aws.NopRetryer{}})
	enc, err := c.Encrypt(ctx, "alias/hung", []byte("before the hang"), nil)
	if err != nil {
		t.Fatal(err)
	}

	n := pg.signal(t, syscall.SIGSTOP)
	t.Logf("stopped %d PostgreSQL processes", n)
	ops := map[string]func() error{
		"encrypt (warm caches)": func() error { _, err := c.Encrypt(ctx, "alias/hung", []byte("x"), nil); return err },
		"decrypt":               func() error { _, err := c.Decrypt(ctx, enc.CiphertextBlob, nil, ""); return err },
		"describe":              func() error { _, err := c.DescribeKey(ctx, k.KeyID); return err },
		"generate data key": func() error {
			_, err := c.GenerateDataKey(ctx, client.DataKeyRequest{KeyID: k.KeyID, KeySpec: "AES_256"})
			return err
		},
		"create-key": func() error { _, err := c.CreateKey(ctx, client.CreateKeyRequest{}); return err },
		"list keys":  func() error { _, err := c.ListKeys(ctx, 10, ""); return err },
		"AWS Encrypt, access key not yet used": func() error {
			_, err := awsc.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(k.KeyID), Plaintext: []byte("x")})
			return err
		},
		"an unknown bearer token": func() error {
			_, err := client.New(p.url, "not-a-token-of-this-kmsd-0123456789", nil).Encrypt(ctx, k.KeyID, []byte("x"), nil)
			return err
		},
	}
	// Bounds with room for a loaded 2-core machine: the data path waits
	// for at most two database steps (a cache load, the audit group
	// commit ahead of its own and its own), a change for one transaction
	// and its audit record.
	bound := 4*dbTimeout + 10*time.Second
	type result struct {
		name string
		err  error
		took time.Duration
	}
	results := make(chan result, len(ops))
	for name, op := range ops {
		go func() {
			start := time.Now()
			err := op()
			results <- result{name, err, time.Since(start)}
		}()
	}
	// /readyz answers within its check's own bound (ReadyTimeout, 1.5 s;
	// the test allows a loaded machine 3 s more) and not the request
	// timeout's 30 s, and says not ready once its cached answer from
	// before the stop (ReadyCacheTTL) has expired.
	stopped := time.Now()
	for time.Since(stopped) < 4*time.Second {
		asked := time.Now()
		status, took := readyz(t, p.url)
		if limit := service.ReadyTimeout + 3*time.Second; took > limit {
			t.Errorf("/readyz with the database hung took %s, want at most %s", took, limit)
		}
		if asked.Sub(stopped) > service.ReadyCacheTTL && status != http.StatusServiceUnavailable {
			t.Errorf("/readyz %s after the database hung: %d, want 503", asked.Sub(stopped).Round(time.Millisecond), status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for range ops {
		r := <-results
		t.Logf("%s: %s, %v", r.name, r.took.Round(time.Millisecond), errorCode(r.err))
		if want := unavailableCode(r.name); errorCode(r.err) != want || r.took > bound {
			t.Errorf("%s with the database hung: %v after %s, want %s within %s", r.name, r.err, r.took, want, bound)
		}
	}

	pg.signal(t, syscall.SIGCONT)
	took := waitFor(t, 60*time.Second, "recovery once the database resumes", func() bool {
		status, _ := readyz(t, p.url)
		if status != http.StatusOK {
			return false
		}
		for _, op := range ops {
			if err := op(); err != nil && errorCode(err) != "UnauthenticatedException" {
				return false
			}
		}
		return true
	})
	t.Logf("recovered %s after SIGCONT, without a restart", took.Round(time.Millisecond))
	v, err := c.VerifyAudit(ctx)
	if err != nil || !v.Intact {
		t.Fatalf("audit trail after the hang: %+v, %v", v, err)
	}
	p.stop(t)
}

// unavailableCode is the error an operation of TestHungDatabase answers
// while the database hangs: the AWS protocol's name for a 503 is
// DependencyTimeoutException.
func unavailableCode(op string) string {
	if strings.HasPrefix(op, "AWS ") {
		return "DependencyTimeoutException"
	}
	return "KeyUnavailableException"
}

// errorCode is the API error code of err, from our client or the AWS SDK.
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return client.Code(err)
}

// TestReplicasStartTogetherMakeOneSealKey: two replicas started at the
// same instant on one PostgreSQL database and one token, many times, make
// exactly one audit seal key between them (the claim in the database,
// taken under a lock every replica respects), and the trail verifies on
// both.
func TestReplicasStartTogetherMakeOneSealKey(t *testing.T) {
	const rounds = 4
	for round := 1; round <= rounds; round++ {
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			dsn := kmstest.PostgresDSN(t)
			tok := softhsmtest.ExtraToken(t, "seal-race")
			env := append(kmsdEnv(t, dsn), tok.Environ()...)
			// Both start before either is ready: the two seal workers
			// look for the key at the same moment.
			ps := startTogether(t, env, env)
			for i, p := range ps {
				c := client.New(p.url, adminToken, nil)
				if _, err := c.CreateKey(ctx, client.CreateKeyRequest{Description: fmt.Sprintf("made on replica %d", i)}); err != nil {
					t.Fatal(err)
				}
			}
			// Each replica verifies the trail, seals included, once its
			// view of the token shows the seal key (SoftHSM: up to a
			// while after the other replica made it).
			for i, p := range ps {
				c := client.New(p.url, adminToken, nil)
				var v *client.AuditVerification
				waitFor(t, 60*time.Second, fmt.Sprintf("a sealed, intact trail on replica %d", i), func() bool {
					var err error
					v, err = c.VerifyAudit(ctx)
					if err != nil && client.Code(err) != "KeyUnavailableException" {
						t.Fatalf("verify on replica %d: %v", i, err)
					}
					return err == nil && v.Intact && v.Seals > 0
				})
			}
			for _, p := range ps {
				p.stop(t)
			}
			if n := sealKeys(t, tok); n != 1 {
				t.Fatalf("%d audit seal keys in the token, want 1\n%s\n%s", n, ps[0].log(), ps[1].log())
			}
		})
	}
}

// sealKeys counts the audit seal key objects in tok's token.
func sealKeys(t *testing.T, tok *softhsmtest.Env) int {
	n := 0
	for _, o := range inventory(t, tok) {
		if o.Ref.KeyID == service.AuditSealKeyID {
			n++
		}
	}
	return n
}

// inventory lists the objects in tok's token, through a token session of
// this process's own.
func inventory(t *testing.T, tok *softhsmtest.Env) []hsm.ObjectInfo {
	t.Helper()
	prof, err := hsm.SelectProfile(tok.Profile, tok.Module)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := hsm.Open(ctx, hsm.Config{Module: tok.Module, InitArgs: tok.InitArgs, TokenLabel: tok.Label, PIN: tok.PIN, Profile: prof})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	inv, err := p.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}
