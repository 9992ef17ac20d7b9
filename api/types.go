package api

import (
	"time"

	"github.com/hsmkms/hsmkms/policy"
	"github.com/hsmkms/hsmkms/service"
)

// KeyUsage is the only usage of a key.
const KeyUsage = "ENCRYPT_DECRYPT"

// KeyResponse is a key as the API shows it (DescribeKey).
type KeyResponse struct {
	KeyID             string            `json:"key_id"`
	Description       string            `json:"description"`
	Aliases           []string          `json:"aliases"`
	KeyState          string            `json:"key_state"`
	Origin            string            `json:"origin"`
	KeySpec           string            `json:"key_spec"`
	KeyUsage          string            `json:"key_usage"`
	KeyManager        string            `json:"key_manager"`
	CreationDate      time.Time         `json:"creation_date"`
	PrimaryKeyVersion int               `json:"primary_key_version"`
	AutomaticRotation string            `json:"automatic_rotation"`
	RotationInterval  string            `json:"rotation_interval"`
	LastRotationDate  *time.Time        `json:"last_rotation_date,omitempty"`
	NextRotationDate  *time.Time        `json:"next_rotation_date,omitempty"`
	DeletionDate      *time.Time        `json:"deletion_date,omitempty"`
	Tags              map[string]string `json:"tags"`
}

func keyResponse(k *service.Key) KeyResponse {
	r := KeyResponse{
		KeyID: k.ID, Description: k.Description, Aliases: k.Aliases, KeyState: string(k.State),
		Origin: string(k.Origin), KeySpec: k.KeySpec, KeyUsage: KeyUsage, KeyManager: string(k.Manager),
		CreationDate:      k.CreatedAt.UTC(),
		PrimaryKeyVersion: k.PrimaryVersion,
		AutomaticRotation: policy.RotationStatus(k.RotationEnabled, string(k.State), string(k.Origin)),
		RotationInterval:  service.FormatDuration(k.RotationInterval),
		LastRotationDate:  utc(k.LastRotation),
		DeletionDate:      utc(k.DeletionDate),
		Tags:              k.Tags,
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

type createKeyRequest struct {
	Description       string            `json:"description"`
	Alias             string            `json:"alias"`
	Origin            string            `json:"origin"`
	KeySpec           string            `json:"key_spec"`
	AutomaticRotation bool              `json:"automatic_rotation"`
	RotationInterval  string            `json:"rotation_interval"`
	Tags              map[string]string `json:"tags"`
}

type updateKeyRequest struct {
	Description *string           `json:"description"`
	Tags        map[string]string `json:"tags"`
}

type listKeysResponse struct {
	Keys      []KeyResponse `json:"keys"`
	NextToken string        `json:"next_token"`
}

type aliasRequest struct {
	AliasName   string `json:"alias_name"`
	TargetKeyID string `json:"target_key_id"`
}

type updateAliasRequest struct {
	TargetKeyID string `json:"target_key_id"`
}

// AliasResponse is an alias as the API shows it.
type AliasResponse struct {
	AliasName       string    `json:"alias_name"`
	TargetKeyID     string    `json:"target_key_id"`
	CreationDate    time.Time `json:"creation_date"`
	LastUpdatedDate time.Time `json:"last_updated_date"`
}

func aliasResponse(a *service.Alias) AliasResponse {
	return AliasResponse{AliasName: a.Name, TargetKeyID: a.KeyID,
		CreationDate: a.CreatedAt.UTC(), LastUpdatedDate: a.UpdatedAt.UTC()}
}

type listAliasesResponse struct {
	Aliases   []AliasResponse `json:"aliases"`
	NextToken string          `json:"next_token"`
}

type encryptRequest struct {
	KeyID             string            `json:"key_id"`
	Plaintext         *string           `json:"plaintext"`
	EncryptionContext map[string]string `json:"encryption_context"`
}

type encryptResponse struct {
	CiphertextBlob Base64 `json:"ciphertext_blob"`
	KeyID          string `json:"key_id"`
	KeyVersion     int    `json:"key_version"`
}

type decryptRequest struct {
	CiphertextBlob    *string           `json:"ciphertext_blob"`
	EncryptionContext map[string]string `json:"encryption_context"`
	KeyID             string            `json:"key_id"`
}

type decryptResponse struct {
	Plaintext  Base64 `json:"plaintext"`
	KeyID      string `json:"key_id"`
	KeyVersion int    `json:"key_version"`
}

type dataKeyRequest struct {
	KeyID             string            `json:"key_id"`
	KeySpec           string            `json:"key_spec"`
	NumberOfBytes     int               `json:"number_of_bytes"`
	EncryptionContext map[string]string `json:"encryption_context"`
}

type dataKeyResponse struct {
	Plaintext      Base64 `json:"plaintext,omitempty"`
	CiphertextBlob Base64 `json:"ciphertext_blob"`
	KeyID          string `json:"key_id"`
	KeyVersion     int    `json:"key_version"`
}

type reEncryptRequest struct {
	CiphertextBlob               *string           `json:"ciphertext_blob"`
	SourceEncryptionContext      map[string]string `json:"source_encryption_context"`
	DestinationKeyID             string            `json:"destination_key_id"`
	DestinationEncryptionContext map[string]string `json:"destination_encryption_context"`
}

type reEncryptResponse struct {
	CiphertextBlob   Base64 `json:"ciphertext_blob"`
	SourceKeyID      string `json:"source_key_id"`
	SourceKeyVersion int    `json:"source_key_version"`
	KeyID            string `json:"key_id"`
	KeyVersion       int    `json:"key_version"`
}

type randomRequest struct {
	NumberOfBytes int `json:"number_of_bytes"`
}

type randomResponse struct {
	Plaintext Base64 `json:"plaintext"`
}
