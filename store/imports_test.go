package store

import (
	"errors"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

// Import parameters are good once; spent and expired ones are listed for
// the sweep; material records keep their KCV; expired material is found
// only for keys that still hold it.
func TestImportParamsAndMaterial(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		k := newKey("11111111-1111-4111-8111-111111111111")
		k.Origin, k.State = service.OriginExternal, service.KeyPendingImport
		noErr(t, s.InsertKey(ctx, k))
		p := &service.ImportParams{TokenHash: "h1", KeyID: k.ID, WrappingID: "w1", Algorithm: "RSA_AES_KEY_WRAP_SHA_1",
			CreatedAt: at(0), ExpiresAt: at(24 * time.Hour)}
		noErr(t, s.InsertImportParams(ctx, p))
		if err := s.InsertImportParams(ctx, &service.ImportParams{TokenHash: "h2", KeyID: "22222222-2222-4222-8222-222222222222", ExpiresAt: at(0)}); !errors.Is(err, service.ErrNotFound) {
			t.Errorf("params of a missing key: %v", err)
		}
		got, err := s.GetImportParams(ctx, "h1")
		noErr(t, err)
		if got.WrappingID != "w1" || got.UsedAt != nil || !got.ExpiresAt.Equal(at(24*time.Hour).Truncate(time.Microsecond)) {
			t.Errorf("params: %+v", got)
		}
		if expired, err := s.ExpiredImportParams(ctx, at(time.Hour), 10); err != nil || len(expired) != 0 {
			t.Errorf("expired before expiry: %v %v", expired, err)
		}
		noErr(t, s.UseImportParams(ctx, "h1", at(time.Minute)))
		if err := s.UseImportParams(ctx, "h1", at(2*time.Minute)); !errors.Is(err, service.ErrInvalidState) {
			t.Errorf("second use: %v", err)
		}
		if expired, err := s.ExpiredImportParams(ctx, at(24*time.Hour), 10); err != nil || len(expired) != 1 {
			t.Errorf("expired at expires_at: %v %v", expired, err)
		}
		noErr(t, s.DeleteImportParams(ctx, "h1"))
		if _, err := s.GetImportParams(ctx, "h1"); !errors.Is(err, service.ErrNotFound) {
			t.Errorf("deleted params: %v", err)
		}

		if _, err := s.GetKeyMaterial(ctx, k.ID); !errors.Is(err, service.ErrNotFound) {
			t.Errorf("material before import: %v", err)
		}
		validTo := at(48 * time.Hour)
		noErr(t, s.PutKeyMaterial(ctx, &service.KeyMaterial{KeyID: k.ID, KCV: "abcd", ImportedAt: at(0), ValidTo: &validTo}))
		if ids, err := s.ExpiredMaterial(ctx, at(72*time.Hour), 10); err != nil || len(ids) != 0 {
			t.Errorf("expired material of a PendingImport key: %v %v", ids, err)
		}
		k.State = service.KeyEnabled
		noErr(t, s.UpdateKey(ctx, k))
		if ids, err := s.ExpiredMaterial(ctx, at(72*time.Hour), 10); err != nil || len(ids) != 1 || ids[0] != k.ID {
			t.Errorf("expired material: %v %v", ids, err)
		}
		if ids, _ := s.ExpiredMaterial(ctx, at(24*time.Hour), 10); len(ids) != 0 {
			t.Errorf("material not yet expired listed: %v", ids)
		}
		noErr(t, s.PutKeyMaterial(ctx, &service.KeyMaterial{KeyID: k.ID, KCV: "abcd", ImportedAt: at(time.Hour)}))
		m, err := s.GetKeyMaterial(ctx, k.ID)
		noErr(t, err)
		if m.KCV != "abcd" || m.ValidTo != nil {
			t.Errorf("material after replace: %+v", m)
		}
	})
}
