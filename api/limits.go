package api

import (
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/net/netutil"
)

// Limits bound what one client can hold of the server: a slow client gives
// up its connection after the read timeout, whatever it sends, and the
// connections of all clients together are capped. docs/API.md ("Limits")
// lists them; a zero field takes its default.
type Limits struct {
	// ReadHeaderTimeout bounds reading the request line and headers (10s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading the whole request, body included (20s):
	// a 64 KiB body needs only 3.3 KB/s to arrive in time.
	ReadTimeout time.Duration
	// WriteTimeout bounds the handler and the writing of its answer (60s):
	// longer than a request may take (30s) with its audit record.
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection that sends nothing (120s).
	IdleTimeout time.Duration
	// MaxHeaderBytes caps the request line and headers (16 KiB; net/http
	// allows 4 KiB of slack above it). Larger is 431.
	MaxHeaderBytes int
	// MaxConnections caps open connections (1024): further ones wait in
	// the listen backlog until one closes.
	MaxConnections int
}

// Default limits.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 20 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 16 << 10
	DefaultMaxConnections    = 1024
)

func (l Limits) withDefaults() Limits {
	set := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	set(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	set(&l.ReadTimeout, DefaultReadTimeout)
	set(&l.WriteTimeout, DefaultWriteTimeout)
	set(&l.IdleTimeout, DefaultIdleTimeout)
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	return l
}

// NewHTTPServer is the http.Server for h within l. Serve it on
// LimitListener, which applies l.MaxConnections.
func NewHTTPServer(h http.Handler, l Limits) *http.Server {
	l = l.withDefaults()
	return &http.Server{Handler: h, ReadHeaderTimeout: l.ReadHeaderTimeout, ReadTimeout: l.ReadTimeout,
		WriteTimeout: l.WriteTimeout, IdleTimeout: l.IdleTimeout, MaxHeaderBytes: l.MaxHeaderBytes}
}

// LimitListener accepts at most l.MaxConnections connections at once.
func LimitListener(ln net.Listener, l Limits) net.Listener {
	return netutil.LimitListener(ln, l.withDefaults().MaxConnections)
}

// bodyLimit is Echo's BodyLimit whose 413 stops reading the body, like the
// refusals of authenticate and requireJSON (closeUnread): Echo answers a
// declared length over the limit without reading the body, and net/http,
// below 256 KiB of it, would read the rest before sending the answer.
func bodyLimit(limit string) echo.MiddlewareFunc {
	bl := middleware.BodyLimit(limit)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		h := bl(next)
		return func(c echo.Context) error {
			err := h(c)
			if errors.Is(err, echo.ErrStatusRequestEntityTooLarge) {
				closeUnread(c)
			}
			return err
		}
	}
}
