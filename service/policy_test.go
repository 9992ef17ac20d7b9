package service

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/policy"
)

// policy depends on nothing, so it spells the service's actions, states and
// origins as plain strings; this test ties each to the service's constant,
// so neither can be renamed or added alone.
func TestPolicyStringsAreTheServiceConstants(t *testing.T) {
	actions := actionConstants(t)
	if got, want := slices.Sorted(slices.Values(policy.Actions)), slices.Sorted(slices.Values(actions)); !slices.Equal(got, want) {
		t.Errorf("policy.Actions = %v\nthe service's actions = %v", got, want)
	}
	for _, tc := range []struct{ policy, service string }{
		{policy.StateEnabled, string(KeyEnabled)},
		{policy.StateDisabled, string(KeyDisabled)},
		{policy.StatePendingDeletion, string(KeyPendingDeletion)},
		{policy.StatePendingImport, string(KeyPendingImport)},
		{policy.StateDeleted, string(KeyDeleted)},
		{policy.StateCreating, string(KeyCreating)},
		{policy.OriginExternal, string(OriginExternal)},
		{policy.VersionPending, string(VersionPending)},
		{policy.VersionPrimary, string(VersionPrimary)},
		{policy.VersionDecryptOnly, string(VersionDecryptOnly)},
		{policy.VersionDisabled, string(VersionDisabled)},
		{policy.VersionPendingDestruction, string(VersionPendingDestruction)},
		{policy.VersionDestroyed, string(VersionDestroyed)},
	} {
		if tc.policy != tc.service {
			t.Errorf("policy spells %q, the service %q", tc.policy, tc.service)
		}
	}
}

// actionConstants reads the values of the package's Act* constants from its
// source, so that a new action cannot be added without policy knowing it.
// ActAuditSeal and ActAuditSealKey are the system's own records of a seal
// and of the seal key's claim, which no policy grants.
func actionConstants(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	var out []string
	for _, name := range mustGlob(t, "*.go") {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, id := range vs.Names {
				if !strings.HasPrefix(id.Name, "Act") || id.Name == "ActAuditSeal" || id.Name == "ActAuditSealKey" || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, _ := strconv.Unquote(lit.Value)
					out = append(out, v)
				}
			}
			return true
		})
	}
	if len(out) < 30 {
		t.Fatalf("found only %d action constants: %v", len(out), out)
	}
	return out
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	names, err := filepath.Glob(pattern)
	if err != nil || len(names) == 0 {
		t.Fatalf("glob %s: %v %v", pattern, names, err)
	}
	return names
}
