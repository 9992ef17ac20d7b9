// Package api is the REST layer of hsmkms (API.md): Echo routes, strict
// request decoding, bearer authentication and the single error mapping.
// Handlers are thin: decode, call the service, encode.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hsmkms/hsmkms/service"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// Authenticator turns a bearer token into the principal's name. It must
// compare tokens in constant time and return an error wrapping
// service.ErrUnauthenticated for a missing or unknown token.
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (principal string, err error)
}

// Config configures the REST layer.
type Config struct {
	Service *service.Service
	Auth    Authenticator
	Logger  *slog.Logger
	// BodyLimit caps request bodies (default 64 KiB: a 4096-byte plaintext
	// in base64 plus context fits with room to spare).
	BodyLimit string
	// RequestTimeout bounds each API call, token wait included (default 30s).
	RequestTimeout time.Duration
	// Extra registers further routes (e.g. /metrics) on the same server.
	Extra func(e *echo.Echo)
}

// Context keys set by the middleware.
const (
	ctxPrincipal = "principal"
	ctxErrorCode = "error_code"
)

// New builds the Echo server with every route of API.md that is implemented.
func New(cfg Config) *echo.Echo {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BodyLimit == "" {
		cfg.BodyLimit = "64K"
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(cfg.Logger)
	e.Use(middleware.RequestID())
	e.Use(requestLog(cfg.Logger))
	e.Use(recoverPanics(cfg.Logger))

	h := &handlers{svc: cfg.Service}
	e.GET("/healthz", h.healthz)
	e.GET("/readyz", h.readyz)
	if cfg.Extra != nil {
		cfg.Extra(e)
	}

	// Middleware goes on each route, not on the group: a group's middleware
	// turns every unknown method of a known path into a 404, not a 405.
	v1 := &routes{g: e.Group("/v1"), mw: []echo.MiddlewareFunc{
		middleware.BodyLimit(cfg.BodyLimit), timeout(cfg.RequestTimeout), authenticate(cfg.Auth)}}
	v1.add(http.MethodPost, "/keys", h.createKey)
	v1.add(http.MethodGet, "/keys", h.listKeys)
	keyRoute(v1, http.MethodGet, "", h.describeKey)
	keyRoute(v1, http.MethodPatch, "", h.updateKey)
	keyRoute(v1, http.MethodPost, "/enable", h.enableKey)
	keyRoute(v1, http.MethodPost, "/disable", h.disableKey)
	keyRoute(v1, http.MethodPost, "/schedule-deletion", h.scheduleDeletion)
	keyRoute(v1, http.MethodPost, "/cancel-deletion", h.cancelDeletion)
	keyRoute(v1, http.MethodPut, "/rotation-policy", h.putRotationPolicy)
	keyRoute(v1, http.MethodGet, "/rotation-status", h.rotationStatus)
	keyRoute(v1, http.MethodPost, "/rotate", h.rotate)
	keyRoute(v1, http.MethodGet, "/rotations", h.listRotations)
	keyRoute(v1, http.MethodGet, "/versions", h.listVersions)
	keyRoute(v1, http.MethodPost, "/versions/:version/disable", h.changeVersion(service.DisableVersion))
	keyRoute(v1, http.MethodPost, "/versions/:version/enable", h.changeVersion(service.EnableVersion))
	keyRoute(v1, http.MethodPost, "/versions/:version/schedule-destruction", h.changeVersion(service.ScheduleVersionDestruction))
	keyRoute(v1, http.MethodPost, "/versions/:version/cancel-destruction", h.changeVersion(service.CancelVersionDestruction))

	v1.add(http.MethodPost, "/aliases", h.createAlias)
	v1.add(http.MethodGet, "/aliases", h.listAliases)
	v1.add(http.MethodPut, "/aliases/:name", h.updateAlias)
	v1.add(http.MethodDelete, "/aliases/:name", h.deleteAlias)

	v1.add(http.MethodPost, "/encrypt", h.encrypt)
	v1.add(http.MethodPost, "/decrypt", h.decrypt)
	v1.add(http.MethodPost, "/generate-data-key", h.generateDataKey)
	v1.add(http.MethodPost, "/generate-data-key-without-plaintext", h.generateDataKeyWithoutPlaintext)
	v1.add(http.MethodPost, "/re-encrypt", h.reEncrypt)
	v1.add(http.MethodPost, "/generate-random", h.generateRandom)
	return e
}

// routes registers /v1 routes with their middleware.
type routes struct {
	g  *echo.Group
	mw []echo.MiddlewareFunc
}

func (r *routes) add(method, path string, h echo.HandlerFunc) {
	r.g.Add(method, path, h, r.mw...)
}

// keyRoute registers a per-key route under both /keys/{key_id} and
// /keys/alias/{name}.
func keyRoute(r *routes, method, suffix string, h echo.HandlerFunc) {
	r.add(method, "/keys/:key"+suffix, h)
	r.add(method, "/keys/alias/:alias"+suffix, h)
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

// authenticate requires a bearer token on every /v1 route.
func authenticate(a Authenticator) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			bearer, ok := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
			if !ok || bearer == "" {
				return service.ErrUnauthenticated
			}
			p, err := a.Authenticate(c.Request().Context(), bearer)
			if err != nil {
				return err
			}
			c.Set(ctxPrincipal, p)
			return next(c)
		}
	}
}

// recoverPanics turns a panic into a logged 500; the process keeps serving.
func recoverPanics(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				if r := recover(); r != nil {
					log.Error("panic in handler", "request_id", requestID(c), "path", c.Path(), "panic", r,
						"stack", string(debug.Stack()))
					err = errPanic
				}
			}()
			return next(c)
		}
	}
}

// requestLog writes one line per request: never bodies, never the bearer token.
func requestLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			principal, _ := c.Get(ctxPrincipal).(string)
			code, _ := c.Get(ctxErrorCode).(string)
			log.Info("request", "request_id", requestID(c), "method", c.Request().Method,
				"route", c.Path(), "status", c.Response().Status, "error_code", code,
				"principal", principal, "duration_ms", float64(time.Since(start).Microseconds())/1000)
			return nil
		}
	}
}
