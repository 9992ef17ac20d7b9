package hsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/internal/softhsmtest"
)

// TestOpenErrors: each start-up mistake is one clear error naming it.
func TestOpenErrors(t *testing.T) {
	env := softhsmtest.Get(t)
	notALibrary := filepath.Join(t.TempDir(), "libnot-pkcs11.so")
	if err := os.WriteFile(notALibrary, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"missing module", func(c *Config) { c.Module = "/nonexistent/libpkcs11.so" }, "/nonexistent/libpkcs11.so: no such file or directory"},
		{"relative module path", func(c *Config) { c.Module = "libsofthsm2.so" }, "not an absolute path"},
		{"not a PKCS#11 library", func(c *Config) { c.Module = notALibrary }, "cannot load PKCS#11 module"},
		{"unknown token label", func(c *Config) { c.TokenLabel = "no-such-token" }, `no token labelled "no-such-token"`},
		{"empty PIN", func(c *Config) { c.PIN = "" }, "PIN is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(env)
			tc.edit(&cfg)
			p, err := Open(testCtx(t), cfg)
			if err == nil {
				p.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open = %q, want it to say %q", err, tc.want)
			}
		})
	}
	// The failed Opens left the module usable for everyone else.
	if err := sharedToken(t).Ping(testCtx(t)); err != nil {
		t.Errorf("Ping after failed Opens: %v", err)
	}
}

// TestOpenWrongPIN: a wrong PIN is ErrLogin, without the PIN in the error,
// and is tried once only. SoftHSM answers CKR_USER_ALREADY_LOGGED_IN to any
// PIN while the process is logged in, so nothing else may be open here.
func TestOpenWrongPIN(t *testing.T) {
	env := softhsmtest.Get(t)
	closeShared()
	cfg := config(env)
	cfg.PIN = "wrong-pin-1234"
	p, err := Open(testCtx(t), cfg)
	if err == nil {
		p.Close()
		t.Fatal("Open with a wrong PIN succeeded")
	}
	if !errors.Is(err, ErrLogin) {
		t.Errorf("Open = %v, want ErrLogin", err)
	}
	if strings.Contains(err.Error(), cfg.PIN) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), cfg.PIN) {
		t.Errorf("the error shows the PIN: %v", err)
	}
	if err := sharedToken(t).Ping(testCtx(t)); err != nil {
		t.Errorf("Open with the right PIN afterwards: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Module: "/usr/lib/softhsm/libsofthsm2.so", TokenLabel: "kms", PIN: "1234"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(%v) = %v", ok, err)
	}
	for _, tc := range []struct {
		edit  func(*Config)
		field string
	}{
		{func(c *Config) { c.Module = "" }, "Module"},
		{func(c *Config) { c.Module = "./lib.so" }, "Module"},
		{func(c *Config) { c.InitArgs = "configdir='sql:/x'\x00" }, "InitArgs"},
		{func(c *Config) { c.TokenLabel = "" }, "TokenLabel"},
		{func(c *Config) { c.TokenLabel = strings.Repeat("x", 33) }, "TokenLabel"},
		{func(c *Config) { c.PIN = "" }, "PIN"},
		{func(c *Config) { c.MaxSessions = -1 }, "MaxSessions"},
		{func(c *Config) { c.PoolWaitTimeout = -time.Second }, "PoolWaitTimeout"},
		{func(c *Config) { c.Profile = SoftHSMProfile; c.Profile.GCMIVLength = 8 }, "GCMIVLength"},
		{func(c *Config) { c.Profile = SoftHSMProfile; c.Profile.GCMIVLength = 17 }, "GCMIVLength"},
		{func(c *Config) { c.Profile = SoftHSMProfile; c.Profile.GCMTagBits = 64 }, "GCMTagBits"},
		{func(c *Config) { c.Profile = SoftHSMProfile; c.Profile.GCMTagBits = 96 }, "GCMTagBits"},
		{func(c *Config) { c.Profile = Profile{Name: "custom", GCMIVLength: 12} }, "DecryptFailureCodes"},
	} {
		c := ok
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate(%v) = %v, want an error naming %s", c, err, tc.field)
		}
	}
}

// TestSelectProfile: auto picks the profile from the module's file name;
// an unknown name is an error naming the known ones.
func TestSelectProfile(t *testing.T) {
	for _, tc := range []struct{ name, module, want string }{
		{"auto", "/usr/lib/softhsm/libsofthsm2.so", "softhsm2"},
		{"auto", "/usr/lib/x86_64-linux-gnu/libsoftokn3.so", "nss"},
		{"", "/usr/lib/x86_64-linux-gnu/libsoftokn3.so", "nss"},
		{"auto", "/opt/cloudhsm/lib/libcloudhsm_pkcs11.so", "default"},
		{"softhsm", "/opt/vendor/lib.so", "softhsm2"},
		{"nss", "/opt/vendor/lib.so", "nss"},
		{"generic", "/usr/lib/softhsm/libsofthsm2.so", "default"},
	} {
		p, err := SelectProfile(tc.name, tc.module)
		if err != nil || p.Name != tc.want {
			t.Errorf("SelectProfile(%q, %q) = %q, %v; want %q", tc.name, tc.module, p.Name, err, tc.want)
		}
	}
	if _, err := SelectProfile("luna", "/m.so"); err == nil || !strings.Contains(err.Error(), "softhsm, nss") {
		t.Errorf("SelectProfile(luna) = %v, want an error naming the profiles", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Module: "/m.so", TokenLabel: "kms", PIN: "1234"}.withDefaults()
	if c.MaxSessions != 16 || c.PoolWaitTimeout != 5*time.Second || c.Profile.Name != DefaultProfile.Name ||
		c.Profile.GCMIVLength != 12 || c.Profile.GCMTagBits != 128 {
		t.Errorf("defaults = %v", c)
	}
	for _, code := range DefaultProfile.DecryptFailureCodes {
		if code == 0x05 {
			t.Error("DefaultProfile treats CKR_GENERAL_ERROR as a decryption failure")
		}
	}
}

func TestConfigHidesPIN(t *testing.T) {
	c := Config{Module: "/m.so", TokenLabel: "kms", PIN: "s3cret-pin"}
	for _, s := range []string{c.String(), fmt.Sprintf("%v %+v %#v %s", c, c, c, c)} {
		if strings.Contains(s, "s3cret-pin") {
			t.Errorf("%q shows the PIN", s)
		}
	}
}

// TestClose: Close is idempotent, later calls fail with ErrUnavailable,
// and closing one PKCS11 does not finalize the module under another.
func TestClose(t *testing.T) {
	shared := sharedToken(t)
	ref := generated(t, shared)
	p := openToken(t, nil)
	for i := 0; i < 2; i++ {
		if err := p.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if _, _, err := p.Encrypt(testCtx(t), ref, []byte("x"), nil); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Encrypt after Close = %v, want ErrUnavailable", err)
	}
	resets := shared.Stats().Resets
	if _, _, err := shared.Encrypt(testCtx(t), ref, []byte("x"), nil); err != nil {
		t.Errorf("the other PKCS11 after Close: %v", err)
	}
	if got := shared.Stats().Resets - resets; got != 0 {
		t.Errorf("the other PKCS11 had to recover %d times: Close finalized the module under it", got)
	}
}
