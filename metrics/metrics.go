// Package metrics exports hsmkms's Prometheus metrics on GET /metrics:
// requests by operation and outcome, token calls, the token's session pool,
// rotations, keys by state and the audit queue.
//
// Everything lives in one dedicated registry (never the global one), with
// the Go and process collectors. Label values come from closed sets (API
// operations or route patterns, API error codes, token operation names,
// key states): never key ids, aliases, raw paths, principals or anything a
// client chose, so that the number of series stays bounded and a scrape
// reveals nothing secret. Values that cost a query (keys by state) are read
// at scrape time and cached, so scrapes cannot hammer the database.
//
// Wiring, in order: New; Token to wrap the token the service will use;
// WatchService once the service exists; then Register and Observe as the
// REST layer's api.Config.Extra and api.Config.Observe.
package metrics

import (
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/internal/buildinfo"
	"github.com/hsmkms/hsmkms/service"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namespace prefixes every hsmkms metric.
const namespace = "hsmkms"

// Path is where Register serves the metrics.
const Path = "/metrics"

// Outcome label values besides API error codes.
const (
	outcomeOK    = "ok"
	outcomeError = "error" // + "_4xx"/"_5xx": a failure without an API error code
)

// Config tunes the metrics. Zero values take the defaults.
type Config struct {
	// Logger receives scrape errors (e.g. the database did not answer).
	Logger *slog.Logger
	// KeysTTL is how long a keys-by-state count (or its error) is reused
	// (default 5s; negative: query at every scrape, for tests).
	KeysTTL time.Duration
	// QueryTimeout bounds the keys-by-state query of a scrape (default 5s).
	QueryTimeout time.Duration
	// Clock is the time source of the cache (default: the system clock).
	Clock service.Clock
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.KeysTTL == 0 {
		c.KeysTTL = 5 * time.Second
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = 5 * time.Second
	}
	if c.Clock == nil {
		c.Clock = service.SystemClock{}
	}
}

// Metrics owns the registry and the instruments fed by the other layers.
type Metrics struct {
	cfg Config
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	tokenOps        *prometheus.CounterVec
	tokenDuration   *prometheus.HistogramVec
	tokenObjects    prometheus.Gauge

	tokenOnce, serviceOnce sync.Once
	handler                http.Handler
}

// Latency buckets, in seconds. A SoftHSM AES-GCM call takes ~40 µs, a key
// generation ~6 ms, a search over many objects ~70 ms; a request adds the
// HTTP and audit work around it.
var (
	tokenBuckets   = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	requestBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

// New builds the registry with the request and token-call instruments and
// the Go and process collectors.
func New(cfg Config) *Metrics {
	cfg.setDefaults()
	m := &Metrics{cfg: cfg, reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "requests_total",
		Help: "API requests answered, by operation (the action, or METHOD and route pattern when none) and outcome (ok or the API error code).",
	}, []string{"operation", "outcome"})
	m.requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "request_duration_seconds",
		Help:    "API request latency, by operation and outcome.",
		Buckets: requestBuckets,
	}, []string{"operation", "outcome"})
	m.tokenOps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "token", Name: "operations_total",
		Help: "Calls to the PKCS#11 token, by operation and outcome (ok or the error kind).",
	}, []string{"operation", "outcome"})
	m.tokenDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "token", Name: "operation_duration_seconds",
		Help:    "Latency of calls to the PKCS#11 token as the service sees it (session wait included), by operation.",
		Buckets: tokenBuckets,
	}, []string{"operation"})
	m.tokenObjects = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "token", Name: "objects",
		Help: "Objects of this service in the token at the last inventory (the reconciler's: at start and every KMS_RECONCILE_EVERY); alert well below the HSM's object capacity.",
	})
	bi := buildinfo.Get()
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; the labels name the running build (version, commit, Go version), so dashboards can tell the replicas' builds apart.",
	}, []string{"version", "commit", "goversion"})
	build.WithLabelValues(bi.Version, bi.Commit, bi.GoVersion).Set(1)
	m.reg.MustRegister(build, m.tokenObjects, m.requests, m.requestDuration, m.tokenOps, m.tokenDuration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      errorLog{cfg.Logger},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	}))
	return m
}

// Registry is the dedicated registry, e.g. for tests or further collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Register adds GET /metrics to e; use it as api.Config.Extra. The route is
// outside /v1, so it needs no bearer token (docs/API.md).
func (m *Metrics) Register(e *echo.Echo) {
	e.GET(Path, echo.WrapHandler(m.handler))
}

// Observe counts one answered request; use it as api.Config.Observe. It
// does not block.
func (m *Metrics) Observe(ri api.RequestInfo) {
	op, outcome := operationLabel(ri), outcomeLabel(ri)
	m.requests.WithLabelValues(op, outcome).Inc()
	m.requestDuration.WithLabelValues(op, outcome).Observe(ri.Duration.Seconds())
}

// operationLabel is the request's action (e.g. kms:Encrypt) or, before one
// was reached, its method and route pattern (e.g. "POST /v1/keys/:key/rotate").
// Requests that matched no route share one value: their paths are whatever
// a client sent.
func operationLabel(ri api.RequestInfo) string {
	if ri.Operation != "" {
		return ri.Operation
	}
	if ri.Route == "" || ri.Route[0] != '/' || ri.Route == "/*" {
		return "unmatched"
	}
	return methodLabel(ri.Method) + " " + ri.Route
}

// methodLabel keeps the standard methods; a client may send any token as a
// method.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// outcomeLabel is ok, the API error code (a closed set, docs/API.md), or "error"
// for a failure that carries no code.
func outcomeLabel(ri api.RequestInfo) string {
	switch {
	case ri.ErrorCode != "":
		return ri.ErrorCode
	case ri.Status >= 400:
		return outcomeError + "_" + strconv.Itoa(ri.Status/100) + "xx"
	}
	return outcomeOK
}

// errorLog adapts slog to promhttp's logger.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Println(v ...any) {
	e.l.Error("metrics scrape", "err", slogValue(v))
}

func slogValue(v []any) any {
	if len(v) == 1 {
		return v[0]
	}
	return v
}
