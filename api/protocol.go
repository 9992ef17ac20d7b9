package api

import (
	"net/http"

	"github.com/hsmkms/hsmkms/service"
	"github.com/labstack/echo/v4"
)

// Protocol is a further wire protocol served on the REST listener, such as
// the AWS KMS JSON protocol (package awsapi). It brings its own route,
// authentication and error format; the REST layer gives it the same
// request ids, request log, metrics, body limit, timeout and audit record
// as every /v1 request, so a request in either protocol is the same
// request to the service.
type Protocol struct {
	Method, Path string
	// Action names a request's operation from its headers alone: the
	// audit record's action and the log's and metrics' operation.
	Action func(r *http.Request) string
	// Handler serves a request. It authenticates the request itself and
	// calls SetCaller before calling the service.
	Handler echo.HandlerFunc
	// Error turns any error of the request (its own, the service's, the
	// body limit's) into the protocol's error response.
	Error func(err error) ErrorResponse
}

// ErrorResponse is an error answer in a Protocol's own format.
type ErrorResponse struct {
	Status      int
	ContentType string
	Header      map[string]string
	Body        []byte
	// Code is the error code the audit record and the log show.
	Code string
}

const ctxProtocolError = "protocol_error"

// SetCaller makes caller the principal of c's request: for the audit
// record, the request log and the service's authorisation.
func SetCaller(c echo.Context, caller *service.Caller) {
	c.Set(ctxPrincipal, caller.Principal)
	c.SetRequest(c.Request().WithContext(service.WithCaller(c.Request().Context(), caller)))
}

// RequestID is the id the server gave c's request (X-Request-Id).
func RequestID(c echo.Context) string { return requestID(c) }

// addProtocol registers p with the middleware of a /v1 route, its own
// authentication aside.
func addProtocol(e *echo.Echo, cfg Config, lim *authLimiter, p Protocol) {
	mark := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.Set(ctxProtocolError, p.Error)
			return next(c)
		}
	}
	auditing := auditAs(cfg.Service, cfg.Logger, lim, func(c echo.Context) string { return p.Action(c.Request()) })
	e.Add(p.Method, p.Path, p.Handler, mark, auditing, bodyLimit(cfg.BodyLimit), timeout(cfg.RequestTimeout))
}

// protocolError is the Error of the protocol serving c, or nil for REST.
func protocolError(c echo.Context) func(error) ErrorResponse {
	f, _ := c.Get(ctxProtocolError).(func(error) ErrorResponse)
	return f
}

// writeProtocolError writes r directly, bypassing Echo.
func writeProtocolError(w http.ResponseWriter, r ErrorResponse) error {
	h := w.Header()
	h.Del(echo.HeaderContentLength)
	h.Set(echo.HeaderContentType, r.ContentType)
	for k, v := range r.Header {
		h.Set(k, v)
	}
	w.WriteHeader(r.Status)
	_, err := w.Write(r.Body)
	return err
}
