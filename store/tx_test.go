package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

// writeAll writes one key with a version, an alias and a rotation through q.
func writeAll(ctx context.Context, q service.Queries, id string) error {
	if err := q.InsertKey(ctx, newKey(id)); err != nil {
		return err
	}
	if err := q.InsertVersion(ctx, newVersion(id, 1, service.VersionPrimary)); err != nil {
		return err
	}
	if err := q.InsertAlias(ctx, newAlias("alias/"+id, id)); err != nil {
		return err
	}
	return q.InsertRotation(ctx, &service.Rotation{KeyID: id, Version: 1, At: t0, Type: service.RotationOnDemand})
}

// wantNothing fails if any row of key id is visible.
func wantNothing(t *testing.T, s *DB, id string) {
	t.Helper()
	ctx := t.Context()
	if _, err := s.GetKey(ctx, id); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("GetKey after rollback: %v", err)
	}
	if _, err := s.GetAlias(ctx, "alias/"+id); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("GetAlias after rollback: %v", err)
	}
	vs, err := s.ListVersions(ctx, id)
	noErr(t, err)
	rs, err := s.ListRotations(ctx, id, 0, 0)
	noErr(t, err)
	if len(vs) != 0 || len(rs) != 0 {
		t.Errorf("after rollback: %d versions, %d rotations", len(vs), len(rs))
	}
}

func TestInTx(t *testing.T) {
	errBoom := errors.New("boom")
	eachStore(t, func(t *testing.T, s *DB) {
		t.Run("commits", func(t *testing.T) {
			noErr(t, s.InTx(t.Context(), func(q service.Queries) error {
				if err := writeAll(t.Context(), q, "committed"); err != nil {
					return err
				}
				// The transaction sees its own writes.
				_, err := q.GetAlias(t.Context(), "alias/committed")
				return err
			}))
			if _, err := s.GetAlias(t.Context(), "alias/committed"); err != nil {
				t.Errorf("after commit: %v", err)
			}
		})
		t.Run("rolls back on error", func(t *testing.T) {
			err := s.InTx(t.Context(), func(q service.Queries) error {
				if err := writeAll(t.Context(), q, "failed"); err != nil {
					return err
				}
				return fmt.Errorf("wrapped: %w", errBoom)
			})
			if !errors.Is(err, errBoom) {
				t.Fatalf("InTx = %v, want fn's error", err)
			}
			wantNothing(t, s, "failed")
		})
		t.Run("returns a domain error as it is", func(t *testing.T) {
			err := s.InTx(t.Context(), func(q service.Queries) error {
				return q.InsertKey(t.Context(), newKey("committed"))
			})
			wantErr(t, err, service.ErrAlreadyExists, `key "committed"`)
		})
		t.Run("rolls back on panic and re-panics", func(t *testing.T) {
			var recovered any
			func() {
				defer func() { recovered = recover() }()
				_ = s.InTx(t.Context(), func(q service.Queries) error {
					if err := writeAll(t.Context(), q, "panicked"); err != nil {
						return err
					}
					panic(errBoom)
				})
			}()
			if recovered != errBoom {
				t.Fatalf("recovered %v, want the original panic value", recovered)
			}
			wantNothing(t, s, "panicked")
			// The writer is free again.
			noErr(t, s.InsertKey(t.Context(), newKey("after-panic")))
		})
		t.Run("rolls back when the context ends", func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			err := s.InTx(ctx, func(q service.Queries) error {
				if err := writeAll(ctx, q, "cancelled"); err != nil {
					return err
				}
				cancel()
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("InTx = %v, want context.Canceled", err)
			}
			wantNothing(t, s, "cancelled")
		})
	})
}

// TestReadsDuringTx: reads through the DB neither block on nor see an open
// transaction (on SQLite they use the reader pool, not the held writer).
func TestReadsDuringTx(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		mustInsertKeys(t, s, "old")
		noErr(t, s.InTx(t.Context(), func(q service.Queries) error {
			if err := q.InsertKey(t.Context(), newKey("new")); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if _, err := s.GetKey(ctx, "old"); err != nil {
				return fmt.Errorf("read of committed row during tx: %w", err)
			}
			if _, err := s.GetKey(ctx, "new"); !errors.Is(err, service.ErrNotFound) {
				return fmt.Errorf("uncommitted row visible outside the tx: %v", err)
			}
			return nil
		}))
	})
}

// TestConcurrentWriters: many goroutines writing at once, in transactions
// and outside them, never see "database is locked" (SQLITE_BUSY) or lose a
// write.
func TestConcurrentWriters(t *testing.T) {
	const writers, perWriter = 8, 50
	eachStore(t, func(t *testing.T, s *DB) {
		mustInsertKeys(t, s, "shared")
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					id := fmt.Sprintf("w%d-%03d", w, i)
					err := s.InTx(t.Context(), func(q service.Queries) error {
						// Read, then write: the pattern that fails under
						// deferred SQLite transactions.
						if _, err := q.GetKey(t.Context(), "shared"); err != nil {
							return err
						}
						return writeAll(t.Context(), q, id)
					})
					if err != nil {
						t.Errorf("InTx %s: %v", id, err)
						return
					}
					// Interleave plain writes and reads outside transactions.
					if _, err := s.ClaimKey(t.Context(), "shared", id, t0, at(time.Second)); err != nil {
						t.Errorf("ClaimKey: %v", err)
						return
					}
					if _, err := s.ListKeys(t.Context(), service.Page{After: id, Limit: 5}); err != nil {
						t.Errorf("ListKeys: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		keys, err := s.ListKeys(t.Context(), service.Page{})
		noErr(t, err)
		if len(keys) != writers*perWriter+1 {
			t.Errorf("%d keys, want %d", len(keys), writers*perWriter+1)
		}
	})
}

// TestSQLiteTwoHandles: two DBs on one file (two processes, in effect) have
// a writer each; they contend for the file lock, and busy_timeout with
// IMMEDIATE transactions must absorb it.
func TestSQLiteTwoHandles(t *testing.T) {
	// Kept small: SQLite's busy handler is not fair, and a long run on a loaded
	// machine can starve one writer past the busy timeout.
	const perHandle, perWriter = 2, 25
	dsn := "sqlite:" + t.TempDir() + "/kms.db"
	handles := []*DB{openStore(t, dsn), openStore(t, dsn)}
	var wg sync.WaitGroup
	for h, s := range handles {
		for w := range perHandle {
			wg.Go(func() {
				for i := range perWriter {
					id := fmt.Sprintf("h%d-w%d-%03d", h, w, i)
					if err := s.InTx(t.Context(), func(q service.Queries) error {
						if _, err := q.ListKeys(t.Context(), service.Page{Limit: 1}); err != nil {
							return err
						}
						return writeAll(t.Context(), q, id)
					}); err != nil {
						t.Errorf("%s: %v", id, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	keys, err := handles[1].ListKeys(t.Context(), service.Page{})
	noErr(t, err)
	if want := len(handles) * perHandle * perWriter; len(keys) != want {
		t.Errorf("%d keys, want %d", len(keys), want)
	}
}

// Two transactions locking two keys in opposite orders deadlock on
// PostgreSQL; it breaks the cycle by failing one, and InTx reports that as
// the retryable Unavailable (a 503), not an internal error. The other
// commits. (SQLite's write transactions are serial: no deadlock.)
func TestDeadlockIsRetryable(t *testing.T) {
	s := openStore(t, pgSchemaDSN(t))
	mustInsertKeys(t, s, "a", "b")
	ctx := t.Context()
	firstLocked := make(chan struct{}, 2)
	both := make(chan struct{})
	run := func(first, second string) error {
		return s.InTx(ctx, func(q service.Queries) error {
			if _, err := q.LockKey(ctx, first); err != nil {
				return err
			}
			firstLocked <- struct{}{}
			<-both
			_, err := q.LockKey(ctx, second)
			return err
		})
	}
	errs := make(chan error, 2)
	go func() { errs <- run("a", "b") }()
	go func() { errs <- run("b", "a") }()
	<-firstLocked
	<-firstLocked
	close(both)
	e1, e2 := <-errs, <-errs
	if (e1 == nil) == (e2 == nil) {
		t.Fatalf("want one transaction to commit and one to fail: %v, %v", e1, e2)
	}
	failed := e1
	if failed == nil {
		failed = e2
	}
	if !errors.Is(failed, service.ErrUnavailable) {
		t.Fatalf("the deadlock victim: %v, want ErrUnavailable", failed)
	}
}
