package api

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"os"

	"github.com/hsmkms/hsmkms/internal/strictjson"
	"github.com/hsmkms/hsmkms/service"
	"github.com/labstack/echo/v4"
)

// bind decodes the request body into v strictly, in one pass
// (internal/strictjson): one JSON object, names exact and not repeated, no
// unknown fields, no trailing data, right types. An empty body is an empty
// object. Every failure is a ValidationException naming what is wrong.
func bind(c echo.Context, v any) error {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		// Echo's body limit refuses a declared length up front; a chunked
		// body is cut off while it is read, here.
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) || errors.Is(err, echo.ErrStatusRequestEntityTooLarge) {
			return echo.ErrStatusRequestEntityTooLarge
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return service.Validationf("the request body did not arrive within the read timeout")
		}
		return service.Validationf("cannot read the request body")
	}
	if err := strictjson.Unmarshal(body, v); err != nil {
		return service.Validationf("%s", err.Error())
	}
	return nil
}

// decodeBase64 reads a required base64 field strictly (padding required).
func decodeBase64(field string, s *string) ([]byte, error) {
	if s == nil {
		return nil, service.Validationf("field %s is required", field)
	}
	out, err := base64.StdEncoding.Strict().DecodeString(*s)
	if err != nil {
		return nil, service.Validationf("field %s is not valid base64", field)
	}
	return out, nil
}

// requireField reports a missing required field.
func requireField(name string, present bool) error {
	if !present {
		return service.Validationf("field %s is required", name)
	}
	return nil
}
