// Package softhsmtest gives each test binary a throwaway PKCS#11 token:
// SoftHSM2 by default, NSS softoken when KMS_PKCS11_MODULE names
// libsoftokn3.so, or an existing token named by the environment.
//
// The environment chooses, as it does for kmsd:
//   - KMS_PKCS11_MODULE: the module (default SoftHSM2's). A module named
//     *softokn* gets a fresh NSS database (certutil -N) per test binary,
//     any other a fresh SoftHSM2 token (softhsm2-util --init-token).
//   - KMS_HSM_PROFILE: the vendor profile (default auto, from the module).
//   - KMS_PKCS11_INIT_ARGS, KMS_TOKEN_LABEL and KMS_TEST_PIN, all three
//     set: use that existing token instead of creating one (its objects
//     are the tests'; ExtraToken is then unavailable).
//
// SoftHSM reads SOFTHSM2_CONF once, at C_Initialize, and does not see tokens
// initialised after that, so the token is created in TestMain, before any
// test opens the module (docs/pkcs11-pitfalls.md, items 27 and 34). NSS
// softoken opens the database named by its initialisation arguments.
package softhsmtest

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// DefaultModule is Debian's SoftHSM2 module path.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// NSSModule is Debian's NSS softoken (package libnss3).
const NSSModule = "/usr/lib/x86_64-linux-gnu/libsoftokn3.so"

// Kinds of token.
const (
	SoftHSM  = "softhsm"
	NSS      = "nss"
	External = "external"
)

// Env is one throwaway token.
type Env struct {
	Kind     string // SoftHSM, NSS or External
	Module   string // PKCS#11 module path
	InitArgs string // pReserved of CK_C_INITIALIZE_ARGS (NSS), or ""
	Label    string // token label
	PIN      string // user PIN
	Profile  string // profile name for hsm.SelectProfile (KMS_HSM_PROFILE)
	Dir      string // holds the token's files
	Conf     string // path of the softhsm2.conf in use (SoftHSM only)
}

// Environ is the environment that makes kmsd use this token.
func (e *Env) Environ() []string {
	out := []string{
		"KMS_PKCS11_MODULE=" + e.Module,
		"KMS_PKCS11_INIT_ARGS=" + e.InitArgs,
		"KMS_TOKEN_LABEL=" + e.Label,
		"KMS_HSM_PROFILE=" + e.Profile,
	}
	if e.Conf != "" {
		out = append(out, "SOFTHSM2_CONF="+e.Conf)
	}
	return out
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
	if env != nil && env.Dir != "" {
		os.RemoveAll(env.Dir)
	}
	return code
}

// Get returns the token of this test binary. Without one it skips the
// test, saying how to enable it, except under CI, where it fails.
func Get(t testing.TB) *Env {
	t.Helper()
	if setupErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PKCS#11 test token: %v", setupErr)
		}
		t.Skipf("PKCS#11 test token unavailable (%v); run `make test`, which installs softhsm2 and libnss3-tools", setupErr)
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
	profile := os.Getenv("KMS_HSM_PROFILE")
	if profile == "" {
		profile = "auto"
	}
	e := &Env{Module: module, Label: "hsmkms-test", PIN: "test-user-pin", Profile: profile}
	args, label, pin := os.Getenv("KMS_PKCS11_INIT_ARGS"), os.Getenv("KMS_TOKEN_LABEL"), os.Getenv("KMS_TEST_PIN")
	if label != "" && pin != "" {
		e.Kind, e.InitArgs, e.Label, e.PIN = External, args, label, pin
		return e, nil
	}
	e.Kind = SoftHSM
	if strings.Contains(filepath.Base(module), "softokn") {
		e.Kind = NSS
	}
	if err := e.create(); err != nil {
		return nil, err
	}
	if e.Kind == SoftHSM {
		if err := os.Setenv("SOFTHSM2_CONF", e.Conf); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// create makes a fresh token of e.Kind labelled e.Label in a new directory.
func (e *Env) create() error {
	// tmpfs makes token writes ~50x faster than a VM disk (pitfalls item 29).
	base := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "hsmkms-test-")
	if err != nil {
		return err
	}
	e.Dir = dir
	if e.Kind == NSS {
		err = e.createNSS()
	} else {
		err = e.createSoftHSM()
	}
	if err != nil {
		os.RemoveAll(dir)
	}
	return err
}

func (e *Env) createSoftHSM() error {
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		return fmt.Errorf("softhsm2-util not found")
	}
	tokens := filepath.Join(e.Dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return err
	}
	e.Conf = filepath.Join(e.Dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(e.Conf, []byte(body), 0o600); err != nil {
		return err
	}
	return e.initSoftHSM(util)
}

func (e *Env) initSoftHSM(util string) error {
	cmd := exec.Command(util, "--init-token", "--free", "--label", e.Label, "--pin", e.PIN, "--so-pin", "test-so-pin")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+e.Conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("softhsm2-util --init-token: %v: %s", err, out)
	}
	return nil
}

// createNSS makes an NSS database whose key database token is labelled
// e.Label (dbTokenDescription) and whose password is the PIN.
func (e *Env) createNSS() error {
	util, err := exec.LookPath("certutil")
	if err != nil {
		return fmt.Errorf("certutil not found (apt-get install libnss3-tools)")
	}
	pw := filepath.Join(e.Dir, "pin")
	if err := os.WriteFile(pw, []byte(e.PIN+"\n"), 0o600); err != nil {
		return err
	}
	db := filepath.Join(e.Dir, "nssdb")
	if err := os.Mkdir(db, 0o700); err != nil {
		return err
	}
	if out, err := exec.Command(util, "-N", "-d", "sql:"+db, "-f", pw).CombinedOutput(); err != nil {
		return fmt.Errorf("certutil -N: %v: %s", err, out)
	}
	e.InitArgs = NSSInitArgs(db, e.Label)
	return nil
}

// NSSInitArgs is the C_Initialize argument string of NSS softoken for the
// database in dir, its token labelled label.
func NSSInitArgs(dir, label string) string {
	return fmt.Sprintf("configdir='sql:%s' certPrefix='' keyPrefix='' secmod='secmod.db' flags='' dbTokenDescription='%s'", dir, label)
}

// ExtraToken makes another token, labelled label plus a random suffix,
// beside the test binary's one: for a test that must own every object of
// its token. On SoftHSM it joins the binary's configuration, so call it
// before this process opens the module (a module sees the slots that
// existed at C_Initialize). On NSS softoken it is a database of its own,
// usable by another process (kmsd), or by this one only while it has the
// module open with the extra token's InitArgs alone.
func ExtraToken(t testing.TB, label string) *Env {
	t.Helper()
	base := Get(t)
	e := *base
	var suffix [3]byte
	_, _ = rand.Read(suffix[:])
	e.Label = fmt.Sprintf("%.24s-%x", label, suffix) // labels are unique, and 32 bytes at most
	switch e.Kind {
	case SoftHSM:
		if err := e.initSoftHSM("softhsm2-util"); err != nil {
			t.Fatal(err)
		}
	case NSS:
		if err := e.create(); err != nil {
			t.Fatalf("NSS token %s: %v", e.Label, err)
		}
		t.Cleanup(func() { os.RemoveAll(e.Dir) })
	default:
		t.Skipf("%s token: a second token cannot be made here (unset KMS_TOKEN_LABEL to let the tests create tokens)", e.Kind)
	}
	return &e
}

// IsolatedToken makes a token of the binary's kind in a directory of its
// own (SoftHSM: its own softhsm2.conf and token directory; NSS: its own
// database), removed when the test ends: for a test that hands the token's
// files to another user or breaks them while a kmsd uses it. Storage is
// the directory holding its objects.
func IsolatedToken(t testing.TB, label string) *Env {
	t.Helper()
	e := *Get(t)
	if e.Kind == External {
		t.Skipf("%s token: an isolated token cannot be made here (unset KMS_TOKEN_LABEL to let the tests create tokens)", e.Kind)
	}
	e.Label = label
	if err := e.create(); err != nil {
		t.Fatalf("token %s: %v", label, err)
	}
	t.Cleanup(func() { os.RemoveAll(e.Dir) })
	return &e
}

// Storage is the directory that holds the token's objects: SoftHSM's token
// directory, or NSS softoken's database.
func (e *Env) Storage() string {
	if e.Kind == NSS {
		return filepath.Join(e.Dir, "nssdb")
	}
	return filepath.Join(e.Dir, "tokens")
}
