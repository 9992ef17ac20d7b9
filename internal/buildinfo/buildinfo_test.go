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

// A version and commit set at link time win over the build info's.
func TestLinkTimeVersion(t *testing.T) {
	oldV, oldC := version, commit
	defer func() { version, commit = oldV, oldC }()
	version, commit = "v9.8.7", "0123abc"
	if got := Get(); got.Version != "v9.8.7" || got.Commit != "0123abc" {
		t.Errorf("%+v with -X version=v9.8.7 -X commit=0123abc", got)
	}
}
