package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	kmsservice "k8s.io/kms/pkg/service"
)

// kmsd stops: Status answers "not ok" (an answer, not a timeout of the
// apiserver's call) and keeps the last key_id, so the apiserver keeps
// writing with its DEK; kmsd comes back: Status is ok again and data
// flows, with the same plugin process.
func TestKmsdDownAndBack(t *testing.T) {
	f := newFixture(t, kmstest.Options{}, nil, client.CreateKeyRequest{})
	p := f.plugin(t)
	as := newAPIServer(t, p.socket)
	before := as.mustProbe(t)
	data := as.write(t, "before", []byte("written before the outage"))

	f.kmsd.stop()
	start := time.Now()
	st, err := as.svc.Status(kmstest.Ctx(t))
	if err != nil {
		t.Fatalf("Status with kmsd down: %v (want an answer saying not ok)", err)
	}
	t.Logf("Status with kmsd down answered in %v: %q", time.Since(start), st.Healthz)
	if st.Healthz == "ok" || !strings.Contains(st.Healthz, "kmsd unreachable") || st.Version != "v2" || st.KeyID != before.KeyID {
		t.Fatalf("Status with kmsd down: %+v", st)
	}
	if _, err := as.probe(kmstest.Ctx(t)); err == nil {
		t.Fatal("the apiserver's health check passed with kmsd down")
	}
	// The key_id is unchanged, so the apiserver keeps its DEK for writes;
	// reads with the DEK it has cached need no plugin either.
	during := as.write(t, "during", []byte("written during the outage"))
	if got, _ := as.read(t, "before", data); string(got) != "written before the outage" {
		t.Fatalf("read with the cached DEK: %q", got)
	}
	if _, err := as.svc.Encrypt(kmstest.Ctx(t), "uid", []byte("0123456789abcdef0123456789abcdef")); err == nil || !strings.Contains(err.Error(), "Unavailable") {
		t.Fatalf("Encrypt with kmsd down: %v", err)
	}

	f.kmsd.start()
	waitFor(t, "Status ok after kmsd restarted", func() bool {
		st, err := as.svc.Status(kmstest.Ctx(t))
		return err == nil && st.Healthz == "ok"
	})
	select {
	case code := <-p.done:
		t.Fatalf("the plugin exited (%d) during the outage", code)
	default:
	}
	as.mustProbe(t)
	fresh := newAPIServer(t, p.socket)
	fresh.mustProbe(t)
	if got, _ := fresh.read(t, "before", data); string(got) != "written before the outage" {
		t.Fatalf("read back %q", got)
	}
	if got, _ := fresh.read(t, "during", during); string(got) != "written during the outage" {
		t.Fatalf("read back %q", got)
	}
	if logs := p.stderr.String(); !contains(logs, `"msg":"unhealthy"`, `"msg":"healthy"`) {
		t.Errorf("the log does not show the outage and the recovery:\n%s", logs)
	}
}

// A kmsd that accepts connections and never answers (an injected fault: a
// hung process or a network that drops replies) costs Status -timeout,
// not the apiserver's whole call timeout.
func TestKmsdHangs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	p := startPlugin(t, map[string]string{"KMS_TOKEN": "kms_0123456789abcdef_never-checked"},
		"-addr", "http://"+ln.Addr().String(), "-key", "alias/kubernetes-secrets", "-timeout", "300ms")
	if !strings.Contains(p.stderr.String(), "kmsd not reachable at start") {
		t.Errorf("no warning at start:\n%s", p.stderr)
	}
	st, err := newAPIServer(t, p.socket).svc.Status(kmstest.Ctx(t))
	if err != nil || st.Healthz != "kmsd did not answer in time" || st.KeyID != "unknown" {
		t.Fatalf("Status with a hung kmsd: %+v %v", st, err)
	}
}

// A disabled key makes Status not ok, with kmsd's reason, and DEKs under it
// do not decrypt; enabled again, it works without a restart.
func TestDisabledKey(t *testing.T) {
	f := newFixture(t, kmstest.Options{}, nil, client.CreateKeyRequest{})
	p := f.plugin(t)
	as := newAPIServer(t, p.socket)
	as.mustProbe(t)
	data := as.write(t, "s", []byte("under a key about to be disabled"))
	ctx := kmstest.Ctx(t)
	if _, err := f.admin.DisableKey(ctx, f.keyID); err != nil {
		t.Fatal(err)
	}
	st, err := as.svc.Status(ctx)
	if err != nil || !strings.HasPrefix(st.Healthz, "kmsd: DisabledException: ") || st.KeyID != f.keyID+":v1" {
		t.Fatalf("Status of a disabled key: %+v %v", st, err)
	}
	o := stored(t, data)
	if _, err := as.svc.Decrypt(ctx, "uid", &kmsservice.DecryptRequest{Ciphertext: o.EncryptedDEKSource, KeyID: o.KeyID, Annotations: o.Annotations}); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "DisabledException") {
		t.Fatalf("decrypt a DEK under a disabled key: %v", err)
	}
	fresh := newAPIServer(t, p.socket)
	if _, err := f.admin.EnableKey(ctx, f.keyID); err != nil {
		t.Fatal(err)
	}
	fresh.mustProbe(t)
	if got, _ := fresh.read(t, "s", data); string(got) != "under a key about to be disabled" {
		t.Fatalf("read after enabling: %q", got)
	}
}
