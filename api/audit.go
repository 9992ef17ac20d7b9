package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/hsmkms/hsmkms/service"
	"github.com/labstack/echo/v4"
)

const ctxActivity = "activity"

// activity returns the request's audit activity, or nil.
func activity(c echo.Context) *service.Activity {
	a, _ := c.Get(ctxActivity).(*service.Activity)
	return a
}

// audit gives every /v1 request exactly one audit record. The service
// writes the record of a management change in the change's transaction;
// for every other request (reads, cryptographic operations, refusals,
// failures) this middleware writes it through the group commit. Either
// way the client gets its answer only once the record is durable: the
// response is held in a buffer until then, and if the record cannot be
// written the answer is KeyUnavailableException instead.
//
// A failed authentication over its source's limit (authlimit.go) is
// answered 429 instead, and counted in the source's summary record rather
// than recorded on its own.
func audit(svc *service.Service, log *slog.Logger, lim *authLimiter) func(action string) echo.MiddlewareFunc {
	return func(action string) echo.MiddlewareFunc {
		return auditAs(svc, log, lim, func(echo.Context) string { return action })
	}
}

// auditAs is audit for a route whose action depends on the request.
func auditAs(svc *service.Service, log *slog.Logger, lim *authLimiter, actionOf func(echo.Context) string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			action := actionOf(c)
			c.Set(ctxOperation, action)
			// The activity also feeds the request log (key, version), so
			// it exists with auditing off too.
			req := c.Request()
			ctx, act := service.StartActivity(req.Context(), requestID(c), c.RealIP(), action)
			c.Set(ctxActivity, act)
			c.SetRequest(req.WithContext(ctx))
			if svc == nil || !svc.Audit.AuditEnabled() {
				err := next(c)
				if lim != nil && errors.Is(err, service.ErrUnauthenticated) && !lim.failed(c.RealIP(), CodeUnauthenticated) {
					return errAuthLimited
				}
				return err
			}

			res := c.Response()
			orig := res.Writer
			buf := &bufferedWriter{header: orig.Header(), under: orig}
			res.Writer = buf
			err := callRecovering(log, next, c)
			if err != nil {
				c.Error(err) // writes the error response into the buffer
			}
			res.Writer = orig

			outcome, code := service.OutcomeAllowed, ""
			if err != nil {
				code, _ = c.Get(ctxErrorCode).(string)
				outcome = service.OutcomeFailed
				if errors.Is(err, service.ErrUnauthenticated) || errors.Is(err, service.ErrAccessDenied) ||
					code == CodeUnauthenticated || code == CodeAccessDenied {
					outcome = service.OutcomeDenied
				}
				if lim != nil && (errors.Is(err, service.ErrUnauthenticated) || code == CodeUnauthenticated) &&
					!lim.failed(c.RealIP(), code) {
					return writeError(c, orig, errAuthLimited)
				}
			}
			// The client's context may be cancelled by now (it went away,
			// or its body did not arrive in time); the record is written
			// regardless.
			if rerr := svc.Audit.Record(context.WithoutCancel(req.Context()), act, outcome, code); rerr != nil {
				log.Error("audit record not written; answering 503", "request_id", requestID(c), "err", rerr)
				return writeError(c, orig, rerr)
			}
			return buf.flushTo(orig)
		}
	}
}

// writeError answers with err in place of the buffered response, in the
// protocol of the request.
func writeError(c echo.Context, w http.ResponseWriter, err error) error {
	res := c.Response()
	if pe := protocolError(c); pe != nil {
		r := pe(err)
		c.Set(ctxErrorCode, r.Code)
		res.Status = r.Status
		return writeProtocolError(w, r)
	}
	status, code, msg, _ := classify(err)
	c.Set(ctxErrorCode, code)
	res.Status = status
	return writeDirect(w, status, code, msg)
}

// bufferedWriter holds a response until its audit record is durable.
type bufferedWriter struct {
	header http.Header
	under  http.ResponseWriter // for http.ResponseController (deadlines)
	status int
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }

// Unwrap lets http.ResponseController reach the connection.
func (b *bufferedWriter) Unwrap() http.ResponseWriter { return b.under }

func (b *bufferedWriter) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *bufferedWriter) flushTo(w http.ResponseWriter) error {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	w.WriteHeader(b.status)
	_, err := w.Write(b.body.Bytes())
	return err
}

// writeDirect answers with an error envelope, bypassing Echo (whose
// response is already committed to the buffer).
func writeDirect(w http.ResponseWriter, status int, code, msg string) error {
	h := w.Header()
	h.Del(echo.HeaderContentLength)
	h.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	w.WriteHeader(status)
	body, _ := json.Marshal(errorBody{Error: errorDetail{Code: code, Message: msg}})
	_, err := w.Write(append(body, '\n'))
	return err
}
