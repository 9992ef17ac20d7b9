// Package api is the REST layer of hsmkms (docs/API.md): Echo routes, strict
// request decoding, bearer authentication and the single error mapping.
// Handlers are thin: decode, call the service, encode.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hsmkms/hsmkms/service"
	"github.com/labstack/echo/v4"
)

// Authenticator turns a bearer token, or a verified client certificate's
// subject, into the caller. It must compare tokens in constant time and
// return an error wrapping service.ErrUnauthenticated for a missing,
// unknown or revoked token. *service.Access implements it.
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (*service.Caller, error)
	AuthenticateCertificate(ctx context.Context, subject string) (*service.Caller, error)
}

// Defaults of the REST layer, applied by New to zero fields of Config.
const (
	// DefaultBodyLimit caps request bodies: a 4096-byte plaintext in base64
	// plus context fits with room to spare.
	DefaultBodyLimit = "64K"
	// DefaultRequestTimeout bounds each API call, token wait included.
	DefaultRequestTimeout = 30 * time.Second
)

// Config configures the REST layer.
type Config struct {
	Service *service.Service
	// Auth authenticates callers (default: the service's access part).
	Auth   Authenticator
	Logger *slog.Logger
	// BodyLimit caps request bodies (default DefaultBodyLimit).
	BodyLimit string
	// BatchBodyLimit caps the bodies of the batch operations (default
	// DefaultBatchBodyLimit).
	BatchBodyLimit string
	// RequestTimeout bounds each API call, token wait included (default
	// DefaultRequestTimeout).
	RequestTimeout time.Duration
	// Extra registers further routes (e.g. /metrics) on the same server.
	Extra func(e *echo.Echo)
	// Observe, when set, is called once per request after it is answered
	// (metrics). It must not block.
	Observe func(RequestInfo)
	// Protocols are further wire protocols served on the same listener
	// (the AWS KMS protocol).
	Protocols []Protocol
	// AuthLimits bound failed authentication per source (authlimit.go).
	AuthLimits AuthLimits
}

// RequestInfo describes one answered request, for metrics.
type RequestInfo struct {
	Method    string
	Route     string // the route pattern, e.g. /v1/keys/:key
	Operation string // the action, e.g. kms:Encrypt; "" when none was reached
	Status    int
	ErrorCode string // API error code; "" on success
	Duration  time.Duration
}

// Context keys set by the middleware.
const (
	ctxPrincipal = "principal"
	ctxErrorCode = "error_code"
	ctxOperation = "operation"
)

// New builds the Echo server with every route of docs/API.md that is implemented.
func New(cfg Config) *echo.Echo {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BodyLimit == "" {
		cfg.BodyLimit = DefaultBodyLimit
	}
	if cfg.BatchBodyLimit == "" {
		cfg.BatchBodyLimit = DefaultBatchBodyLimit
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.Auth == nil && cfg.Service != nil {
		cfg.Auth = cfg.Service.Access
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	// The audit trail's source address is the peer's: X-Forwarded-For is
	// whatever the client says it is.
	e.IPExtractor = echo.ExtractIPDirect()
	e.HTTPErrorHandler = errorHandler(cfg.Logger)
	e.Use(lingerAfterRefusal)
	e.Use(requestIDs)
	e.Use(requestLog(cfg.Logger, cfg.Observe))
	e.Use(recoverPanics(cfg.Logger))
	lim := newAuthLimiter(cfg.AuthLimits, cfg.Service, cfg.Logger)
	e.Use(auditUnrouted(audit(cfg.Service, cfg.Logger, lim)(ActionUnknown), authenticate(cfg.Auth)))

	h := &handlers{svc: cfg.Service, logger: cfg.Logger}
	// The parts whose methods are routes' values; nil without a service
	// (listing the routes needs none).
	var keys *service.Keys
	var imports *service.Import
	if cfg.Service != nil {
		keys, imports = cfg.Service.Keys, cfg.Service.Import
	}
	e.GET("/healthz", h.healthz)
	e.GET("/readyz", h.readyz)
	e.GET("/openapi.yaml", openAPI)
	if cfg.Extra != nil {
		cfg.Extra(e)
	}
	for _, p := range cfg.Protocols {
		addProtocol(e, cfg, lim, p)
	}

	// Middleware goes on each route, not on the group: a group's middleware
	// turns every unknown method of a known path into a 404, not a 405.
	// audit comes first so that every request, refused ones too, has its
	// record; authenticate and the media type check come last, just before
	// the handler: neither reads the body.
	v1 := &routes{g: e.Group("/v1"), audit: audit(cfg.Service, cfg.Logger, lim), mw: []echo.MiddlewareFunc{
		bodyLimit(cfg.BodyLimit), timeout(cfg.RequestTimeout), authenticate(cfg.Auth), requireJSON}}
	v1.add(http.MethodPost, "/keys", service.ActCreateKey, h.createKey)
	v1.add(http.MethodGet, "/keys", service.ActListKeys, h.listKeys)
	keyRoute(v1, http.MethodGet, "", service.ActDescribeKey, h.describeKey)
	keyRoute(v1, http.MethodPatch, "", service.ActUpdateKey, h.updateKey)
	keyRoute(v1, http.MethodPost, "/enable", service.ActEnableKey, h.keyAction(keys.EnableKey))
	keyRoute(v1, http.MethodPost, "/disable", service.ActDisableKey, h.keyAction(keys.DisableKey))
	keyRoute(v1, http.MethodPost, "/schedule-deletion", service.ActScheduleDeletion, h.scheduleDeletion)
	keyRoute(v1, http.MethodPost, "/cancel-deletion", service.ActCancelDeletion, h.keyAction(keys.CancelKeyDeletion))
	keyRoute(v1, http.MethodPut, "/rotation-policy", service.ActPutRotationPolicy, h.putRotationPolicy)
	keyRoute(v1, http.MethodGet, "/rotation-status", service.ActGetRotationStatus, h.rotationStatus)
	keyRoute(v1, http.MethodPost, "/rotate", service.ActRotateKey, h.rotate)
	keyRoute(v1, http.MethodGet, "/rotations", service.ActListKeyRotations, h.listRotations)
	keyRoute(v1, http.MethodGet, "/versions", service.ActListKeyVersions, h.listVersions)
	keyRoute(v1, http.MethodPost, "/versions/:version/disable", service.ActUpdateKeyVersion, h.changeVersion(service.DisableVersion))
	keyRoute(v1, http.MethodPost, "/versions/:version/enable", service.ActUpdateKeyVersion, h.changeVersion(service.EnableVersion))
	keyRoute(v1, http.MethodPost, "/versions/:version/schedule-destruction", service.ActUpdateKeyVersion, h.changeVersion(service.ScheduleVersionDestruction))
	keyRoute(v1, http.MethodPost, "/versions/:version/cancel-destruction", service.ActUpdateKeyVersion, h.changeVersion(service.CancelVersionDestruction))

	keyRoute(v1, http.MethodPost, "/import-parameters", service.ActGetParametersForImport, h.importParameters)
	keyRoute(v1, http.MethodPost, "/import", service.ActImportKeyMaterial, h.importKeyMaterial)
	keyRoute(v1, http.MethodDelete, "/key-material", service.ActDeleteImportedKeyMaterial, h.keyAction(imports.DeleteImportedKeyMaterial))

	v1.add(http.MethodPost, "/aliases", service.ActCreateAlias, h.createAlias)
	v1.add(http.MethodGet, "/aliases", service.ActListAliases, h.listAliases)
	v1.add(http.MethodPut, "/aliases/:name", service.ActUpdateAlias, h.updateAlias)
	v1.add(http.MethodDelete, "/aliases/:name", service.ActDeleteAlias, h.deleteAlias)

	v1.add(http.MethodPost, "/encrypt", service.ActEncrypt, h.encrypt)
	v1.add(http.MethodPost, "/decrypt", service.ActDecrypt, h.decrypt)
	v1.add(http.MethodPost, "/generate-data-key", service.ActGenerateDataKey, h.generateDataKey)
	v1.add(http.MethodPost, "/generate-data-key-without-plaintext", service.ActGenerateDataKeyNoP, h.generateDataKeyWithoutPlaintext)
	v1.add(http.MethodPost, "/re-encrypt", "kms:ReEncrypt", h.reEncrypt)
	v1.add(http.MethodPost, "/generate-random", service.ActGenerateRandom, h.generateRandom)
	batch := &routes{g: v1.g, audit: v1.audit, mw: []echo.MiddlewareFunc{
		bodyLimit(cfg.BatchBodyLimit), timeout(cfg.RequestTimeout), authenticate(cfg.Auth), requireJSON}}
	batch.add(http.MethodPost, "/batch/encrypt", ActBatchEncrypt, h.batchEncrypt)
	batch.add(http.MethodPost, "/batch/decrypt", ActBatchDecrypt, h.batchDecrypt)

	v1.add(http.MethodPost, "/principals", "kms:CreatePrincipal", h.createPrincipal)
	v1.add(http.MethodGet, "/principals", "kms:ListPrincipals", h.listPrincipals)
	v1.add(http.MethodGet, "/principals/:name", "kms:GetPrincipal", h.getPrincipal)
	v1.add(http.MethodDelete, "/principals/:name", "kms:DeletePrincipal", h.deletePrincipal)
	v1.add(http.MethodPut, "/principals/:name/policies/:policy", "kms:AttachPolicy", h.attachPolicy)
	v1.add(http.MethodDelete, "/principals/:name/policies/:policy", "kms:DetachPolicy", h.detachPolicy)
	v1.add(http.MethodPost, "/principals/:name/tokens", "kms:CreateToken", h.createToken)
	v1.add(http.MethodDelete, "/principals/:name/tokens/:token", "kms:RevokeToken", h.revokeToken)
	v1.add(http.MethodPost, "/principals/:name/tokens/:token/rotate", "kms:RotateToken", h.rotateToken)
	v1.add(http.MethodPost, "/principals/:name/access-keys", "kms:CreateAccessKey", h.createAccessKey)
	v1.add(http.MethodGet, "/principals/:name/access-keys", "kms:ListAccessKeys", h.listAccessKeys)
	v1.add(http.MethodDelete, "/principals/:name/access-keys/:access_key_id", "kms:DeleteAccessKey", h.deleteAccessKey)
	v1.add(http.MethodPut, "/policies/:name", "kms:PutPolicy", h.putPolicy)
	v1.add(http.MethodGet, "/policies", "kms:ListPolicies", h.listPolicies)
	v1.add(http.MethodGet, "/policies/:name", "kms:GetPolicy", h.getPolicy)
	v1.add(http.MethodDelete, "/policies/:name", "kms:DeletePolicy", h.deletePolicy)
	v1.add(http.MethodGet, "/audit", "kms:ListAudit", h.listAudit)
	v1.add(http.MethodGet, "/audit/verify", "kms:VerifyAudit", h.verifyAudit)
	return e
}

// ActionUnknown is the audit action of a /v1 request that names no
// operation: an unknown path (404) or a method the path does not take (405).
const ActionUnknown = "kms:UnknownOperation"

// auditUnrouted gives /v1 requests that match no route their audit record
// too (route middleware never runs for them): every /v1 request has one.
// They are authenticated like the others: without a valid credential the
// answer is 401, so the API's paths cannot be probed anonymously, and a
// caller's 404 or 405 names its principal in the record.
func auditUnrouted(audited, authenticated echo.MiddlewareFunc) echo.MiddlewareFunc {
	notFound := reflect.ValueOf(echo.NotFoundHandler).Pointer()
	notAllowed := reflect.ValueOf(echo.MethodNotAllowedHandler).Pointer()
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		wrapped := audited(authenticated(next))
		return func(c echo.Context) error {
			p := c.Request().URL.Path
			if h := reflect.ValueOf(c.Handler()).Pointer(); (h == notFound || h == notAllowed) &&
				(p == "/v1" || strings.HasPrefix(p, "/v1/")) {
				err := wrapped(c)
				c.Set(ctxOperation, "") // logs and metrics keep calling it unmatched
				return err
			}
			return next(c)
		}
	}
}

// routes registers /v1 routes with their middleware.
type routes struct {
	g     *echo.Group
	audit func(action string) echo.MiddlewareFunc
	mw    []echo.MiddlewareFunc
}

// add registers a route; action names the operation in logs, metrics and
// the audit trail (authorisation uses the service's own, finer actions).
func (r *routes) add(method, path, action string, h echo.HandlerFunc) {
	mw := append([]echo.MiddlewareFunc{r.audit(action)}, r.mw...)
	r.g.Add(method, path, h, mw...)
}

// keyRoute registers a per-key route under both /keys/{key_id} and
// /keys/alias/{name}.
func keyRoute(r *routes, method, suffix, action string, h echo.HandlerFunc) {
	r.add(method, "/keys/:key"+suffix, action, h)
	r.add(method, "/keys/alias/:alias"+suffix, action, h)
}

// keyRef is the key a per-key route names: a key id or alias/NAME.
func keyRef(c echo.Context) string {
	if name := c.Param("alias"); name != "" {
		return service.AliasPrefix + pathParam(name)
	}
	return pathParam(c.Param("key"))
}

// pathParam undoes percent-encoding, so alias names with '/' can be given
// as %2F in a path segment.
func pathParam(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	if u, err := urlUnescape(p); err == nil {
		return u
	}
	return p
}

// requestIDs gives every request an id of the server's own: the audit
// trail and the logs must not take one from the client, who could reuse
// another request's id or send a huge one.
func requestIDs(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		var b [16]byte
		_, _ = rand.Read(b[:])
		c.Response().Header().Set(echo.HeaderXRequestID, hex.EncodeToString(b[:]))
		return next(c)
	}
}

func requestID(c echo.Context) string {
	return c.Response().Header().Get(echo.HeaderXRequestID)
}

// timeout bounds the request's context; the token call takes it.
func timeout(d time.Duration) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			ctx, cancel := context.WithTimeout(c.Request().Context(), d)
			defer cancel()
			c.SetRequest(c.Request().WithContext(ctx))
			return next(c)
		}
	}
}

// authenticate requires a bearer token on every /v1 route, or, when the
// server verifies client certificates and no token is given, a verified
// certificate whose subject is mapped to a principal.
func authenticate(a Authenticator) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			ctx := c.Request().Context()
			header := c.Request().Header.Get(echo.HeaderAuthorization)
			var caller *service.Caller
			var err error
			if tls := c.Request().TLS; header == "" && tls != nil && len(tls.VerifiedChains) > 0 {
				caller, err = a.AuthenticateCertificate(ctx, tls.VerifiedChains[0][0].Subject.String())
			} else {
				bearer, ok := strings.CutPrefix(header, "Bearer ")
				if !ok || bearer == "" {
					closeUnread(c)
					return service.ErrUnauthenticated
				}
				caller, err = a.Authenticate(ctx, bearer)
			}
			if err != nil {
				closeUnread(c)
				return err
			}
			SetCaller(c, caller)
			return next(c)
		}
	}
}

// requireJSON refuses a request body that is not declared
// application/json (415): browsers send text/plain, form and multipart
// bodies cross-site without a preflight, and a client certificate goes
// with them. For the same reason a POST, PUT or PATCH authenticated by a
// certificate must declare it even with an empty body. A bearer token
// cannot be sent cross-site without a preflight, so its requests may leave
// an empty body undeclared (curl -X POST).
func requireJSON(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		declared := r.Header.Get(echo.HeaderContentType)
		byCertificate := r.Header.Get(echo.HeaderAuthorization) == ""
		unsafe := r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch
		switch {
		case declared != "" && (hasBody(r) || unsafe || r.Method == http.MethodDelete):
			if !isJSON(declared) {
				closeUnread(c)
				return echo.ErrUnsupportedMediaType
			}
		case hasBody(r), unsafe && byCertificate:
			closeUnread(c)
			return echo.ErrUnsupportedMediaType
		}
		return next(c)
	}
}

// isJSON reports whether a Content-Type is application/json, with at most
// a charset of UTF-8 (the only encoding JSON bodies may use).
func isJSON(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != echo.MIMEApplicationJSON {
		return false
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return false
		}
	}
	return true
}

// hasBody reports whether the request carries a body (declared or chunked).
func hasBody(r *http.Request) bool {
	return r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
}

// A refused HTTP/1 request lingers (RFC 9112 §9.6): the answer goes out at
// once, then what the client is still sending is read and discarded, at
// most refusalLingerBytes for at most refusalLinger, before the connection
// closes. Closing on unread bytes resets the connection, and a client that
// writes its whole body before reading the answer (Go's net/http, curl)
// would see a broken pipe instead of the refusal.
const (
	refusalLinger      = 2 * time.Second
	refusalLingerBytes = 4 << 20
)

// ctxLinger marks a refusal whose unread body lingerAfterRefusal drains.
const ctxLinger = "linger_after_refusal"

// closeUnread marks a refusal sent before the body is read: the answer is
// not held back for the body, and an HTTP/1 connection closes after it
// and a bounded linger. Otherwise net/http, to keep the connection, first
// reads what is left of the body, and a body fed a byte at a time would
// hold the answer back until the read timeout. (HTTP/2 answers a stream
// without reading its body; there "Connection: close" would end every
// other stream of the connection.)
func closeUnread(c echo.Context) {
	r := c.Request()
	if !hasBody(r) {
		return
	}
	rc := http.NewResponseController(c.Response())
	if r.ProtoMajor != 1 {
		_ = rc.SetReadDeadline(time.Now())
		return
	}
	c.Response().Header().Set(echo.HeaderConnection, "close")
	// Full duplex keeps the body readable after the answer is flushed.
	_ = rc.EnableFullDuplex()
	_ = rc.SetReadDeadline(time.Now().Add(refusalLinger))
	c.Set(ctxLinger, true)
}

// lingerAfterRefusal is the outermost middleware: once a request marked by
// closeUnread has its answer written (requestLog, inside it, writes every
// answer, errors included), it sends the answer and then drains the body
// within the linger's bounds.
func lingerAfterRefusal(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		body := c.Request().Body // BodyLimit replaces it with a pooled reader
		err := next(c)
		if linger, _ := c.Get(ctxLinger).(bool); linger {
			rc := http.NewResponseController(c.Response())
			_ = rc.Flush()
			// The linger counts from the answer, not from the refusal.
			_ = rc.SetReadDeadline(time.Now().Add(refusalLinger))
			_, _ = io.CopyN(io.Discard, body, refusalLingerBytes)
		}
		return err
	}
}

// recoverPanics turns a panic into a logged 500; the process keeps serving.
func recoverPanics(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error { return callRecovering(log, next, c) }
	}
}

// callRecovering calls next, turning a panic into errPanic (logged with
// its stack). The audit middleware calls its handler through it too, so a
// panicking request is recorded and answered from its buffer.
func callRecovering(log *slog.Logger, next echo.HandlerFunc, c echo.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic in handler", "request_id", requestID(c), "path", c.Path(), "panic", r,
				"stack", string(debug.Stack()))
			err = errPanic
		}
	}()
	return next(c)
}

// requestLog writes one line per request: never bodies, never the bearer token.
func requestLog(log *slog.Logger, observe func(RequestInfo)) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			principal, _ := c.Get(ctxPrincipal).(string)
			code, _ := c.Get(ctxErrorCode).(string)
			op, _ := c.Get(ctxOperation).(string)
			keyID, version := activity(c).Noted()
			d := time.Since(start)
			// Typed attributes: no boxing of each value into an any.
			if ctx := c.Request().Context(); log.Enabled(ctx, slog.LevelInfo) {
				log.LogAttrs(ctx, slog.LevelInfo, "request", slog.String("request_id", requestID(c)),
					slog.String("method", c.Request().Method), slog.String("route", c.Path()),
					slog.String("operation", op), slog.String("key_id", keyID), slog.Int("key_version", version),
					slog.Int("status", c.Response().Status), slog.String("error_code", code),
					slog.String("principal", principal), slog.Float64("duration_ms", float64(d.Microseconds())/1000))
			}
			if observe != nil {
				observe(RequestInfo{Method: c.Request().Method, Route: c.Path(), Operation: op,
					Status: c.Response().Status, ErrorCode: code, Duration: d})
			}
			return nil
		}
	}
}
