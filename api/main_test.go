package api_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
)

// TestMain runs the suite on a throwaway token, then scans every log line
// the suite produced for plaintexts, tokens and the PIN.
func TestMain(m *testing.M) {
	code := softhsmtest.Run(m)
	if code == 0 && kmstest.LogBytes() > 0 {
		if err := kmstest.CheckLogs(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			code = 1
		}
	}
	os.Exit(code)
}
