package api

import (
	"time"

	"github.com/hsmkms/hsmkms/policy"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/wire"
)

// KeyUsage is the only usage of a key.
const KeyUsage = "ENCRYPT_DECRYPT"

// keyResponse is k as the API shows it, with what only the service knows
// (the on-demand rotations left).
func (h *handlers) keyResponse(k *service.Key) wire.Key {
	r := keyResponse(k)
	r.OnDemandRotationsRemaining = h.svc.Keys.OnDemandRotationsRemaining(k)
	return r
}

func failureResponse(f *service.RotationFailure) *wire.RotationFailure {
	if f == nil {
		return nil
	}
	return &wire.RotationFailure{Date: f.At.UTC(), Message: f.Message}
}

func keyResponse(k *service.Key) wire.Key {
	r := wire.Key{
		KeyID: k.ID, Description: k.Description, Aliases: k.Aliases, KeyState: string(k.State),
		Origin: string(k.Origin), KeySpec: k.KeySpec, KeyUsage: KeyUsage, KeyManager: string(k.Manager),
		CreationDate:        k.CreatedAt.UTC(),
		PrimaryKeyVersion:   k.PrimaryVersion,
		AutomaticRotation:   policy.RotationStatus(k.RotationEnabled, string(k.State), string(k.Origin)),
		RotationInterval:    service.FormatDuration(k.RotationInterval),
		LastRotationDate:    utc(k.LastRotation),
		DeletionDate:        utc(k.DeletionDate),
		Tags:                k.Tags,
		LastRotationFailure: failureResponse(k.RotationFailure),
	}
	if r.AutomaticRotation == policy.RotationStatusEnabled {
		r.NextRotationDate = utc(k.NextRotation)
	}
	if r.Aliases == nil {
		r.Aliases = []string{}
	}
	if r.Tags == nil {
		r.Tags = map[string]string{}
	}
	return r
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

type aliasRequest struct {
	AliasName   string `json:"alias_name"`
	TargetKeyID string `json:"target_key_id"`
}

type updateAliasRequest struct {
	TargetKeyID string `json:"target_key_id"`
}

func aliasResponse(a *service.Alias) wire.Alias {
	return wire.Alias{AliasName: a.Name, TargetKeyID: a.KeyID,
		CreationDate: a.CreatedAt.UTC(), LastUpdatedDate: a.UpdatedAt.UTC()}
}

type encryptRequest struct {
	KeyID             string            `json:"key_id"`
	Plaintext         *string           `json:"plaintext"`
	EncryptionContext map[string]string `json:"encryption_context"`
}

type decryptRequest struct {
	CiphertextBlob    *string           `json:"ciphertext_blob"`
	EncryptionContext map[string]string `json:"encryption_context"`
	KeyID             string            `json:"key_id"`
}

type reEncryptRequest struct {
	CiphertextBlob               *string           `json:"ciphertext_blob"`
	SourceEncryptionContext      map[string]string `json:"source_encryption_context"`
	DestinationKeyID             string            `json:"destination_key_id"`
	DestinationEncryptionContext map[string]string `json:"destination_encryption_context"`
}

type randomRequest struct {
	NumberOfBytes int `json:"number_of_bytes"`
}

type randomResponse struct {
	Plaintext wire.Base64 `json:"plaintext"`
}
