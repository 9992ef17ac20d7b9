package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
	"k8s.io/apiserver/pkg/storage/value"
	"k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2"
	"k8s.io/klog/v2"
	kmsservice "k8s.io/kms/pkg/service"
)

// TestMain runs the suite on a throwaway token, then scans every log line
// (kmsd's and the plugin's) for the bearer tokens.
func TestMain(m *testing.M) {
	// The apiserver's code logs with klog: into the scanned log, not stderr.
	klog.LogToStderr(false)
	klog.SetOutput(kmstest.LogWriter())
	code := softhsmtest.Run(m)
	if code == 0 && kmstest.LogBytes() > 0 {
		if err := kmstest.CheckLogs(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// kmsd is the REST API of a real stack (SoftHSM, SQLite) on an address it
// keeps, so that a test can stop it and start it again.
type kmsd struct {
	t       *testing.T
	stack   *kmstest.Stack
	handler http.Handler
	tls     *tls.Config // nil: plain HTTP
	addr    string
	mu      sync.Mutex
	srv     *http.Server
}

func startKmsd(t *testing.T, opts kmstest.Options, tc *tls.Config) *kmsd {
	t.Helper()
	s := kmstest.Start(t, opts)
	k := &kmsd{t: t, stack: s, tls: tc, addr: "127.0.0.1:0",
		handler: api.New(api.Config{Service: s.Service, Logger: kmstest.Logger()})}
	k.start()
	t.Cleanup(k.stop)
	return k
}

func (k *kmsd) url() string {
	if k.tls != nil {
		return "https://" + k.addr
	}
	return "http://" + k.addr
}

// start listens on the address of the previous start (Go sets SO_REUSEADDR;
// should another process have taken the port meanwhile, it retries).
func (k *kmsd) start() {
	k.t.Helper()
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if ln, err = net.Listen("tcp", k.addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		k.t.Fatalf("kmsd listen %s: %v", k.addr, err)
	}
	k.addr = ln.Addr().String()
	if k.tls != nil {
		ln = tls.NewListener(ln, k.tls)
	}
	srv := &http.Server{Handler: k.handler, ErrorLog: log.New(kmstest.LogWriter(), "kmsd http: ", 0)}
	go srv.Serve(ln)
	k.mu.Lock()
	k.srv = srv
	k.mu.Unlock()
}

// stop closes the listener and every connection: kmsd is gone.
func (k *kmsd) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.srv != nil {
		k.srv.Close()
		k.srv = nil
	}
}

const principal = "kube-apiserver-kms"

// fixture is kmsd with a key for Kubernetes and the plugin's principal,
// which has exactly the policy of docs/kubernetes.md (documentedPolicy).
type fixture struct {
	kmsd  *kmsd
	admin *client.Client
	keyID string
	token string // the plugin principal's bearer token
}

func newFixture(t *testing.T, opts kmstest.Options, tc *tls.Config, key client.CreateKeyRequest) *fixture {
	t.Helper()
	k := startKmsd(t, opts, tc)
	ctx := kmstest.Ctx(t)
	admin := k.stack.Client
	if key.Alias == "" {
		key.Alias = "alias/kubernetes-secrets"
	}
	created, err := admin.CreateKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.PutPolicy(ctx, principal, documentedPolicy(t, created.KeyID)); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreatePrincipal(ctx, client.CreatePrincipalRequest{Name: principal, Policies: []string{principal},
		CertSubject: "CN=" + principal}); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.CreateToken(ctx, principal, "kms-k8s-plugin")
	if err != nil {
		t.Fatal(err)
	}
	kmstest.Secret(tok.Token)
	return &fixture{kmsd: k, admin: admin, keyID: created.KeyID, token: tok.Token}
}

// syncBuffer collects a plugin's stderr; it also goes to the log scan.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	kmstest.LogWriter().Write(p)
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// plugin is one run of the plugin inside the test process.
type runningPlugin struct {
	socket string
	stderr *syncBuffer
	stop   context.CancelFunc
	done   chan int
}

// startPlugin runs the plugin with args after -listen and waits until its
// socket exists; env is its environment. It is stopped when the test ends.
func startPlugin(t *testing.T, env map[string]string, args ...string) *runningPlugin {
	t.Helper()
	p := &runningPlugin{socket: filepath.Join(t.TempDir(), "kms.sock"), stderr: &syncBuffer{}, done: make(chan int, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	p.stop = cancel
	go func() { p.done <- run(ctx, append([]string{"-listen", p.socket}, args...), p.stderr, mapEnv(env)) }()
	t.Cleanup(func() {
		cancel()
		if code := <-p.done; code != 0 {
			t.Errorf("plugin exited %d:\n%s", code, p.stderr)
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(p.socket); err == nil {
			return p
		}
		select {
		case code := <-p.done:
			p.done <- code
			t.Fatalf("plugin exited %d before serving:\n%s", code, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no socket after 30 s:\n%s", p.stderr)
		}
	}
}

func mapEnv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// plugin starts the plugin on the fixture's key with its token in
// KMS_TOKEN, logging every call (the log scan reads it all).
func (f *fixture) plugin(t *testing.T, args ...string) *runningPlugin {
	t.Helper()
	return startPlugin(t, map[string]string{"KMS_TOKEN": f.token, "KMS_LOG_LEVEL": "debug"},
		append([]string{"-addr", f.kmsd.url(), "-key", "alias/kubernetes-secrets"}, args...)...)
}

// apiserver is the kube-apiserver's side of KMS v2: its real gRPC client
// and envelope transformer (k8s.io/apiserver/.../envelope/kmsv2), and the
// health-check loop of its encryption configuration
// (server/options/encryptionconfig, rotateDEKOnKeyIDChange): Status, and a
// new DEK seed whenever key_id changes, accepted only when Encrypt returns
// the key_id Status reported. A test calls probe where the apiserver's loop
// would run (every minute, every 10 s while unhealthy).
type apiserver struct {
	svc         kmsservice.Service
	state       atomic.Pointer[kmsv2.State]
	transformer value.Transformer
}

const providerName = "hsmkms"

func newAPIServer(t *testing.T, socket string) *apiserver {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	svc, err := kmsv2.NewGRPCService(ctx, "unix://"+socket, providerName, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a := &apiserver{svc: svc}
	a.state.Store(&kmsv2.State{KMSProviderName: providerName})
	a.transformer = kmsv2.NewEnvelopeTransformer(svc, providerName, a.current, "test-apiserver")
	return a
}

func (a *apiserver) current() (kmsv2.State, error) {
	s := *a.state.Load()
	if s.Transformer == nil {
		return kmsv2.State{}, errors.New("no DEK yet")
	}
	return s, nil
}

// errKeyIDMismatch is the apiserver refusing a DEK whose Encrypt answered
// another key_id than Status.
var errKeyIDMismatch = errors.New("the key_id of Encrypt is not that of Status")

// probe is one run of the apiserver's health check. Like the apiserver's,
// it compares key_id with its DEK's even when healthz is not "ok": an
// unchanged key_id keeps the DEK usable for writes.
func (a *apiserver) probe(ctx context.Context) (*kmsservice.StatusResponse, error) {
	st, err := a.svc.Status(ctx)
	if err != nil {
		return nil, err
	}
	var errs []error
	if st.Healthz != "ok" || st.Version != kmsv2.KMSAPIVersionv2 {
		errs = append(errs, fmt.Errorf("unhealthy: healthz %q, version %q", st.Healthz, st.Version))
	}
	if _, err := kmsv2.ValidateKeyID(st.KeyID); err != nil {
		return st, errors.Join(append(errs, err)...)
	}
	return st, errors.Join(append(errs, a.rotateOnKeyIDChange(ctx, st.KeyID))...)
}

// rotateOnKeyIDChange extends the DEK's write validity while key_id is
// unchanged, and otherwise makes a new DEK seed, accepted only when Encrypt
// returns Status's key_id.
func (a *apiserver) rotateOnKeyIDChange(ctx context.Context, statusKeyID string) error {
	expires := time.Now().Add(3 * time.Minute) // kmsv2PluginWriteDEKSourceMaxTTL
	if cur := *a.state.Load(); cur.Transformer != nil && cur.EncryptedObjectKeyID == statusKeyID {
		cur.ExpirationTimestamp = expires
		a.state.Store(&cur)
		return nil
	}
	uid := uuid.NewString()
	tr, obj, cacheKey, err := kmsv2.GenerateTransformer(ctx, uid, a.svc, true)
	if err != nil {
		return err
	}
	if obj.KeyID != statusKeyID {
		return fmt.Errorf("%w: %q, %q", errKeyIDMismatch, obj.KeyID, statusKeyID)
	}
	a.state.Store(&kmsv2.State{
		Transformer: tr, EncryptedObjectKeyID: obj.KeyID, EncryptedObjectEncryptedDEKSource: obj.EncryptedDEKSource,
		EncryptedObjectAnnotations: obj.Annotations, EncryptedObjectEncryptedDEKSourceType: obj.EncryptedDEKSourceType,
		UID: uid, ExpirationTimestamp: expires, CacheKey: cacheKey, KMSProviderName: providerName,
	})
	return nil
}

func (a *apiserver) mustProbe(t *testing.T) *kmsservice.StatusResponse {
	t.Helper()
	st, err := a.probe(kmstest.Ctx(t))
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	return st
}

// secretPath is the etcd key the apiserver authenticates a Secret with.
func secretPath(name string) value.Context {
	return value.DefaultContext("/registry/secrets/default/" + name)
}

func (a *apiserver) write(t *testing.T, name string, plain []byte) []byte {
	t.Helper()
	out, err := a.transformer.TransformToStorage(kmstest.Ctx(t), plain, secretPath(name))
	if err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	return out
}

func (a *apiserver) read(t *testing.T, name string, stored []byte) ([]byte, bool) {
	t.Helper()
	out, stale, err := a.transformer.TransformFromStorage(kmstest.Ctx(t), stored, secretPath(name))
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return out, stale
}

// waitFor polls cond every 50 ms until it holds or a generous limit passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 60 s", what)
		}
	}
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
