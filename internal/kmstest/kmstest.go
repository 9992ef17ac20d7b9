// Package kmstest builds real hsmkms stacks for tests: the PKCS#11 token of
// the test binary, a fresh database per test, the service and the REST API
// on 127.0.0.1:0, and a Go client. Nothing is faked but the clock.
package kmstest

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/apispec"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/store"
)

// AdminToken is the bearer token of the test servers' administrator.
const AdminToken = "test-admin-token-0123456789abcdef"

var (
	tokenOnce sync.Once
	token     *hsm.PKCS11
	tokenErr  error
)

// Token returns the test binary's token, opened once and shared by every
// test (one PKCS#11 module instance per process; closing it would finalize
// the module for everyone).
func Token(t testing.TB) *hsm.PKCS11 {
	t.Helper()
	env := softhsmtest.Get(t)
	Secret(env.PIN)
	tokenOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		token, tokenErr = hsm.Open(ctx, HSMConfig(t, env))
	})
	if tokenErr != nil {
		t.Fatalf("open token: %v", tokenErr)
	}
	return token
}

// HSMConfig is the hsm.Config of a test token: its module, initialisation
// arguments, label, PIN and the profile the environment chose.
func HSMConfig(t testing.TB, env *softhsmtest.Env) hsm.Config {
	t.Helper()
	prof, err := hsm.SelectProfile(env.Profile, env.Module)
	if err != nil {
		t.Fatal(err)
	}
	return hsm.Config{Module: env.Module, InitArgs: env.InitArgs, TokenLabel: env.Label, PIN: env.PIN, Profile: prof}
}

// Profile is the vendor profile of the test binary's token: assertions
// that differ between tokens (which BYOK algorithms exist, which
// attributes the token reports truthfully) follow it.
func Profile(t testing.TB) hsm.Profile {
	t.Helper()
	return HSMConfig(t, softhsmtest.Get(t)).Profile
}

// RefusedWrappingAlgorithm is a BYOK wrapping algorithm the test token
// cannot unwrap: one of hsm.WrappingAlgorithmNames it does not offer
// (SoftHSM lacks OAEP with SHA-256), or, on a token that offers them all
// (NSS softoken), AWS's RSAES_PKCS1_V1_5, which no token here unwraps.
func RefusedWrappingAlgorithm(t testing.TB) string {
	t.Helper()
	offered := Token(t).WrappingAlgorithms()
	for _, a := range hsm.WrappingAlgorithmNames {
		if !slices.Contains(offered, a) {
			return a
		}
	}
	return "RSAES_PKCS1_V1_5"
}

// Store opens a fresh database: SQLite in the test's temp dir, or a fresh
// PostgreSQL schema when KMS_TEST_STORE=postgres.
func Store(t testing.TB) *store.DB {
	t.Helper()
	if OnPostgres() {
		return StoreAt(t, PostgresDSN(t))
	}
	return StoreAt(t, "sqlite:"+filepath.Join(t.TempDir(), "kms.db"))
}

// StoreAt opens the database at dsn and closes it when the test ends.
func StoreAt(t testing.TB, dsn string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Options change a stack from its defaults.
type Options struct {
	Token  hsm.Token     // default: the shared SoftHSM token
	Store  service.Store // default: a fresh SQLite database
	Config service.Config
	// AuthLimits bound failed authentication (default: api's defaults).
	AuthLimits api.AuthLimits
}

// Stack is one running hsmkms: service, REST server and client.
type Stack struct {
	Service *service.Service
	Store   service.Store
	Token   hsm.Token
	URL     string
	Client  *client.Client
}

// Start builds a stack and stops it when the test ends.
func Start(t testing.TB, opts Options) *Stack {
	t.Helper()
	s := &Stack{Token: opts.Token, Store: opts.Store}
	if s.Token == nil {
		s.Token = Token(t)
	}
	if s.Store == nil {
		s.Store = Store(t)
	}
	log := Logger()
	if opts.Config.Logger == nil {
		opts.Config.Logger = log
	}
	s.Service = service.New(s.Store, s.Token, opts.Config)
	t.Cleanup(s.Service.Close)
	Secret(AdminToken)
	if _, err := s.Service.Access.Bootstrap(context.Background(), AdminToken); err != nil {
		t.Fatalf("bootstrap the administrator: %v", err)
	}
	e := api.New(api.Config{Service: s.Service, Logger: log, AuthLimits: opts.AuthLimits})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	// Every exchange of the client is checked against the OpenAPI document.
	s.Client = client.New(srv.URL, AdminToken, &http.Client{Transport: apispec.Transport(t, srv.Client().Transport)})
	return s
}

// Logger logs everything (debug level) into the captured log that
// CheckLogs scans, and to stderr when HSMKMS_TEST_LOG is set.
func Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(LogWriter(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Ctx returns a context that ends shortly before the test's deadline. It
// acts as the system (every action allowed): tests of the service that do
// not test authorisation call it directly with this context.
func Ctx(t testing.TB) context.Context {
	t.Helper()
	ctx := service.AsSystem(context.Background())
	if tt, ok := t.(*testing.T); ok {
		if d, ok := tt.Deadline(); ok {
			c, cancel := context.WithDeadline(ctx, d.Add(-5*time.Second))
			t.Cleanup(cancel)
			return c
		}
	}
	c, cancel := context.WithTimeout(ctx, 5*time.Minute)
	t.Cleanup(cancel)
	return c
}
