package metrics

import (
	"context"
	"crypto/rsa"
	"errors"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/prometheus/client_golang/prometheus"
)

// Token operation label values, one per hsm.Token method.
const (
	opGenerateKey    = "generate_key"
	opEncrypt        = "encrypt"
	opDecrypt        = "decrypt"
	opSetDecryptOnly = "set_decrypt_only"
	opDestroy        = "destroy"
	opRandom         = "random"
	opInventory      = "inventory"
	opPing           = "ping"
	// Bring your own key.
	opGenerateWrappingKey = "generate_wrapping_key"
	opDestroyWrappingKey  = "destroy_wrapping_key"
	opImport              = "import"
	opKeyCheckValue       = "key_check_value"
)

// tokenErrorKinds name the token's errors for the outcome label, first match
// wins. Anything else is "other".
var tokenErrorKinds = []struct {
	err  error
	name string
}{
	{hsm.ErrUnavailable, "unavailable"},
	{hsm.ErrDecryptFailed, "decrypt_failed"},
	{hsm.ErrNotPermitted, "not_permitted"},
	{hsm.ErrObjectNotFound, "object_not_found"},
	{hsm.ErrAmbiguousObject, "ambiguous_object"},
	{hsm.ErrAttributeMismatch, "attribute_mismatch"},
	{hsm.ErrLogin, "login_failed"},
	{context.DeadlineExceeded, "deadline_exceeded"},
	{context.Canceled, "canceled"},
}

func tokenOutcome(err error) string {
	if err == nil {
		return outcomeOK
	}
	for _, k := range tokenErrorKinds {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "other"
}

// Token wraps the token the service will use, so that every call is timed
// and counted by operation and outcome. If tok also reports Stats (as
// *hsm.PKCS11 does), its session pool, handle cache and recovery counters
// are exported too, read at scrape time (only for the first token so
// wrapped: one registry describes one token).
func (m *Metrics) Token(tok hsm.Token) hsm.Token {
	if src, ok := tok.(StatsSource); ok {
		m.tokenOnce.Do(func() { m.reg.MustRegister(newTokenStatsCollector(src)) })
	}
	return &instrumentedToken{Token: tok, m: m}
}

// instrumentedToken times and counts every call of the token it wraps.
type instrumentedToken struct {
	hsm.Token
	m *Metrics
}

var _ hsm.Token = (*instrumentedToken)(nil)

func (t *instrumentedToken) observe(op string, start time.Time, err error) {
	t.m.tokenDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	t.m.tokenOps.WithLabelValues(op, tokenOutcome(err)).Inc()
}

func (t *instrumentedToken) GenerateKey(ctx context.Context, ref hsm.ObjectRef) error {
	start := time.Now()
	err := t.Token.GenerateKey(ctx, ref)
	t.observe(opGenerateKey, start, err)
	return err
}

func (t *instrumentedToken) Encrypt(ctx context.Context, ref hsm.ObjectRef, plaintext, aad []byte) ([]byte, []byte, error) {
	start := time.Now()
	iv, ct, err := t.Token.Encrypt(ctx, ref, plaintext, aad)
	t.observe(opEncrypt, start, err)
	return iv, ct, err
}

func (t *instrumentedToken) Decrypt(ctx context.Context, ref hsm.ObjectRef, iv, ciphertext, aad []byte) ([]byte, error) {
	start := time.Now()
	pt, err := t.Token.Decrypt(ctx, ref, iv, ciphertext, aad)
	t.observe(opDecrypt, start, err)
	return pt, err
}

func (t *instrumentedToken) SetDecryptOnly(ctx context.Context, ref hsm.ObjectRef) error {
	start := time.Now()
	err := t.Token.SetDecryptOnly(ctx, ref)
	t.observe(opSetDecryptOnly, start, err)
	return err
}

func (t *instrumentedToken) Destroy(ctx context.Context, ref hsm.ObjectRef) error {
	start := time.Now()
	err := t.Token.Destroy(ctx, ref)
	t.observe(opDestroy, start, err)
	return err
}

func (t *instrumentedToken) Random(ctx context.Context, n int) ([]byte, error) {
	start := time.Now()
	b, err := t.Token.Random(ctx, n)
	t.observe(opRandom, start, err)
	return b, err
}

func (t *instrumentedToken) Inventory(ctx context.Context) ([]hsm.ObjectInfo, error) {
	start := time.Now()
	objs, err := t.Token.Inventory(ctx)
	t.observe(opInventory, start, err)
	if err == nil {
		t.m.tokenObjects.Set(float64(len(objs)))
	}
	return objs, err
}

func (t *instrumentedToken) Ping(ctx context.Context) error {
	start := time.Now()
	err := t.Token.Ping(ctx)
	t.observe(opPing, start, err)
	return err
}

func (t *instrumentedToken) GenerateWrappingKey(ctx context.Context, id string) (*rsa.PublicKey, error) {
	start := time.Now()
	k, err := t.Token.GenerateWrappingKey(ctx, id)
	t.observe(opGenerateWrappingKey, start, err)
	return k, err
}

func (t *instrumentedToken) DestroyWrappingKey(ctx context.Context, id string) error {
	start := time.Now()
	err := t.Token.DestroyWrappingKey(ctx, id)
	t.observe(opDestroyWrappingKey, start, err)
	return err
}

func (t *instrumentedToken) Import(ctx context.Context, id, alg string, wrapped []byte, ref hsm.ObjectRef) error {
	start := time.Now()
	err := t.Token.Import(ctx, id, alg, wrapped, ref)
	t.observe(opImport, start, err)
	return err
}

func (t *instrumentedToken) KeyCheckValue(ctx context.Context, ref hsm.ObjectRef) ([]byte, error) {
	start := time.Now()
	kcv, err := t.Token.KeyCheckValue(ctx, ref)
	t.observe(opKeyCheckValue, start, err)
	return kcv, err
}

// StatsSource is a token that reports its counters (*hsm.PKCS11).
type StatsSource interface {
	Stats() hsm.Stats
}

// tokenStatsCollector exports hsm.Stats, read at each scrape.
type tokenStatsCollector struct {
	src                                                    StatsSource
	searches, cacheHits, cacheMisses, resets, opened       *prometheus.Desc
	sessionsOpen, sessionsIdle, sessionsInUse, sessionsMax *prometheus.Desc
}

func newTokenStatsCollector(src StatsSource) *tokenStatsCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "token", name), help, nil, nil)
	}
	return &tokenStatsCollector{src: src,
		searches:      d("searches_total", "C_FindObjects runs; must not grow with request traffic (handles are cached)."),
		cacheHits:     d("handle_cache_hits_total", "Object handle lookups answered from memory."),
		cacheMisses:   d("handle_cache_misses_total", "Object handle lookups that needed a search."),
		resets:        d("resets_total", "Recoveries after dead sessions or a token reset."),
		opened:        d("sessions_opened_total", "PKCS#11 sessions opened."),
		sessionsOpen:  d("sessions_open", "PKCS#11 sessions open now."),
		sessionsIdle:  d("sessions_idle", "Open sessions waiting in the pool."),
		sessionsInUse: d("sessions_in_use", "Sessions lent to a call now."),
		sessionsMax:   d("sessions_max", "Most sessions the pool lends at once."),
	}
}

func (c *tokenStatsCollector) descs() []*prometheus.Desc {
	return []*prometheus.Desc{c.searches, c.cacheHits, c.cacheMisses, c.resets, c.opened,
		c.sessionsOpen, c.sessionsIdle, c.sessionsInUse, c.sessionsMax}
}

// Describe implements prometheus.Collector.
func (c *tokenStatsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *tokenStatsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter(c.searches, s.Searches)
	counter(c.cacheHits, s.CacheHits)
	counter(c.cacheMisses, s.CacheMisses)
	counter(c.resets, s.Resets)
	counter(c.opened, s.SessionsOpened)
	gauge(c.sessionsOpen, s.SessionsOpen)
	gauge(c.sessionsIdle, s.SessionsIdle)
	gauge(c.sessionsInUse, s.SessionsInUse)
	gauge(c.sessionsMax, s.MaxSessions)
}
