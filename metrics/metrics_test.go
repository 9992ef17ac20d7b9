package metrics_test

import (
	"runtime"

	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/buildinfo"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
	"github.com/hsmkms/hsmkms/metrics"
	"github.com/hsmkms/hsmkms/service"
)

func TestMain(m *testing.M) { os.Exit(softhsmtest.Run(m)) }

// stack is a real hsmkms (the test binary's SoftHSM token, a fresh SQLite
// database, the service, the REST API) with metrics wired as kmsd wires
// them: the service's token wrapped, /metrics and Observe on the API.
type stack struct {
	m      *metrics.Metrics
	svc    *service.Service
	store  *countingStore
	url    string
	client *client.Client
}

type stackOptions struct {
	metrics service.Clock // the metrics cache's clock (default: system)
	svc     service.Config
	keysTTL time.Duration
}

func start(t *testing.T, o stackOptions) *stack {
	t.Helper()
	log := kmstest.Logger()
	s := &stack{store: &countingStore{Store: kmstest.Store(t)}}
	s.m = metrics.New(metrics.Config{Logger: log, Clock: o.metrics, KeysTTL: o.keysTTL})
	o.svc.Logger = log
	s.svc = service.New(s.store, s.m.Token(kmstest.Token(t)), o.svc)
	t.Cleanup(s.svc.Close)
	s.m.WatchService(s.svc)
	if _, err := s.svc.Access.Bootstrap(context.Background(), kmstest.AdminToken); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	e := api.New(api.Config{Service: s.svc, Logger: log, Extra: s.m.Register, Observe: s.m.Observe})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	s.url = srv.URL
	s.client = client.New(srv.URL, kmstest.AdminToken, srv.Client())
	return s
}

// countingStore counts CountKeysByState calls: the metrics cache must keep
// scrapes off the database.
type countingStore struct {
	service.Store
	counts atomic.Int64
}

func (c *countingStore) CountKeysByState(ctx context.Context) (map[service.KeyState]int, error) {
	c.counts.Add(1)
	return c.Store.CountKeysByState(ctx)
}

// scrape GETs /metrics without a bearer token and parses the text format.
func (s *stack) scrape(t *testing.T) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.url+metrics.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", res.StatusCode, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse the scrape: %v\n%s", err, body)
	}
	return fams, string(body)
}

// value sums the samples of family name whose labels match want; a label
// given as "a|b" matches either value. Counters, gauges and histogram
// counts are summed; found is false when no sample matched.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (v float64, found bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if !matches(m, want) {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			v += m.Untyped.GetValue()
		}
	}
	return v, found
}

func matches(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, w := range want {
		ok := false
		for _, alt := range strings.Split(w, "|") {
			ok = ok || got[k] == alt
		}
		if !ok {
			return false
		}
	}
	return true
}

// check fails unless family name, filtered by labels, sums to want.
func check(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string, want float64) {
	t.Helper()
	got, found := value(fams, name, labels)
	if !found {
		t.Errorf("%s%v: no sample", name, labels)
		return
	}
	if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// Operations as the requests metric names them: the action once the API
// reports it, else the method and route pattern.
const (
	opEncrypt = "kms:Encrypt|POST /v1/encrypt"
	opDecrypt = "kms:Decrypt|POST /v1/decrypt"
	opRotate  = "kms:RotateKey|POST /v1/keys/:key/rotate"
	opCreate  = "kms:CreateKey|POST /v1/keys"
)

// TestScrape drives a real stack through encryptions, a rotation and
// failures, then checks each family and that the scrape holds no secret.
func TestScrape(t *testing.T) {
	s := start(t, stackOptions{})
	ctx := kmstest.Ctx(t)
	key, err := s.client.CreateKey(ctx, client.CreateKeyRequest{Description: "metrics"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.client.CreateKey(ctx, client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.DisableKey(ctx, other.KeyID); err != nil {
		t.Fatal(err)
	}

	plaintext := []byte("metrics-plaintext-" + uuid.NewString())
	var blob []byte
	for range 3 {
		r, err := s.client.Encrypt(ctx, key.KeyID, plaintext, map[string]string{"purpose": "metrics"})
		if err != nil {
			t.Fatal(err)
		}
		blob = r.CiphertextBlob
	}
	if _, err := s.client.RotateKey(ctx, key.KeyID); err != nil {
		t.Fatal(err)
	}
	// Bring your own key: import parameters make a wrapping key pair.
	ext, err := s.client.CreateKey(ctx, client.CreateKeyRequest{Origin: "EXTERNAL"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.GetParametersForImport(ctx, ext.KeyID, "RSA_AES_KEY_WRAP_SHA_1"); err != nil {
		t.Fatal(err)
	}
	// One failed request that reaches the token: the tag does not verify.
	tampered := bytes.Clone(blob)
	tampered[len(tampered)-1] ^= 1
	if _, err := s.client.Decrypt(ctx, tampered, map[string]string{"purpose": "metrics"}, ""); client.Code(err) != api.CodeInvalidCiphertext {
		t.Fatalf("decrypt of a tampered blob: %v, want %s", err, api.CodeInvalidCiphertext)
	}
	// One refused before any operation, with a bearer token that must not leak.
	badBearer := "wrong-bearer-" + uuid.NewString()
	bad := client.New(s.url, badBearer, nil)
	if _, err := bad.Encrypt(ctx, key.KeyID, plaintext, nil); client.Code(err) != api.CodeUnauthenticated {
		t.Fatalf("encrypt with a bad token: %v, want %s", err, api.CodeUnauthenticated)
	}
	// A path of the client's choosing must not become a label value.
	rawPath := "/v1/no-such-thing-" + uuid.NewString()
	if err := s.client.Do(ctx, http.MethodGet, rawPath, nil, nil); client.Code(err) != api.CodeNotFound {
		t.Fatalf("GET %s: %v, want %s", rawPath, err, api.CodeNotFound)
	}

	fams, body := s.scrape(t)

	t.Run("build info", func(t *testing.T) {
		bi := buildinfo.Get()
		check(t, fams, "hsmkms_build_info", map[string]string{"version": bi.Version, "commit": bi.Commit, "goversion": runtime.Version()}, 1)
	})
	t.Run("requests", func(t *testing.T) {
		check(t, fams, "hsmkms_requests_total", map[string]string{"operation": opEncrypt, "outcome": "ok"}, 3)
		check(t, fams, "hsmkms_requests_total", map[string]string{"operation": opCreate, "outcome": "ok"}, 3)
		check(t, fams, "hsmkms_requests_total", map[string]string{"operation": opRotate, "outcome": "ok"}, 1)
		check(t, fams, "hsmkms_requests_total", map[string]string{"operation": opDecrypt, "outcome": api.CodeInvalidCiphertext}, 1)
		check(t, fams, "hsmkms_requests_total", map[string]string{"outcome": api.CodeUnauthenticated}, 1)
		check(t, fams, "hsmkms_requests_total", map[string]string{"operation": "unmatched", "outcome": api.CodeNotFound}, 1)
		check(t, fams, "hsmkms_request_duration_seconds", map[string]string{"operation": opEncrypt, "outcome": "ok"}, 3)
	})
	t.Run("token", func(t *testing.T) {
		check(t, fams, "hsmkms_token_operations_total", map[string]string{"operation": "encrypt", "outcome": "ok"}, 3)
		check(t, fams, "hsmkms_token_operations_total", map[string]string{"operation": "decrypt", "outcome": "decrypt_failed"}, 1)
		// Two keys created and one rotation: three objects generated.
		check(t, fams, "hsmkms_token_operations_total", map[string]string{"operation": "generate_key", "outcome": "ok"}, 3)
		check(t, fams, "hsmkms_token_operations_total", map[string]string{"operation": "set_decrypt_only", "outcome": "ok"}, 1)
		check(t, fams, "hsmkms_token_operations_total", map[string]string{"operation": "generate_wrapping_key", "outcome": "ok"}, 1)
		check(t, fams, "hsmkms_token_operation_duration_seconds", map[string]string{"operation": "encrypt"}, 3)
		// The shared token's own counters, read from hsm.Stats at scrape time.
		st := kmstest.Token(t).Stats()
		check(t, fams, "hsmkms_token_sessions_max", nil, float64(st.MaxSessions))
		for _, name := range []string{"hsmkms_token_searches_total", "hsmkms_token_handle_cache_hits_total",
			"hsmkms_token_handle_cache_misses_total", "hsmkms_token_resets_total", "hsmkms_token_sessions_opened_total",
			"hsmkms_token_sessions_open", "hsmkms_token_sessions_idle", "hsmkms_token_sessions_in_use"} {
			if _, ok := value(fams, name, nil); !ok {
				t.Errorf("%s missing", name)
			}
		}
		if v, _ := value(fams, "hsmkms_token_handle_cache_hits_total", nil); v < 1 {
			t.Errorf("handle cache hits = %v, want > 0 after three encryptions", v)
		}
	})
	t.Run("rotations", func(t *testing.T) {
		check(t, fams, "hsmkms_key_rotations_total", map[string]string{"type": "ON_DEMAND"}, 1)
		check(t, fams, "hsmkms_key_rotations_total", map[string]string{"type": "AUTOMATIC"}, 0)
	})
	t.Run("keys by state", func(t *testing.T) {
		check(t, fams, "hsmkms_keys", map[string]string{"state": "Enabled"}, 1)
		check(t, fams, "hsmkms_keys", map[string]string{"state": "Disabled"}, 1)
		check(t, fams, "hsmkms_keys", map[string]string{"state": "PendingDeletion"}, 0)
		check(t, fams, "hsmkms_keys", map[string]string{"state": "PendingImport"}, 1)
		check(t, fams, "hsmkms_keys", map[string]string{"state": "Deleted"}, 0)
	})
	t.Run("audit queue and runtime", func(t *testing.T) {
		for _, name := range []string{"hsmkms_audit_queue_depth", "go_goroutines", "process_open_fds",
			"promhttp_metric_handler_requests_total"} {
			if _, ok := value(fams, name, nil); !ok {
				t.Errorf("%s missing", name)
			}
		}
	})
	t.Run("no secrets, no unbounded labels", func(t *testing.T) {
		for what, secret := range map[string]string{
			"plaintext":            string(plaintext),
			"plaintext in base64":  base64.StdEncoding.EncodeToString(plaintext),
			"ciphertext in base64": base64.StdEncoding.EncodeToString(blob)[:24],
			"admin token":          kmstest.AdminToken,
			"rejected token":       badBearer,
			"key id":               key.KeyID,
			"raw path":             rawPath,
		} {
			if strings.Contains(body, secret) {
				t.Errorf("the scrape contains the %s", what)
			}
		}
	})
}

// TestAutomaticRotation: the worker's rotations count as AUTOMATIC.
func TestAutomaticRotation(t *testing.T) {
	clk := kmstest.NewClock()
	s := start(t, stackOptions{svc: service.Config{Clock: clk}})
	ctx := kmstest.Ctx(t)
	if _, err := s.client.CreateKey(ctx, client.CreateKeyRequest{AutomaticRotation: true, RotationInterval: "7d"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(8 * 24 * time.Hour)
	if err := s.svc.Worker.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	fams, _ := s.scrape(t)
	check(t, fams, "hsmkms_key_rotations_total", map[string]string{"type": "AUTOMATIC"}, 1)
	check(t, fams, "hsmkms_key_rotations_total", map[string]string{"type": "ON_DEMAND"}, 0)
	if st := s.svc.Stats(); st.Rotations[service.RotationAutomatic] != 1 {
		t.Errorf("Stats().Rotations = %v", st.Rotations)
	}
	for _, r := range service.FailureReasons {
		check(t, fams, "hsmkms_rotation_failures_total", map[string]string{"reason": r}, 0)
	}
}

// TestRotationFailures: an automatic rotation refused at the version cap
// counts under reason limit_exceeded.
func TestRotationFailures(t *testing.T) {
	clk := kmstest.NewClock()
	s := start(t, stackOptions{svc: service.Config{Clock: clk, MaxVersionsPerKey: 2}})
	ctx := kmstest.Ctx(t)
	k, err := s.client.CreateKey(ctx, client.CreateKeyRequest{AutomaticRotation: true, RotationInterval: "7d"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.RotateKey(ctx, k.KeyID); err != nil {
		t.Fatal(err)
	}
	clk.Advance(8 * 24 * time.Hour)
	if err := s.svc.Worker.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	fams, _ := s.scrape(t)
	check(t, fams, "hsmkms_rotation_failures_total", map[string]string{"reason": service.FailureLimitExceeded}, 1)
	check(t, fams, "hsmkms_rotation_failures_total", map[string]string{"reason": service.FailureInternal}, 0)
}

// TestKeysCache: keys by state is queried at most once per KeysTTL, by any
// number of concurrent scrapes.
func TestKeysCache(t *testing.T) {
	clk := kmstest.NewClock()
	s := start(t, stackOptions{metrics: clk, keysTTL: 5 * time.Second})
	ctx := kmstest.Ctx(t)
	if _, err := s.client.CreateKey(ctx, client.CreateKeyRequest{}); err != nil {
		t.Fatal(err)
	}
	fams, _ := s.scrape(t)
	check(t, fams, "hsmkms_keys", map[string]string{"state": "Enabled"}, 1)

	if _, err := s.client.CreateKey(ctx, client.CreateKeyRequest{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { s.scrape(t) })
	}
	wg.Wait()
	fams, _ = s.scrape(t)
	check(t, fams, "hsmkms_keys", map[string]string{"state": "Enabled"}, 1) // cached
	if n := s.store.counts.Load(); n != 1 {
		t.Errorf("%d keys-by-state queries within the TTL, want 1", n)
	}

	clk.Advance(5 * time.Second)
	fams, _ = s.scrape(t)
	check(t, fams, "hsmkms_keys", map[string]string{"state": "Enabled"}, 2)
	if n := s.store.counts.Load(); n != 2 {
		t.Errorf("%d keys-by-state queries, want 2", n)
	}
}

// TestKeysQueryFails: when the database does not answer, the scrape still
// serves everything else, and the failure is counted.
func TestKeysQueryFails(t *testing.T) {
	s := start(t, stackOptions{keysTTL: -1})
	ctx := kmstest.Ctx(t)
	if _, err := s.client.CreateKey(ctx, client.CreateKeyRequest{}); err != nil {
		t.Fatal(err)
	}
	s.svc.Close() // no audit record may be pending when the database goes
	if err := s.store.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		fams, _ := s.scrape(t)
		if _, ok := value(fams, "hsmkms_keys", nil); ok {
			t.Error("hsmkms_keys served although the database is closed")
		}
		check(t, fams, "hsmkms_requests_total", map[string]string{"operation": opCreate, "outcome": "ok"}, 1)
		// A scrape shows the errors of the scrapes before it.
		check(t, fams, "promhttp_metric_handler_errors_total", map[string]string{"cause": "gathering"}, float64(i))
	}
}

// TestTokenOutcomes: token errors are counted by kind, never by message.
func TestTokenOutcomes(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{fmt.Errorf("%w: no free session within 1s", hsm.ErrUnavailable), "unavailable"},
		{hsm.ErrLogin, "login_failed"},
		{hsm.ErrObjectNotFound, "object_not_found"},
		{hsm.ErrAttributeMismatch, "attribute_mismatch"},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), "deadline_exceeded"},
		{errors.New("CKR_GENERAL_ERROR secret-looking detail"), "other"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			m := metrics.New(metrics.Config{Logger: kmstest.Logger()})
			fault := kmstest.NewFaultToken(kmstest.Token(t))
			tok := m.Token(fault)
			if tt.err != nil {
				fault.FailNext("Ping", tt.err)
			}
			if err := tok.Ping(kmstest.Ctx(t)); !errors.Is(err, tt.err) {
				t.Fatalf("Ping = %v, want %v", err, tt.err)
			}
			fams, err := m.Registry().Gather()
			if err != nil {
				t.Fatal(err)
			}
			byName := map[string]*dto.MetricFamily{}
			for _, f := range fams {
				byName[f.GetName()] = f
			}
			check(t, byName, "hsmkms_token_operations_total", map[string]string{"operation": "ping", "outcome": tt.want}, 1)
			check(t, byName, "hsmkms_token_operations_total", nil, 1)
			check(t, byName, "hsmkms_token_operation_duration_seconds", map[string]string{"operation": "ping"}, 1)
		})
	}
}

// TestRequestLabels: the label values of a request come from closed sets,
// whatever the client sent.
func TestRequestLabels(t *testing.T) {
	tests := []struct {
		name        string
		ri          api.RequestInfo
		op, outcome string
	}{
		{"operation wins", api.RequestInfo{Method: "POST", Route: "/v1/encrypt", Operation: "kms:Encrypt", Status: 200},
			"kms:Encrypt", "ok"},
		{"route pattern without operation", api.RequestInfo{Method: "GET", Route: "/v1/keys/:key", Status: 404,
			ErrorCode: api.CodeNotFound}, "GET /v1/keys/:key", api.CodeNotFound},
		{"no route", api.RequestInfo{Method: "GET", Route: "", Status: 404, ErrorCode: api.CodeNotFound},
			"unmatched", api.CodeNotFound},
		{"a raw path is not a route pattern", api.RequestInfo{Method: "GET", Route: "v1/keys/1234", Status: 404},
			"unmatched", "error_4xx"},
		{"odd method", api.RequestInfo{Method: "BREW", Route: "/v1/keys", Status: 405,
			ErrorCode: api.CodeValidation}, "OTHER /v1/keys", api.CodeValidation},
		{"failure without a code", api.RequestInfo{Method: "GET", Route: "/healthz", Status: 503},
			"GET /healthz", "error_5xx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New(metrics.Config{})
			m.Observe(tt.ri)
			fams, err := m.Registry().Gather()
			if err != nil {
				t.Fatal(err)
			}
			byName := map[string]*dto.MetricFamily{}
			for _, f := range fams {
				byName[f.GetName()] = f
			}
			check(t, byName, "hsmkms_requests_total", map[string]string{"operation": tt.op, "outcome": tt.outcome}, 1)
			check(t, byName, "hsmkms_request_duration_seconds", map[string]string{"operation": tt.op, "outcome": tt.outcome}, 1)
		})
	}
}

// TestUnmatchedRoutes: requests to paths and methods of the client's
// choosing share a handful of series.
func TestUnmatchedRoutes(t *testing.T) {
	s := start(t, stackOptions{})
	for i := range 20 {
		method := http.MethodGet
		if i%2 == 1 {
			method = "X" + strings.ToUpper(uuid.NewString()[:8])
		}
		req, err := http.NewRequestWithContext(t.Context(), method, s.url+"/x/"+uuid.NewString(), nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	fams, body := s.scrape(t)
	if n := len(fams["hsmkms_requests_total"].GetMetric()); n > 3 {
		t.Errorf("%d request series after 20 requests to random paths, want few:\n%s", n, body)
	}
	check(t, fams, "hsmkms_requests_total", map[string]string{"operation": "unmatched"}, 20)
	if strings.Contains(body, "/x/") {
		t.Error("a raw path appears in the scrape")
	}
}

// hsmkms_token_objects is the number of objects the last inventory found,
// to alert before the HSM runs out of room.
func TestTokenObjects(t *testing.T) {
	s := start(t, stackOptions{})
	ctx := kmstest.Ctx(t)
	for range 2 {
		if _, err := s.client.CreateKey(ctx, client.CreateKeyRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	// The reconciler's inventory goes through the same wrapper.
	objs, err := s.m.Token(kmstest.Token(t)).Inventory(ctx)
	if err != nil || len(objs) < 2 {
		t.Fatalf("inventory: %d objects, %v", len(objs), err)
	}
	fams, _ := s.scrape(t)
	check(t, fams, "hsmkms_token_objects", nil, float64(len(objs)))
}

// TestGCMEncryptions: the count of AES-GCM encryptions (issue 16, item 5)
// reaches the metrics and the versions listing once flushed.
func TestGCMEncryptions(t *testing.T) {
	s := start(t, stackOptions{})
	ctx := kmstest.Ctx(t)
	k, err := s.client.CreateKey(ctx, client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := s.client.Encrypt(ctx, k.KeyID, []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.svc.Worker.FlushEncryptions(ctx); err != nil {
		t.Fatal(err)
	}
	fams, _ := s.scrape(t)
	check(t, fams, "hsmkms_gcm_encryptions_total", nil, 3)
	check(t, fams, "hsmkms_gcm_version_encryptions_max", nil, 3)
	vs, err := s.client.ListVersions(ctx, k.KeyID)
	if err != nil || len(vs) != 1 || vs[0].Encryptions != 3 {
		t.Fatalf("versions %+v, %v; want 3 encryptions", vs, err)
	}
}
