package api

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/wire"
	"github.com/labstack/echo/v4"
)

// Error codes of the API (docs/API.md, "Errors"), defined once in wire.
const (
	CodeValidation        = wire.CodeValidation
	CodeInvalidCiphertext = wire.CodeInvalidCiphertext
	CodeIncorrectKey      = wire.CodeIncorrectKey
	CodeUnauthenticated   = wire.CodeUnauthenticated
	CodeAccessDenied      = wire.CodeAccessDenied
	CodeNotFound          = wire.CodeNotFound
	CodeAlreadyExists     = wire.CodeAlreadyExists
	CodeDisabled          = wire.CodeDisabled
	CodeInvalidState      = wire.CodeInvalidState
	CodeConflict          = wire.CodeConflict
	CodeLimitExceeded     = wire.CodeLimitExceeded
	CodeUnavailable       = wire.CodeUnavailable
	CodeUnsupportedMedia  = wire.CodeUnsupportedMedia
	CodeInternal          = wire.CodeInternal
)

// errorBody is the JSON of every error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// domainErrors maps each service error kind to its status and code: the one
// place where errors become HTTP.
var domainErrors = []struct {
	kind   error
	status int
	code   string
}{
	{service.ErrValidation, http.StatusBadRequest, CodeValidation},
	{service.ErrInvalidCiphertext, http.StatusBadRequest, CodeInvalidCiphertext},
	{service.ErrIncorrectKey, http.StatusBadRequest, CodeIncorrectKey},
	{service.ErrUnauthenticated, http.StatusUnauthorized, CodeUnauthenticated},
	{service.ErrAccessDenied, http.StatusForbidden, CodeAccessDenied},
	{service.ErrNotFound, http.StatusNotFound, CodeNotFound},
	{service.ErrAlreadyExists, http.StatusConflict, CodeAlreadyExists},
	{service.ErrDisabled, http.StatusConflict, CodeDisabled},
	{service.ErrInvalidState, http.StatusConflict, CodeInvalidState},
	{service.ErrConflict, http.StatusConflict, CodeConflict},
	{service.ErrLimitExceeded, http.StatusTooManyRequests, CodeLimitExceeded},
	{service.ErrUnavailable, http.StatusServiceUnavailable, CodeUnavailable},
}

// classify returns status, code and a client-safe message for err. Unknown
// errors are internal: their text is logged, never sent.
func classify(err error) (status int, code, message string, internal bool) {
	for _, d := range domainErrors {
		if errors.Is(err, d.kind) {
			return d.status, d.code, err.Error(), false
		}
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusRequestEntityTooLarge:
			return he.Code, CodeValidation, "request body is larger than the limit", false
		case http.StatusNotFound:
			return he.Code, CodeNotFound, "no such endpoint", false
		case http.StatusMethodNotAllowed:
			return he.Code, CodeValidation, "method not allowed on this endpoint", false
		case http.StatusUnsupportedMediaType:
			return he.Code, CodeUnsupportedMedia, "request body must be sent with Content-Type: application/json", false
		case http.StatusUnauthorized:
			return he.Code, CodeUnauthenticated, service.ErrUnauthenticated.Error(), false
		case http.StatusServiceUnavailable:
			return he.Code, CodeUnavailable, "request timed out; safe to retry", false
		}
		if he.Code >= 400 && he.Code < 500 {
			return http.StatusBadRequest, CodeValidation, http.StatusText(he.Code), false
		}
	}
	return http.StatusInternalServerError, CodeInternal, "internal error; the request id identifies it in the server log", true
}

// errorHandler is the Echo HTTPErrorHandler: every error leaves here.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		if pe := protocolError(c); pe != nil {
			r := pe(err)
			if r.Status >= 500 {
				log.Error("request failed", "request_id", requestID(c), "path", c.Path(), "code", r.Code, "err", err)
			}
			c.Set(ctxErrorCode, r.Code)
			for k, v := range r.Header {
				c.Response().Header().Set(k, v)
			}
			_ = c.Blob(r.Status, r.ContentType, r.Body)
			return
		}
		status, code, msg, internal := classify(err)
		if internal {
			log.Error("internal error", "request_id", requestID(c), "path", c.Path(), "err", err)
		}
		c.Set(ctxErrorCode, code)
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(status)
			return
		}
		_ = c.JSON(status, errorBody{Error: errorDetail{Code: code, Message: msg}})
	}
}
