package kmstest

import (
	"context"

	"github.com/hsmkms/hsmkms/hsm"
)

var _ hsm.MAC = (*FaultToken)(nil)

// GenerateMACKey forwards to the real token's MAC capability; FailNext
// ("GenerateMACKey") fails it.
func (f *FaultToken) GenerateMACKey(ctx context.Context, ref hsm.ObjectRef) error {
	if err := f.fault("GenerateMACKey"); err != nil {
		return err
	}
	m, ok := f.Token.(hsm.MAC)
	if !ok {
		return hsm.ErrNoMAC
	}
	return m.GenerateMACKey(ctx, ref)
}

// HMACSHA256 forwards to the real token's MAC capability; FailNext
// ("HMACSHA256") fails it.
func (f *FaultToken) HMACSHA256(ctx context.Context, ref hsm.ObjectRef, data []byte) ([]byte, error) {
	if err := f.fault("HMACSHA256"); err != nil {
		return nil, err
	}
	m, ok := f.Token.(hsm.MAC)
	if !ok {
		return nil, hsm.ErrNoMAC
	}
	return m.HMACSHA256(ctx, ref, data)
}
