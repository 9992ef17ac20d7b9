package api

import (
	"context"
	"log/slog"
	"net/http"
	"sync"

	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/wire"
	"github.com/labstack/echo/v4"
)

// Batch operations: up to MaxBatchItems encrypt or decrypt calls in one
// request. Each item is the single call, through the same service method:
// authorised on its own key, audited in a record of its own (the batch's
// request id, the item's key, "batch_item" in the detail), and answered
// in its place in results, as the single call's response or its error.
// The answer waits until every item's record is durable; if one cannot be
// written the whole batch is 503 (fail closed), as a single call would be.

// Batch limits.
const (
	MaxBatchItems = 100
	// DefaultBatchBodyLimit admits 100 items of the largest plaintext
	// (4096 bytes, 5464 in base64) with context to spare.
	DefaultBatchBodyLimit = "1M"
)

// Route actions of the batch requests (logs, metrics, the batch's own
// audit record); the items are audited as kms:Encrypt and kms:Decrypt.
const (
	ActBatchEncrypt = "kms:BatchEncrypt"
	ActBatchDecrypt = "kms:BatchDecrypt"
)

type batchEncryptRequest struct {
	Items []encryptRequest `json:"items"`
}

type batchDecryptRequest struct {
	Items []decryptRequest `json:"items"`
}

type batchResponse struct {
	Results []any `json:"results"`
}

func (h *handlers) batchEncrypt(c echo.Context) error {
	var req batchEncryptRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if err := batchSize(len(req.Items)); err != nil {
		return err
	}
	return h.batch(c, service.ActEncrypt, len(req.Items), func(ctx context.Context, i int) (any, error) {
		it := req.Items[i]
		pt, err := decodeBase64("plaintext", it.Plaintext)
		if err != nil {
			return nil, err
		}
		res, err := h.svc.Crypto.Encrypt(ctx, it.KeyID, pt, it.EncryptionContext)
		if err != nil {
			return nil, err
		}
		return wire.EncryptResult{CiphertextBlob: res.Ciphertext, KeyID: res.KeyID, KeyVersion: res.KeyVersion}, nil
	})
}

func (h *handlers) batchDecrypt(c echo.Context) error {
	var req batchDecryptRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if err := batchSize(len(req.Items)); err != nil {
		return err
	}
	return h.batch(c, service.ActDecrypt, len(req.Items), func(ctx context.Context, i int) (any, error) {
		it := req.Items[i]
		blob, err := decodeBase64("ciphertext_blob", it.CiphertextBlob)
		if err != nil {
			return nil, err
		}
		res, err := h.svc.Crypto.Decrypt(ctx, blob, it.EncryptionContext, it.KeyID)
		if err != nil {
			return nil, err
		}
		return wire.DecryptResult{Plaintext: res.Plaintext, KeyID: res.KeyID, KeyVersion: res.KeyVersion}, nil
	})
}

func batchSize(n int) error {
	if n < 1 || n > MaxBatchItems {
		return service.Validationf("items must hold 1 to %d items (got %d)", MaxBatchItems, n)
	}
	return nil
}

// batch runs one(ctx, i) for each item in order, each with an activity of
// its own, then writes the items' audit records (together, so that they
// share group commits) and answers once all are durable.
func (h *handlers) batch(c echo.Context, action string, n int, one func(ctx context.Context, i int) (any, error)) error {
	req := c.Request()
	parent := activity(c)
	results := make([]any, n)
	acts := make([]*service.Activity, n)
	outcomes := make([][2]string, n) // outcome, code
	for i := range n {
		ctx, act := service.StartBatchItem(req.Context(), parent, action, i)
		acts[i] = act
		res, err := one(ctx, i)
		if err == nil {
			results[i], outcomes[i] = res, [2]string{service.OutcomeAllowed, ""}
			continue
		}
		_, code, msg, internal := classify(err)
		if internal {
			h.log().Error("internal error", "request_id", requestID(c), "path", c.Path(), "batch_item", i, "err", err)
		}
		results[i] = errorBody{Error: errorDetail{Code: code, Message: msg}}
		outcome := service.OutcomeFailed
		if code == CodeUnauthenticated || code == CodeAccessDenied {
			outcome = service.OutcomeDenied
		}
		outcomes[i] = [2]string{outcome, code}
	}
	// The records are written even if the client went away meanwhile.
	ctx := context.WithoutCancel(req.Context())
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = h.svc.Audit.Record(ctx, acts[i], outcomes[i][0], outcomes[i][1]) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			// Fail closed: no item's answer leaves without its record
			// (the error is the service's Unavailable). The batch's own
			// record says the batch failed.
			return err
		}
	}
	return c.JSON(http.StatusOK, batchResponse{Results: results})
}

func (h *handlers) log() *slog.Logger {
	if h.logger != nil {
		return h.logger
	}
	return slog.Default()
}
