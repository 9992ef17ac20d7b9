package client

import (
	"context"
	"net/http"
)

// Encrypt seals plaintext under a key (id or alias).
func (c *Client) Encrypt(ctx context.Context, keyID string, plaintext []byte, encCtx map[string]string) (*EncryptResult, error) {
	body := struct {
		KeyID             string            `json:"key_id"`
		Plaintext         []byte            `json:"plaintext"`
		EncryptionContext map[string]string `json:"encryption_context,omitempty"`
	}{keyID, plaintext, encCtx}
	var r EncryptResult
	return &r, c.Do(ctx, http.MethodPost, "/v1/encrypt", body, &r)
}

// Decrypt opens a blob; keyID is optional and must be the blob's key.
func (c *Client) Decrypt(ctx context.Context, blob []byte, encCtx map[string]string, keyID string) (*DecryptResult, error) {
	body := struct {
		CiphertextBlob    []byte            `json:"ciphertext_blob"`
		EncryptionContext map[string]string `json:"encryption_context,omitempty"`
		KeyID             string            `json:"key_id,omitempty"`
	}{blob, encCtx, keyID}
	var r DecryptResult
	return &r, c.Do(ctx, http.MethodPost, "/v1/decrypt", body, &r)
}

// GenerateDataKey returns a data key in plaintext and encrypted.
func (c *Client) GenerateDataKey(ctx context.Context, req DataKeyRequest) (*DataKey, error) {
	var r DataKey
	return &r, c.Do(ctx, http.MethodPost, "/v1/generate-data-key", req, &r)
}

// GenerateDataKeyWithoutPlaintext returns a data key only encrypted.
func (c *Client) GenerateDataKeyWithoutPlaintext(ctx context.Context, req DataKeyRequest) (*DataKey, error) {
	var r DataKey
	return &r, c.Do(ctx, http.MethodPost, "/v1/generate-data-key-without-plaintext", req, &r)
}

// ReEncryptRequest is the body of ReEncrypt.
type ReEncryptRequest struct {
	CiphertextBlob               []byte            `json:"ciphertext_blob"`
	SourceEncryptionContext      map[string]string `json:"source_encryption_context,omitempty"`
	DestinationKeyID             string            `json:"destination_key_id"`
	DestinationEncryptionContext map[string]string `json:"destination_encryption_context,omitempty"`
}

// ReEncrypt moves a blob to another key or context without revealing the plaintext.
func (c *Client) ReEncrypt(ctx context.Context, req ReEncryptRequest) (*ReEncryptResult, error) {
	var r ReEncryptResult
	return &r, c.Do(ctx, http.MethodPost, "/v1/re-encrypt", req, &r)
}

// GenerateRandom returns n random bytes from the token.
func (c *Client) GenerateRandom(ctx context.Context, n int) ([]byte, error) {
	var r struct {
		Plaintext []byte `json:"plaintext"`
	}
	err := c.Do(ctx, http.MethodPost, "/v1/generate-random", map[string]int{"number_of_bytes": n}, &r)
	return r.Plaintext, err
}
