package store

import (
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

func TestAccessKeyCRUD(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertPrincipals(t, s, "alice", "bob")
		keys := []*service.AccessKey{
			{ID: "AKIALATE", Principal: "alice", Nonce: "n1", CreatedAt: at(time.Hour)},
			{ID: "AKIAB", Principal: "alice", Nonce: "n2", CreatedAt: t0},
			{ID: "AKIAA", Principal: "alice", Nonce: "n3", CreatedAt: t0},
			{ID: "AKIABOB", Principal: "bob", Nonce: "n4", CreatedAt: t0},
		}
		for _, k := range keys {
			noErr(t, s.InsertAccessKey(ctx, k))
		}
		stored := func(k *service.AccessKey) service.AccessKey {
			c := *k
			c.CreatedAt, c.LastUsedAt = us(c.CreatedAt), usPtr(c.LastUsedAt)
			return c
		}
		got, err := s.GetAccessKey(ctx, "AKIAB")
		noErr(t, err)
		deepEqual(t, "GetAccessKey", *got, stored(keys[1]))
		list, err := s.ListAccessKeys(ctx, "alice")
		noErr(t, err)
		deepEqual(t, "ListAccessKeys", list, []service.AccessKey{stored(keys[2]), stored(keys[1]), stored(keys[0])})
		none, err := s.ListAccessKeys(ctx, "nobody")
		noErr(t, err)
		deepEqual(t, "ListAccessKeys nobody", none, []service.AccessKey{})

		// Bad inputs change nothing.
		wantErr(t, s.InsertAccessKey(ctx, &service.AccessKey{ID: "AKIAB", Principal: "bob", Nonce: "x", CreatedAt: t0}),
			service.ErrAlreadyExists, `access key "AKIAB"`)
		wantErr(t, s.InsertAccessKey(ctx, &service.AccessKey{ID: "AKIANEW", Principal: "nobody", Nonce: "x", CreatedAt: t0}),
			service.ErrNotFound, `principal "nobody"`)
		_, err = s.GetAccessKey(ctx, "AKIANEW")
		wantErr(t, err, service.ErrNotFound, `access key "AKIANEW"`)
		wantErr(t, s.DeleteAccessKey(ctx, "AKIAMISSING"), service.ErrNotFound, `access key "AKIAMISSING"`)
		got, err = s.GetAccessKey(ctx, "AKIAB")
		noErr(t, err)
		deepEqual(t, "unchanged", *got, stored(keys[1]))

		// Touch: set when unset; not again before notAfter; again after it.
		noErr(t, s.TouchAccessKey(ctx, "AKIAB", at(time.Minute), at(0)))
		noErr(t, s.TouchAccessKey(ctx, "AKIAB", at(90*time.Second), at(0)))
		got, _ = s.GetAccessKey(ctx, "AKIAB")
		deepEqual(t, "touched once", got.LastUsedAt, ptr(us(at(time.Minute))))
		noErr(t, s.TouchAccessKey(ctx, "AKIAB", at(3*time.Minute), at(2*time.Minute)))
		got, _ = s.GetAccessKey(ctx, "AKIAB")
		deepEqual(t, "touched again", got.LastUsedAt, ptr(us(at(3*time.Minute))))
		noErr(t, s.TouchAccessKey(ctx, "AKIAGONE", at(time.Minute), at(0)))

		noErr(t, s.DeleteAccessKey(ctx, "AKIAB"))
		_, err = s.GetAccessKey(ctx, "AKIAB")
		wantErr(t, err, service.ErrNotFound, "")
		// Deleting the principal deletes its keys.
		noErr(t, s.DeletePrincipal(ctx, "bob"))
		_, err = s.GetAccessKey(ctx, "AKIABOB")
		wantErr(t, err, service.ErrNotFound, "")
	})
}
