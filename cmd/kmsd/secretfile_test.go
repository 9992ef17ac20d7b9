package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// setfacl applies spec (setfacl -m syntax) to file; the test skips, with
// the reason, where setfacl or the file system's ACL support is missing.
func setfacl(t *testing.T, file string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("setfacl"); err != nil {
		t.Skip("setfacl is missing: apt-get install acl to run this test")
	}
	out, err := exec.Command("setfacl", append(args, file)...).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not supported") {
			t.Skipf("the file system of %s keeps no POSIX ACLs: %s", file, out)
		}
		t.Fatalf("setfacl %v: %v: %s", args, err, out)
	}
}

// A secret file with a POSIX ACL is judged by the ACL: the shape systemd's
// LoadCredential= gives (owner-only mode, read for the service user
// through the ACL, so stat shows 0440) is accepted; read granted to
// another user, to a group or to others is refused. Without an ACL the
// mode decides, as before.
func TestSecretFileACL(t *testing.T) {
	self := os.Getuid()
	for _, tc := range []struct {
		name string
		mode os.FileMode
		acl  []string // setfacl arguments; none: no ACL
		want string   // part of the error, or "" for accepted
	}{
		{"systemd credential: read for the running user", 0o400, []string{"-m", fmt.Sprintf("u:%d:r", self)}, ""},
		{"another user masked out", 0o400, []string{"-n", "-m", "u:4242:r,m::-"}, ""},
		{"another user", 0o400, []string{"-m", "u:4242:r"}, "readable by user 4242"},
		{"a named group", 0o400, []string{"-m", "g:4242:r"}, "readable by group 4242"},
		{"the owning group", 0o400, []string{"-m", fmt.Sprintf("u:%d:r,g::r", self)}, "readable by its group"},
		{"others", 0o400, []string{"-m", fmt.Sprintf("u:%d:r,o::r", self)}, "readable by others"},
		{"no ACL, private", 0o600, nil, ""},
		{"no ACL, group read", 0o640, nil, "readable by group or others (mode 0640)"},
	} {
		file := filepath.Join(t.TempDir(), "pin")
		if err := os.WriteFile(file, []byte("1234\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(file, tc.mode); err != nil {
			t.Fatal(err)
		}
		if tc.acl != nil {
			setfacl(t, file, tc.acl...)
		}
		err := checkSecretFile("KMS_PIN_FILE", file)
		switch {
		case tc.want == "" && err != nil:
			st, _ := os.Stat(file)
			t.Errorf("%s (mode %04o): refused: %v", tc.name, st.Mode().Perm(), err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "KMS_PIN_FILE: ")):
			t.Errorf("%s: %v, want an error naming KMS_PIN_FILE and %q", tc.name, err, tc.want)
		}
	}
}

// The ACL xattr parser refuses what is not a whole version-2 ACL.
func TestParseACL(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short header", []byte{2, 0}},
		{"version 1", []byte{1, 0, 0, 0}},
		{"half an entry", []byte{2, 0, 0, 0, 1, 0, 6, 0}},
	} {
		if _, err := parseACL(tc.b); err == nil {
			t.Errorf("%s: parsed", tc.name)
		}
	}
	acl, err := parseACL([]byte{2, 0, 0, 0, aclUser, 0, aclRead, 0, 0x92, 0x10, 0, 0})
	if err != nil || len(acl) != 1 || acl[0] != (aclEntry{aclUser, aclRead, 4242}) {
		t.Errorf("one entry: %v %v", acl, err)
	}
	if _, err := readACL(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("readACL of a missing file: %v", err)
	}
}
