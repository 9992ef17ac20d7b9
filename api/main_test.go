package api_test

import (
	"os"
	"testing"

	"github.com/hsmkms/hsmkms/internal/softhsmtest"
)

func TestMain(m *testing.M) { os.Exit(softhsmtest.Run(m)) }
