package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/hsmkms/hsmkms/service"
	"github.com/prometheus/client_golang/prometheus"
)

// ServiceSource is what the service collector reads (*service.Service).
type ServiceSource interface {
	Stats() service.Stats
	KeysByState(ctx context.Context) (map[service.KeyState]int, error)
	AuditQueueDepth() int
}

var _ ServiceSource = (*service.Service)(nil)

// knownKeyStates are always exported, 0 when no key is in them, so that a
// state emptying shows as 0 rather than as a vanished series.
var knownKeyStates = []service.KeyState{
	service.KeyEnabled, service.KeyDisabled, service.KeyPendingDeletion,
	service.KeyPendingImport, service.KeyDeleted,
}

// rotationTypes are always exported, 0 before the first rotation.
var rotationTypes = []service.RotationType{service.RotationAutomatic, service.RotationOnDemand}

// WatchService exports the service's rotations, keys by state and audit
// queue depth. Only the first call has an effect.
func (m *Metrics) WatchService(src ServiceSource) {
	m.serviceOnce.Do(func() { m.reg.MustRegister(newServiceCollector(src, m.cfg)) })
}

// serviceCollector reads the service at scrape time. The keys-by-state
// count is a database query: it is cached for cfg.KeysTTL, errors included,
// and concurrent scrapes share one query.
type serviceCollector struct {
	src                         ServiceSource
	cfg                         Config
	rotations, keys, auditQueue *prometheus.Desc
	repairs, offTemplate        *prometheus.Desc
	gcm, gcmMax                 *prometheus.Desc
	kept                        *prometheus.Desc
	rotationFailures            *prometheus.Desc

	mu     sync.Mutex // serialises the query and guards the cache
	at     time.Time  // when counts/err were read; zero: never
	counts map[service.KeyState]int
	err    error
}

func newServiceCollector(src ServiceSource, cfg Config) *serviceCollector {
	return &serviceCollector{src: src, cfg: cfg,
		rotations: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "key_rotations_total"),
			"Key rotations promoted by this process (a new primary version), by type (AUTOMATIC, ON_DEMAND).",
			[]string{"type"}, nil),
		keys: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "keys"),
			"Keys by state, from the database (all replicas), cached for a few seconds.",
			[]string{"state"}, nil),
		auditQueue: prometheus.NewDesc(prometheus.BuildFQName(namespace, "audit", "queue_depth"),
			"Audit records of this process waiting for their group commit.", nil, nil),
		repairs: prometheus.NewDesc(prometheus.BuildFQName(namespace, "token", "attribute_repairs_total"),
			"Token object attributes (CKA_DERIVE, CKA_DECRYPT, ...) the reconciler of this process set back to a version's template.", nil, nil),
		offTemplate: prometheus.NewDesc(prometheus.BuildFQName(namespace, "token", "objects_off_template"),
			"Objects of live versions that the last reconciler pass found off the template in what it cannot repair, or not attested as generated.", nil, nil),
		gcm: prometheus.NewDesc(prometheus.BuildFQName(namespace, "gcm", "encryptions_total"),
			"AES-GCM encryptions this process counted and added to the versions' counts in the database.", nil, nil),
		gcmMax: prometheus.NewDesc(prometheus.BuildFQName(namespace, "gcm", "version_encryptions_max"),
			"The highest count of encryptions of a version this process's additions returned (rotation at 2^30, refusal at 2^31 by default; NIST SP 800-38D allows 2^32).", nil, nil),
		kept: prometheus.NewDesc(prometheus.BuildFQName(namespace, "token", "destructions_refused"),
			"Token objects this process kept although the database asked for their destruction without sealed evidence of a request whose window passed, or has no row for them (issue 16). Any value above 0 is an alarm.", nil, nil),
		rotationFailures: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "rotation_failures_total"),
			"Automatic rotations of this process that failed, by reason (limit_exceeded, invalid_state, unavailable, internal); the key's rotation-status shows the last one.",
			[]string{"reason"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *serviceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.rotations
	ch <- c.keys
	ch <- c.auditQueue
	ch <- c.repairs
	ch <- c.offTemplate
	ch <- c.gcm
	ch <- c.gcmMax
	ch <- c.kept
	ch <- c.rotationFailures
}

// Collect implements prometheus.Collector.
func (c *serviceCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	for _, typ := range rotationTypes {
		ch <- prometheus.MustNewConstMetric(c.rotations, prometheus.CounterValue, float64(st.Rotations[typ]), string(typ))
	}
	ch <- prometheus.MustNewConstMetric(c.auditQueue, prometheus.GaugeValue, float64(c.src.AuditQueueDepth()))
	ch <- prometheus.MustNewConstMetric(c.repairs, prometheus.CounterValue, float64(st.AttributeRepairs))
	ch <- prometheus.MustNewConstMetric(c.offTemplate, prometheus.GaugeValue, float64(st.ObjectsOffTemplate))
	ch <- prometheus.MustNewConstMetric(c.gcm, prometheus.CounterValue, float64(st.Encryptions))
	ch <- prometheus.MustNewConstMetric(c.gcmMax, prometheus.GaugeValue, float64(st.MaxVersionEncryptions))
	ch <- prometheus.MustNewConstMetric(c.kept, prometheus.GaugeValue, float64(st.DestructionsRefused))
	for _, r := range service.FailureReasons {
		ch <- prometheus.MustNewConstMetric(c.rotationFailures, prometheus.CounterValue, float64(st.RotationFailures[r]), r)
	}

	counts, err := c.keysByState()
	if err != nil {
		// The scrape goes on without this metric; promhttp logs the error
		// and counts it in promhttp_metric_handler_errors_total.
		ch <- prometheus.NewInvalidMetric(c.keys, err)
		return
	}
	for _, s := range knownKeyStates {
		ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
	for s, n := range counts {
		if !isKnownKeyState(s) {
			// e.g. Creating: a closed set of the schema, not client data.
			ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(n), string(s))
		}
	}
}

// keysByState returns the cached count, or queries the store when the
// cache is older than KeysTTL (a negative KeysTTL disables the cache).
func (c *serviceCollector) keysByState() (map[service.KeyState]int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Clock.Now()
	if !c.at.IsZero() && now.Sub(c.at) < c.cfg.KeysTTL {
		return c.counts, c.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.QueryTimeout)
	defer cancel()
	c.counts, c.err = c.src.KeysByState(ctx)
	c.at = now
	return c.counts, c.err
}

func isKnownKeyState(s service.KeyState) bool {
	for _, k := range knownKeyStates {
		if k == s {
			return true
		}
	}
	return false
}
