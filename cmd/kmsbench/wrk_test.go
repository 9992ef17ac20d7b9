package main

import (
	"strings"
	"testing"
)

// -load takes wrk, go or auto; wrk only when wrk is on PATH (auto falls
// back to the Go client, a named wrk must not).
func TestCheckLoadGen(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no wrk
	for _, tc := range []struct{ load, wantErr string }{
		{"go", ""},
		{"auto", ""},
		{"wrk", "-load wrk"},
		{"wrrk", `-load "wrrk": want wrk, go or auto`},
		{"", `-load "": want wrk, go or auto`},
	} {
		loadGen = tc.load
		err := checkLoadGen()
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("-load %q: %v, want %q", tc.load, err, tc.wantErr)
		}
	}
	if useWrk() {
		t.Error("useWrk without wrk on PATH")
	}
}
