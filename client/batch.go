package client

import (
	"context"
	"net/http"
)

// MaxBatchItems is the most items one batch call takes.
const MaxBatchItems = 100

// BatchEncryptItem is one encrypt call of a batch.
type BatchEncryptItem struct {
	KeyID             string            `json:"key_id"`
	Plaintext         []byte            `json:"plaintext"`
	EncryptionContext map[string]string `json:"encryption_context,omitempty"`
}

// BatchDecryptItem is one decrypt call of a batch; KeyID is optional.
type BatchDecryptItem struct {
	CiphertextBlob    []byte            `json:"ciphertext_blob"`
	EncryptionContext map[string]string `json:"encryption_context,omitempty"`
	KeyID             string            `json:"key_id,omitempty"`
}

// BatchEncrypt makes 1 to MaxBatchItems encrypt calls in one request. The
// results are in the items' order; an item's failure is its Error, and the
// error returned is the batch's own (refused whole, or unavailable).
func (c *Client) BatchEncrypt(ctx context.Context, items []BatchEncryptItem) ([]BatchEncryptResult, error) {
	body := struct {
		Items []BatchEncryptItem `json:"items"`
	}{items}
	var r struct {
		Results []BatchEncryptResult `json:"results"`
	}
	if err := c.Do(ctx, http.MethodPost, "/v1/batch/encrypt", body, &r); err != nil {
		return nil, err
	}
	return r.Results, nil
}

// BatchDecrypt makes 1 to MaxBatchItems decrypt calls in one request, as
// BatchEncrypt does.
func (c *Client) BatchDecrypt(ctx context.Context, items []BatchDecryptItem) ([]BatchDecryptResult, error) {
	body := struct {
		Items []BatchDecryptItem `json:"items"`
	}{items}
	var r struct {
		Results []BatchDecryptResult `json:"results"`
	}
	if err := c.Do(ctx, http.MethodPost, "/v1/batch/decrypt", body, &r); err != nil {
		return nil, err
	}
	return r.Results, nil
}
