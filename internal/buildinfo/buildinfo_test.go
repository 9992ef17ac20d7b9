package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

// A test binary has build info but no VCS stamp: the version is the
// module's, the commit says it is unknown, the Go version is the runtime's.
func TestGet(t *testing.T) {
	i := Get()
	if i.GoVersion != runtime.Version() {
		t.Errorf("GoVersion %q, want %q", i.GoVersion, runtime.Version())
	}
	if i.Version == "" || i.Commit == "" {
		t.Errorf("empty fields: %+v", i)
	}
	s := i.String("kmsd")
	if !strings.HasPrefix(s, "kmsd "+i.Version+" (commit ") || !strings.Contains(s, runtime.Version()) {
		t.Errorf("String: %q", s)
	}
}

// A version set at link time wins over the build info's.
func TestLinkTimeVersion(t *testing.T) {
	old := version
	defer func() { version = old }()
	version = "v9.8.7"
	if got := Get().Version; got != "v9.8.7" {
		t.Errorf("Version %q with -X version=v9.8.7", got)
	}
}
