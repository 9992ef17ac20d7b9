package api

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

// AuthLimits bound failed authentication per source address (the TCP
// peer), so that requests with a wrong credential can neither flood the
// audit trail nor guess at full speed: each source has a token bucket of
// failures; while it lasts a failure is 401 with a record of its own, once
// it is empty a failure is 429 (LimitExceededException) and only counted,
// one summary record per source per SummaryEvery with the count. Requests
// that authenticate are never limited, from any address. A zero field
// takes its default.
type AuthLimits struct {
	// Rate is how many failures per second a source regains (1).
	Rate float64
	// Burst is how many failures a source may have at once (20).
	Burst int
	// SummaryEvery is the interval of a source's summary record (10s).
	SummaryEvery time.Duration
}

// Default limits of failed authentication.
const (
	DefaultAuthFailureRate    = 1.0
	DefaultAuthFailureBurst   = 20
	DefaultAuthSummaryEvery   = 10 * time.Second
	maxAuthSources            = 10000 // sources tracked; more share one bucket
	authSourcesSweep          = time.Minute
	ActAuthenticationFailures = "kms:AuthenticationFailures" // the action of a summary record
)

func (l AuthLimits) withDefaults() AuthLimits {
	if l.Rate == 0 {
		l.Rate = DefaultAuthFailureRate
	}
	if l.Burst == 0 {
		l.Burst = DefaultAuthFailureBurst
	}
	if l.SummaryEvery == 0 {
		l.SummaryEvery = DefaultAuthSummaryEvery
	}
	return l
}

// authLimiter keeps the buckets and the pending counts.
type authLimiter struct {
	lim   AuthLimits
	svc   *service.Service
	log   *slog.Logger
	mu    sync.Mutex
	srcs  map[string]*authSource
	swept time.Time
}

type authSource struct {
	tokens float64
	at     time.Time // of tokens
	// The failures over the limit not yet in a summary record.
	count      int64
	from, to   time.Time
	code       string
	summarised bool // a summary is due (its timer runs)
}

func newAuthLimiter(lim AuthLimits, svc *service.Service, log *slog.Logger) *authLimiter {
	return &authLimiter{lim: lim.withDefaults(), svc: svc, log: log, srcs: map[string]*authSource{}}
}

// source returns src's entry and its key; the caller holds mu.
func (l *authLimiter) source(src string, now time.Time) (string, *authSource) {
	if now.Sub(l.swept) > authSourcesSweep {
		l.swept = now
		for k, s := range l.srcs {
			if !s.summarised && s.tokens+l.lim.Rate*now.Sub(s.at).Seconds() >= float64(l.lim.Burst) {
				delete(l.srcs, k)
			}
		}
	}
	s, ok := l.srcs[src]
	if !ok {
		if len(l.srcs) >= maxAuthSources {
			src = "*" // too many sources at once: the rest share one bucket
			if s, ok = l.srcs[src]; ok {
				return src, s
			}
		}
		s = &authSource{tokens: float64(l.lim.Burst), at: now}
		l.srcs[src] = s
	}
	return src, s
}

// failed takes one failure of src from its bucket: true when it may be
// answered and recorded as usual, false when it is over the limit (and has
// been counted for the summary).
func (l *authLimiter) failed(src, code string) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	src, s := l.source(src, now)
	s.tokens = min(float64(l.lim.Burst), s.tokens+l.lim.Rate*now.Sub(s.at).Seconds())
	s.at = now
	if s.tokens >= 1 {
		s.tokens--
		return true
	}
	if s.count == 0 {
		s.from = now
	}
	s.count++
	s.to, s.code = now, code
	if !s.summarised {
		s.summarised = true
		time.AfterFunc(l.lim.SummaryEvery, func() { l.summarise(src) })
	}
	return false
}

// summarise writes src's summary record: how many failures over the limit
// it had, first and last.
func (l *authLimiter) summarise(src string) {
	l.mu.Lock()
	s, ok := l.srcs[src]
	if !ok {
		l.mu.Unlock()
		return
	}
	n, from, to, code := s.count, s.from, s.to, s.code
	s.count, s.summarised = 0, false
	l.mu.Unlock()
	if n == 0 || l.svc == nil {
		return
	}
	a := service.SummaryActivity(src, ActAuthenticationFailures, map[string]string{
		"count": strconv.FormatInt(n, 10), "first": from.UTC().Format(time.RFC3339Nano), "last": to.UTC().Format(time.RFC3339Nano)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.svc.Audit.Record(ctx, a, service.OutcomeDenied, code); err != nil {
		l.log.Error("audit summary of failed authentications not written", "source", src, "count", n, "err", err)
	}
}

// errAuthLimited answers a failure over the limit.
var errAuthLimited = &service.Error{Kind: service.ErrLimitExceeded,
	Message: "too many failed authentications from this address; retry later"}
