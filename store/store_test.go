package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/internal/pgtest"
	"github.com/hsmkms/hsmkms/service"
)

// The conformance suite: every test runs on each backend, SQLite always and
// PostgreSQL when KMS_TEST_POSTGRES holds a URL. Each test gets a fresh
// database: a new file on SQLite, a new schema (via search_path) on
// PostgreSQL, so tests are independent and may run in parallel.

// backend makes fresh, empty databases of one dialect.
type backend struct {
	name string
	// dsn returns the DSN of a new, empty database, dropped at cleanup.
	dsn func(t *testing.T) string
}

var backends = []backend{
	{name: "sqlite", dsn: func(t *testing.T) string {
		return "sqlite:" + filepath.Join(t.TempDir(), "kms.db")
	}},
	{name: "postgres", dsn: pgSchemaDSN},
}

func pgSchemaDSN(t *testing.T) string {
	t.Helper()
	return pgtest.SchemaDSN(t, "store_test_")
}

// forEachBackend runs fn as a subtest per backend with a fresh DSN.
func forEachBackend(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b.dsn(t))
		})
	}
}

// eachStore runs fn as a subtest per backend with a fresh, open store.
func eachStore(t *testing.T, fn func(t *testing.T, s *DB)) {
	t.Helper()
	forEachBackend(t, func(t *testing.T, dsn string) {
		fn(t, openStore(t, dsn))
	})
}

// openStore opens dsn and closes it at cleanup.
func openStore(t *testing.T, dsn string) *DB {
	t.Helper()
	s, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// t0 has nanoseconds on purpose: the store keeps microseconds.
var t0 = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }
func ptr[T any](v T) *T            { return &v }

// us is t as the store gives it back: UTC, microseconds.
func us(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func usPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	return ptr(us(*t))
}

// newKey is an Enabled HSM key with rotation off and no optional times.
func newKey(id string) *service.Key {
	return &service.Key{ID: id, Description: "key " + id, State: service.KeyEnabled,
		Origin: service.OriginHSM, KeySpec: service.KeySpecAES256, Manager: service.ManagerCustomer,
		CreatedAt: t0, UpdatedAt: t0, PrimaryVersion: 1}
}

func newVersion(keyID string, v int, state service.VersionState) *service.Version {
	return &service.Version{KeyID: keyID, Version: v, State: state, Origin: service.OriginHSM,
		CreatedAt: at(time.Duration(v) * time.Second), UpdatedAt: at(time.Duration(v) * time.Second),
		TokenLabel: fmt.Sprintf("hsmkms/%s/v%d", keyID, v)}
}

// stored is k as GetKey returns it: times in UTC microseconds, a non-nil tag
// map, whole-second interval, and no aliases.
func stored(k service.Key) service.Key {
	k.CreatedAt, k.UpdatedAt = us(k.CreatedAt), us(k.UpdatedAt)
	k.LastRotation, k.NextRotation, k.DeletionDate = usPtr(k.LastRotation), usPtr(k.NextRotation), usPtr(k.DeletionDate)
	k.RotationAnchor = usPtr(k.RotationAnchor)
	if k.RotationFailure != nil {
		f := *k.RotationFailure
		f.At = us(f.At)
		k.RotationFailure = &f
	}
	k.RotationInterval = k.RotationInterval.Truncate(time.Second)
	if k.Tags == nil {
		k.Tags = map[string]string{}
	}
	k.Aliases = nil
	return k
}

func storedVersion(v service.Version) service.Version {
	v.CreatedAt, v.UpdatedAt, v.DestroyAt = us(v.CreatedAt), us(v.UpdatedAt), usPtr(v.DestroyAt)
	return v
}

// mustInsertKeys inserts keys with the given ids.
func mustInsertKeys(t *testing.T, q service.Queries, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := q.InsertKey(t.Context(), newKey(id)); err != nil {
			t.Fatalf("InsertKey(%s): %v", id, err)
		}
	}
}

// wantErr fails unless err wraps kind and its message names entity.
func wantErr(t *testing.T, err, kind error, entity string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("err = %v, want %v", err, kind)
	}
	if !strings.Contains(err.Error(), entity) {
		t.Errorf("err = %q, want it to name %q", err, entity)
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func deepEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}
