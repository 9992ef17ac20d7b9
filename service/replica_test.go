package service_test

import (
	"errors"
	"testing"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

// Two services on one store (two replicas): right after B rotates a key, A
// still holds the old primary in its cache, whose token object B has just
// made decrypt-only. A's encrypt must notice, re-read the key, and use the
// new primary, not fail.
func TestEncryptAfterAnotherReplicaRotated(t *testing.T) {
	st := kmstest.Store(t)
	a := kmstest.Start(t, kmstest.Options{Store: st, Config: service.Config{CacheTTL: 1 << 40}})
	b := kmstest.Start(t, kmstest.Options{Store: st})
	ctx := kmstest.Ctx(t)
	k, err := a.Service.Keys.CreateKey(ctx, service.CreateKeyInput{Alias: "alias/shared"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := a.Service.Crypto.Encrypt(ctx, "alias/shared", []byte("before"), nil); err != nil || r.KeyVersion != 1 {
		t.Fatalf("encrypt on A before: %v %+v", err, r)
	}
	if _, err := b.Service.Worker.RotateKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	r, err := a.Service.Crypto.Encrypt(ctx, "alias/shared", []byte("after"), nil)
	if err != nil || r.KeyVersion != 2 {
		t.Fatalf("encrypt on A after B rotated: %v %+v, want version 2", err, r)
	}
	if d, err := b.Service.Crypto.Decrypt(ctx, r.Ciphertext, nil, ""); err != nil || string(d.Plaintext) != "after" {
		t.Fatalf("decrypt on B: %v", err)
	}
}

// The token not showing a version the store knows (another replica's new
// object, not yet visible here) is retried; if it stays missing the answer
// is a retryable KeyUnavailable, not an internal error.
func TestTokenObjectNotYetVisible(t *testing.T) {
	ft := kmstest.NewFaultToken(kmstest.Token(t))
	s := kmstest.Start(t, kmstest.Options{Token: ft})
	ctx := kmstest.Ctx(t)
	if _, err := s.Service.Keys.CreateKey(ctx, service.CreateKeyInput{Alias: "alias/late"}); err != nil {
		t.Fatal(err)
	}
	ft.FailNext("Encrypt", hsm.ErrObjectNotFound)
	ft.FailNext("Encrypt", hsm.ErrObjectNotFound)
	r, err := s.Service.Crypto.Encrypt(ctx, "alias/late", []byte("x"), nil)
	if err != nil {
		t.Fatalf("encrypt after two misses: %v", err)
	}
	for i := 0; i < 5; i++ {
		ft.FailNext("Decrypt", hsm.ErrObjectNotFound)
	}
	if _, err := s.Service.Crypto.Decrypt(ctx, r.Ciphertext, nil, ""); !errors.Is(err, service.ErrUnavailable) {
		t.Fatalf("decrypt with the object missing for good: %v, want ErrUnavailable", err)
	}
}
