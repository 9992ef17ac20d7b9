package client

import (
	"context"
	"net/http"
	"time"
)

// GetParametersForImport asks for a wrapping public key and an import token.
func (c *Client) GetParametersForImport(ctx context.Context, ref, algorithm string) (*ImportParameters, error) {
	var p ImportParameters
	body := map[string]string{"wrapping_algorithm": algorithm, "wrapping_key_spec": "RSA_3072"}
	return &p, c.Do(ctx, http.MethodPost, keyPath(ref)+"/import-parameters", body, &p)
}

// ImportKeyMaterial imports wrapped key material; validTo may be nil.
func (c *Client) ImportKeyMaterial(ctx context.Context, ref, importToken string, wrapped []byte, validTo *time.Time) (*Key, error) {
	body := struct {
		ImportToken          string     `json:"import_token"`
		EncryptedKeyMaterial []byte     `json:"encrypted_key_material"`
		ValidTo              *time.Time `json:"valid_to,omitempty"`
	}{importToken, wrapped, validTo}
	var k Key
	return &k, c.Do(ctx, http.MethodPost, keyPath(ref)+"/import", body, &k)
}

// DeleteImportedKeyMaterial destroys a key's imported material.
func (c *Client) DeleteImportedKeyMaterial(ctx context.Context, ref string) (*Key, error) {
	var k Key
	return &k, c.Do(ctx, http.MethodDelete, keyPath(ref)+"/key-material", nil, &k)
}
