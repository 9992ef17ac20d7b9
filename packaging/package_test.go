// Package packaging holds the files of the Debian package (make package)
// and the test that builds it and checks what is inside.
package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The package builds, holds the binaries of the commands that exist, the
// hardened unit, the settings file (a conffile, every setting of kmsd in it,
// commented out) with its mode, and the state directory; the binaries
// report the version they were built as; the unit passes systemd-analyze.
func TestDebianPackage(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb is not installed (Debian's dpkg package): cannot inspect the package")
	}
	if testing.Short() {
		t.Skip("-short: building the package takes a while")
	}
	out := t.TempDir()
	cmd := exec.Command("scripts/package.sh", out, "v1.2.3-test")
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/package.sh: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "*.deb"))
	if len(debs) != 1 || !strings.HasPrefix(filepath.Base(debs[0]), "hsmkms_1.2.3+test_") {
		t.Fatalf("packages built: %v", debs)
	}
	deb := debs[0]
	dpkg := func(args ...string) string {
		t.Helper()
		b, err := exec.Command("dpkg-deb", append(args, deb)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg-deb %v: %v\n%s", args, err, b)
		}
		return string(b)
	}
	if got := strings.TrimSpace(dpkg("-f")); !strings.Contains(got, "Package: hsmkms") || !strings.Contains(got, "Version: 1.2.3+test") {
		t.Errorf("control:\n%s", got)
	}

	// Contents: path -> "mode owner/group".
	contents := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(dpkg("-c")), "\n") {
		f := strings.Fields(line)
		contents[strings.TrimSuffix(f[5], "/")] = f[0] + " " + f[1]
	}
	want := map[string]string{
		"./usr/bin/kmsd":                        "-rwxr-xr-x root/root",
		"./usr/bin/kmsctl":                      "-rwxr-xr-x root/root",
		"./usr/lib/systemd/system/kmsd.service": "-rw-r--r-- root/root",
		"./etc/hsmkms":                          "drwxr-x--- root/hsmkms",
		"./etc/hsmkms/kmsd.env":                 "-rw-r----- root/hsmkms",
		"./var/lib/hsmkms":                      "drwx------ hsmkms/hsmkms",
		"./usr/share/doc/hsmkms/operations.md":  "-rw-r--r-- root/root",
	}
	// The Kubernetes plugin ships once its command exists.
	if _, err := os.Stat("../cmd/kms-k8s-plugin"); err == nil {
		want["./usr/bin/kms-k8s-plugin"] = "-rwxr-xr-x root/root"
	} else if _, ok := contents["./usr/bin/kms-k8s-plugin"]; ok {
		t.Error("kms-k8s-plugin packaged without its command")
	}
	for path, mode := range want {
		if got := contents[path]; got != mode {
			t.Errorf("%s: %q, want %q", path, got, mode)
		}
	}
	if _, ok := contents["./usr/bin/kmsbench"]; ok {
		t.Error("the benchmark is packaged")
	}
	if got := strings.TrimSpace(conffiles(t, deb)); got != "/etc/hsmkms/kmsd.env" {
		t.Errorf("conffiles %q, want /etc/hsmkms/kmsd.env", got)
	}

	root := t.TempDir()
	if b, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, b)
	}
	for _, bin := range []string{"kmsd", "kmsctl"} {
		b, err := exec.Command(filepath.Join(root, "usr/bin", bin), "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(b), bin+" v1.2.3-test (commit ") {
			t.Errorf("%s --version: %v %q", bin, err, b)
		}
	}

	env, _ := os.ReadFile(filepath.Join(root, "etc/hsmkms/kmsd.env"))
	for _, v := range kmsdSettings(t) {
		if !regexp.MustCompile(`(?m)^#` + v + `=`).Match(env) {
			t.Errorf("kmsd.env does not show %s", v)
		}
	}
	if m := regexp.MustCompile(`(?m)^[^#\s].*$`).FindAll(env, -1); len(m) > 0 {
		t.Errorf("kmsd.env sets values (all must be commented out): %q", m)
	}
	if !strings.Contains(string(env), "/etc/hsmkms/pin (owner root, mode\n# 0600") {
		t.Error("kmsd.env does not say where the PIN file is and its mode")
	}

	unit, _ := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/kmsd.service"))
	for _, d := range []string{"User=hsmkms", "ProtectSystem=strict", "NoNewPrivileges=yes", "MemoryDenyWriteExecute=yes",
		"LimitCORE=0", "StateDirectory=hsmkms", "EnvironmentFile=/etc/hsmkms/kmsd.env", "LoadCredential=pin:/etc/hsmkms/pin",
		"Environment=KMS_PIN_FILE=/run/credentials/kmsd.service/pin", "CapabilityBoundingSet=\n", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(string(unit), "\n"+d) {
			t.Errorf("kmsd.service lacks %q", strings.TrimSpace(d))
		}
	}
	for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
		if b, err := exec.Command("sh", "-n", s+".sh").CombinedOutput(); err != nil {
			t.Errorf("%s.sh: %v %s", s, err, b)
		}
	}

	t.Run("systemd-analyze", func(t *testing.T) { analyze(t, root) })
}

// conffiles reads the conffiles member of the package's control archive.
func conffiles(t *testing.T, deb string) string {
	dir := t.TempDir()
	if b, err := exec.Command("dpkg-deb", "-e", deb, dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, b)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "conffiles"))
	return string(b)
}

// kmsdSettings are the variables kmsd reads, from its source.
func kmsdSettings(t *testing.T) []string {
	files, _ := filepath.Glob("../cmd/kmsd/*.go")
	var vars []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, _ := os.ReadFile(f)
		for _, m := range regexp.MustCompile(`"(KMS_[A-Z0-9_]+)"`).FindAllSubmatch(b, -1) {
			if v := string(m[1]); !slices.Contains(vars, v) && v != "KMS_PIN" {
				vars = append(vars, v)
			}
		}
	}
	if len(vars) < 20 {
		t.Fatalf("found only %v in cmd/kmsd", vars)
	}
	return vars
}

// analyze verifies the unit with systemd-analyze in the unpacked package,
// with the host's units beside it (the targets it is ordered against), and
// wants no warning at all and an exposure level below 2.
func analyze(t *testing.T, root string) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed (it is in Debian's systemd package): the unit is not verified")
	}
	units := "/usr/lib/systemd/system"
	if _, err := os.Stat(units); err != nil {
		units = "/lib/systemd/system"
	}
	dst := filepath.Join(root, "usr/lib/systemd/system")
	entries, err := os.ReadDir(units)
	if err != nil {
		t.Skipf("no host units to verify against: %v", err)
	}
	for _, e := range entries {
		if e.Name() == "kmsd.service" {
			continue
		}
		src := filepath.Join(units, e.Name())
		if fi, err := os.Stat(src); err == nil && fi.Mode().IsRegular() {
			b, _ := os.ReadFile(src)
			os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644)
		}
	}
	kill, _ := os.ReadFile("/bin/kill")
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	os.WriteFile(filepath.Join(root, "bin/kill"), kill, 0o755)

	b, err := exec.Command("systemd-analyze", "verify", "--root="+root, "/usr/lib/systemd/system/kmsd.service").CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(b))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, b)
	}
	b, err = exec.Command("systemd-analyze", "security", "--offline=true", "--root="+root, "kmsd.service").CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for kmsd.service: ([0-9.]+)`).FindSubmatch(b)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, b)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level >= 2 {
		t.Errorf("exposure level %.1f, want below 2:\n%s", level, b)
	}
}
