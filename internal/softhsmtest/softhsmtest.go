// Package softhsmtest gives each test binary a throwaway SoftHSM2 token.
//
// SoftHSM reads SOFTHSM2_CONF once, at C_Initialize, and does not see tokens
// initialised after that, so the token is created in TestMain, before any
// test opens the module (research/pkcs11-pitfalls.md, items 27 and 34).
package softhsmtest

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// DefaultModule is Debian's SoftHSM2 module path.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// Env is one throwaway token.
type Env struct {
	Module string // PKCS#11 module path
	Label  string // token label
	PIN    string // user PIN
	Dir    string // holds softhsm2.conf and the token directory
	Conf   string // path of the softhsm2.conf in use
}

var (
	env      *Env
	setupErr error
)

// Runner is what TestMain has: *testing.M, or a wrapper around it.
type Runner interface{ Run() int }

// Run creates the token, runs the tests and removes the token. Call it from
// TestMain: os.Exit(softhsmtest.Run(m)).
func Run(m Runner) int {
	env, setupErr = setup()
	code := m.Run()
	if env != nil {
		os.RemoveAll(env.Dir)
	}
	return code
}

// Get returns the token of this test binary. Without SoftHSM it skips the
// test, saying how to enable it, except under CI, where it fails.
func Get(t testing.TB) *Env {
	t.Helper()
	if setupErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("SoftHSM2 token: %v", setupErr)
		}
		t.Skipf("SoftHSM2 token unavailable (%v); run `make test`, which installs softhsm2", setupErr)
	}
	if env == nil {
		t.Fatal("softhsmtest.Get called without softhsmtest.Run in TestMain")
	}
	return env
}

func setup() (*Env, error) {
	module := os.Getenv("KMS_PKCS11_MODULE")
	if module == "" {
		module = DefaultModule
	}
	if _, err := os.Stat(module); err != nil {
		return nil, fmt.Errorf("module %s not found", module)
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		return nil, fmt.Errorf("softhsm2-util not found")
	}
	// tmpfs makes token writes ~50x faster than a VM disk (pitfalls item 29).
	base := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "hsmkms-test-")
	if err != nil {
		return nil, err
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, err
	}
	e := &Env{Module: module, Label: "hsmkms-test", PIN: "test-user-pin", Dir: dir, Conf: conf}
	cmd := exec.Command(util, "--init-token", "--free", "--label", e.Label, "--pin", e.PIN, "--so-pin", "test-so-pin")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("softhsm2-util --init-token: %v: %s", err, out)
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return nil, err
	}
	return e, nil
}

// ExtraToken initialises another token, labelled label plus a random suffix, beside the test
// binary's one (same SoftHSM configuration): for a test that must own every
// object of its token. Call it before this process opens the module: a
// PKCS#11 module sees the slots that existed when it was initialised.
func ExtraToken(t testing.TB, label string) *Env {
	t.Helper()
	base := Get(t)
	e := *base
	var suffix [3]byte
	_, _ = rand.Read(suffix[:])
	e.Label = fmt.Sprintf("%.24s-%x", label, suffix) // labels are unique, and 32 bytes at most
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", e.Label, "--pin", e.PIN, "--so-pin", "test-so-pin")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+e.Conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token %s: %v: %s", e.Label, err, out)
	}
	return &e
}
