package store

import (
	"context"
	"errors"
	"testing"

	"github.com/hsmkms/hsmkms/service"
)

func TestCountKeysByState(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		t.Run("empty store", func(t *testing.T) {
			got, err := s.CountKeysByState(ctx)
			noErr(t, err)
			if got == nil || len(got) != 0 {
				t.Errorf("CountKeysByState = %#v, want an empty, non-nil map", got)
			}
		})

		states := map[string]service.KeyState{
			"e1": service.KeyEnabled, "e2": service.KeyEnabled, "e3": service.KeyEnabled,
			"d1": service.KeyDisabled,
			"p1": service.KeyPendingDeletion, "p2": service.KeyPendingDeletion,
			"i1": service.KeyPendingImport,
			"x1": service.KeyDeleted,
			"c1": service.KeyCreating,
		}
		for id, st := range states {
			k := newKey(id)
			k.State = st
			noErr(t, s.InsertKey(ctx, k))
		}
		want := map[service.KeyState]int{
			service.KeyEnabled: 3, service.KeyDisabled: 1, service.KeyPendingDeletion: 2,
			service.KeyPendingImport: 1, service.KeyDeleted: 1, service.KeyCreating: 1,
		}
		t.Run("every state", func(t *testing.T) {
			got, err := s.CountKeysByState(ctx)
			noErr(t, err)
			deepEqual(t, "CountKeysByState", got, want)
		})

		t.Run("follows updates", func(t *testing.T) {
			k, err := s.GetKey(ctx, "e1")
			noErr(t, err)
			k.State = service.KeyDisabled
			noErr(t, s.UpdateKey(ctx, k))
			noErr(t, s.DeleteKey(ctx, "c1"))
			got, err := s.CountKeysByState(ctx)
			noErr(t, err)
			deepEqual(t, "CountKeysByState", got, map[service.KeyState]int{
				service.KeyEnabled: 2, service.KeyDisabled: 2, service.KeyPendingDeletion: 2,
				service.KeyPendingImport: 1, service.KeyDeleted: 1,
			})
		})

		t.Run("inside a transaction sees its own writes", func(t *testing.T) {
			errRollback := errors.New("roll back")
			err := s.InTx(ctx, func(q service.Queries) error {
				if err := q.InsertKey(ctx, newKey("tx1")); err != nil {
					return err
				}
				got, err := q.CountKeysByState(ctx)
				if err != nil {
					return err
				}
				if got[service.KeyEnabled] != 3 {
					t.Errorf("in tx: Enabled = %d, want 3", got[service.KeyEnabled])
				}
				return errRollback
			})
			if !errors.Is(err, errRollback) {
				t.Fatalf("InTx = %v", err)
			}
			got, err := s.CountKeysByState(ctx)
			noErr(t, err)
			if got[service.KeyEnabled] != 2 {
				t.Errorf("after rollback: Enabled = %d, want 2", got[service.KeyEnabled])
			}
		})

		t.Run("cancelled context", func(t *testing.T) {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := s.CountKeysByState(cctx)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("CountKeysByState = %v, want context.Canceled", err)
			}
		})
	})
}
