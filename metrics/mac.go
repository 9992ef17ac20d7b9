package metrics

import (
	"context"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
)

// Token operation label values of the optional MAC capability.
const (
	opGenerateMACKey = "generate_mac_key"
	opHMAC           = "hmac"
)

var _ hsm.MAC = (*instrumentedToken)(nil)

// GenerateMACKey forwards to the wrapped token's MAC capability (hsm.ErrNoMAC
// when it has none).
func (t *instrumentedToken) GenerateMACKey(ctx context.Context, ref hsm.ObjectRef) error {
	m, ok := t.Token.(hsm.MAC)
	if !ok {
		return hsm.ErrNoMAC
	}
	start := time.Now()
	err := m.GenerateMACKey(ctx, ref)
	t.observe(opGenerateMACKey, start, err)
	return err
}

// HMACSHA256 forwards to the wrapped token's MAC capability.
func (t *instrumentedToken) HMACSHA256(ctx context.Context, ref hsm.ObjectRef, data []byte) ([]byte, error) {
	m, ok := t.Token.(hsm.MAC)
	if !ok {
		return nil, hsm.ErrNoMAC
	}
	start := time.Now()
	out, err := m.HMACSHA256(ctx, ref, data)
	t.observe(opHMAC, start, err)
	return out, err
}
