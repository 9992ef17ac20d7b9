// Package buildinfo says which build of hsmkms is running: the module
// version, the VCS commit and the Go version, all from the build info the
// Go toolchain embeds (runtime/debug), so no release step can forget them.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version and commit may be set at link time (make build does: -ldflags
// "-X .../buildinfo.version=v1.2.3 -X .../buildinfo.commit=abc"), for builds
// without VCS stamping (-buildvcs=false, a source tarball); otherwise the
// build info's module version and vcs.revision are used.
var version, commit string

// Info is one build's identity.
type Info struct {
	Version   string // v1.2.3, or "(devel)" for a build from a checkout
	Commit    string // VCS revision, "+dirty" appended for modified trees; "unknown" without VCS stamping
	GoVersion string // e.g. go1.26.8
}

// Get reads the running binary's build info.
func Get() Info {
	i := Info{Version: version, Commit: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if i.Version == "" {
			i.Version = "(unknown)"
		}
		if commit != "" {
			i.Commit = commit
		}
		return i
	}
	if i.Version == "" {
		i.Version = bi.Main.Version
	}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	if bi.GoVersion != "" {
		i.GoVersion = bi.GoVersion
	}
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Commit = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && i.Commit != "unknown" {
		i.Commit += "+dirty"
	}
	if commit != "" {
		i.Commit = commit
	}
	return i
}

// String is the line --version prints: "kmsd v1.2.3 (commit abc123, go1.26.8)".
func (i Info) String(program string) string {
	return fmt.Sprintf("%s %s (commit %s, %s)", program, i.Version, i.Commit, i.GoVersion)
}
