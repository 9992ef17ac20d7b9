package api

import (
	"net/http"
	"time"

	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/wire"
	"github.com/labstack/echo/v4"
)

// Bring your own key (docs/API.md): import parameters, import, and deletion of
// imported key material.

type importParamsRequest struct {
	WrappingAlgorithm string `json:"wrapping_algorithm"`
	WrappingKeySpec   string `json:"wrapping_key_spec"`
}

type importRequest struct {
	ImportToken          string  `json:"import_token"`
	EncryptedKeyMaterial *string `json:"encrypted_key_material"`
	ValidTo              *string `json:"valid_to"`
}

func (h *handlers) importParameters(c echo.Context) error {
	var req importParamsRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if err := requireField("wrapping_algorithm", req.WrappingAlgorithm != ""); err != nil {
		return err
	}
	p, err := h.svc.Import.GetParametersForImport(c.Request().Context(), keyRef(c), req.WrappingAlgorithm, req.WrappingKeySpec)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.ImportParameters{KeyID: p.KeyID, PublicKey: p.PublicKey,
		ImportToken: p.ImportToken, ParametersValidTo: p.ValidTo.UTC()})
}

func (h *handlers) importKeyMaterial(c echo.Context) error {
	var req importRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if err := requireField("import_token", req.ImportToken != ""); err != nil {
		return err
	}
	wrapped, err := decodeBase64("encrypted_key_material", req.EncryptedKeyMaterial)
	if err != nil {
		return err
	}
	var validTo *time.Time
	if req.ValidTo != nil {
		t, err := time.Parse(time.RFC3339Nano, *req.ValidTo)
		if err != nil {
			return service.Validationf("valid_to must be an RFC 3339 time")
		}
		validTo = &t
	}
	k, err := h.svc.Import.ImportKeyMaterial(c.Request().Context(), keyRef(c), req.ImportToken, wrapped, validTo)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, h.keyResponse(k))
}
