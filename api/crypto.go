package api

import (
	"net/http"

	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/wire"
	"github.com/labstack/echo/v4"
)

func (h *handlers) encrypt(c echo.Context) error {
	var req encryptRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	pt, err := decodeBase64("plaintext", req.Plaintext)
	if err != nil {
		return err
	}
	res, err := h.svc.Crypto.Encrypt(c.Request().Context(), req.KeyID, pt, req.EncryptionContext)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.EncryptResult{CiphertextBlob: res.Ciphertext, KeyID: res.KeyID, KeyVersion: res.KeyVersion})
}

func (h *handlers) decrypt(c echo.Context) error {
	var req decryptRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	blob, err := decodeBase64("ciphertext_blob", req.CiphertextBlob)
	if err != nil {
		return err
	}
	res, err := h.svc.Crypto.Decrypt(c.Request().Context(), blob, req.EncryptionContext, req.KeyID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.DecryptResult{Plaintext: res.Plaintext, KeyID: res.KeyID, KeyVersion: res.KeyVersion})
}

func (h *handlers) generateDataKey(c echo.Context) error {
	return h.dataKey(c, true)
}

func (h *handlers) generateDataKeyWithoutPlaintext(c echo.Context) error {
	return h.dataKey(c, false)
}

func (h *handlers) dataKey(c echo.Context, withPlaintext bool) error {
	var req wire.DataKeyRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	res, err := h.svc.Crypto.GenerateDataKey(c.Request().Context(), service.DataKeyInput{
		KeyRef: req.KeyID, KeySpec: req.KeySpec, NumberOfBytes: req.NumberOfBytes, Context: req.EncryptionContext,
	}, withPlaintext)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.DataKey{Plaintext: res.Plaintext, CiphertextBlob: res.Ciphertext,
		KeyID: res.KeyID, KeyVersion: res.KeyVersion})
}

func (h *handlers) reEncrypt(c echo.Context) error {
	var req reEncryptRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	blob, err := decodeBase64("ciphertext_blob", req.CiphertextBlob)
	if err != nil {
		return err
	}
	res, err := h.svc.Crypto.ReEncrypt(c.Request().Context(), blob, req.SourceEncryptionContext,
		req.DestinationKeyID, req.DestinationEncryptionContext)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.ReEncryptResult{
		CiphertextBlob: res.Destination.Ciphertext, KeyID: res.Destination.KeyID, KeyVersion: res.Destination.KeyVersion,
		SourceKeyID: res.Source.KeyID, SourceKeyVersion: res.Source.KeyVersion,
	})
}

func (h *handlers) generateRandom(c echo.Context) error {
	var req randomRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	b, err := h.svc.Crypto.GenerateRandom(c.Request().Context(), req.NumberOfBytes)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, randomResponse{Plaintext: b})
}
