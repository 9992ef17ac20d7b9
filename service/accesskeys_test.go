package service_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

// The MAC key has no row, like the audit seal key: the reconciler, even
// allowed to destroy unknown objects, leaves it, and access keys keep
// working after it ran.
func TestReconcilerLeavesTheMACKey(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{Config: service.Config{DestroyUnknownObjects: true}})
	ctx := kmstest.Ctx(t)
	k, err := s.Service.Access.CreateAccessKey(ctx, service.AdminPrincipal)
	if err != nil {
		t.Fatal(err)
	}
	kmstest.Secret(k.Secret)
	rep, err := s.Service.Worker.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	label := hsm.ObjectRef{KeyID: service.MACKeyID, Version: 1}.Label()
	if slices.Contains(rep.UnknownObjects, label) || rep.ObjectsDestroyed != 0 {
		t.Fatalf("reconciler report %+v touches the MAC key", rep)
	}
	check := func(secret []byte) error {
		if string(secret) != k.Secret {
			return errors.New("secret differs")
		}
		return nil
	}
	if _, err := s.Service.Access.AuthenticateAccessKey(ctx, k.ID, check); err != nil {
		t.Fatalf("access key after the reconciler: %v", err)
	}
}
