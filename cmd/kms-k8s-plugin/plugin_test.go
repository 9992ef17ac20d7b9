package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/blob"
	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2"
	kmstypes "k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2/v2"
	kmsservice "k8s.io/kms/pkg/service"
)

func random(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// stored decodes what the apiserver would put in etcd.
func stored(t *testing.T, data []byte) *kmstypes.EncryptedObject {
	t.Helper()
	var o kmstypes.EncryptedObject
	if err := proto.Unmarshal(data, &o); err != nil {
		t.Fatal(err)
	}
	return &o
}

// Secret-sized values go through the apiserver's own KMS v2 code and back;
// Status and Encrypt name the same key_id, the primary version, and the
// stored DEK record says so in its blob and its annotations.
func TestRoundTripThroughTheAPIServersClient(t *testing.T) {
	f := newFixture(t, kmstest.Options{}, nil, client.CreateKeyRequest{})
	p := f.plugin(t)
	as := newAPIServer(t, p.socket)
	st := as.mustProbe(t)
	want := f.keyID + ":v1"
	if st.KeyID != want || st.Healthz != "ok" || st.Version != "v2" {
		t.Fatalf("Status = %+v, want key_id %s", st, want)
	}
	values := map[string][]byte{"small": []byte("password"), "cert": random(t, 4<<10), "big": random(t, 256<<10)}
	data := map[string][]byte{}
	for name, v := range values {
		data[name] = as.write(t, name, v)
		o := stored(t, data[name])
		if o.KeyID != st.KeyID {
			t.Errorf("%s: stored key_id %q, Status said %q", name, o.KeyID, st.KeyID)
		}
		h, err := blob.Parse(o.EncryptedDEKSource)
		if err != nil || h.String() != want || len(o.EncryptedDEKSource) > 1024 {
			t.Errorf("%s: DEK blob %x: %v %v", name, o.EncryptedDEKSource, h, err)
		}
		if string(o.Annotations["key.hsmkms.io"]) != f.keyID || string(o.Annotations["version.hsmkms.io"]) != "1" || len(o.Annotations) != 2 {
			t.Errorf("%s: annotations %q", name, o.Annotations)
		}
	}
	// A second apiserver (a restart: no DEK cached) decrypts through the plugin.
	fresh := newAPIServer(t, p.socket)
	fresh.mustProbe(t)
	for name, v := range values {
		got, stale := fresh.read(t, name, data[name])
		if !bytes.Equal(got, v) || stale {
			t.Errorf("%s: read back %d bytes (stale %v), want %d", name, len(got), stale, len(v))
		}
	}
	if logs := p.stderr.String(); !contains(logs, `"msg":"encrypt"`, `"msg":"decrypt"`, `"key_id":"`+want+`"`) {
		t.Errorf("KMS_LOG_LEVEL=debug does not log the calls:\n%s", logs)
	}
	// The same key_id from a direct Encrypt, and the version kmsd reports.
	enc, err := as.svc.Encrypt(kmstest.Ctx(t), "uid-1", random(t, 32))
	if err != nil || enc.KeyID != want {
		t.Fatalf("Encrypt: %+v %v", enc, err)
	}
	dec, err := f.admin.Decrypt(kmstest.Ctx(t), enc.Ciphertext, dekContext, "")
	if err != nil || dec.KeyVersion != 1 || dec.KeyID != f.keyID {
		t.Fatalf("the DEK blob as kmsd sees it: %+v %v", dec, err)
	}
}

// A rotation, on demand or automatic, changes Status's key_id at the next
// Status (the refresh bound is one Status call); the apiserver's next
// health check makes a DEK under it, new data uses it, and data under every
// older version still decrypts, reported stale so that a storage migration
// rewrites it. A rotation between Status and Encrypt makes Encrypt say the
// version that encrypted, which the apiserver refuses until the next Status.
func TestRotationFlowsThrough(t *testing.T) {
	clock := kmstest.NewClock()
	f := newFixture(t, kmstest.Options{Config: service.Config{Clock: clock}}, nil,
		client.CreateKeyRequest{AutomaticRotation: true, RotationInterval: "7d"})
	p := f.plugin(t)
	as := newAPIServer(t, p.socket)
	ctx := kmstest.Ctx(t)
	rotations := []struct {
		how    string
		rotate func()
	}{
		{"on demand", func() {
			if _, err := f.admin.RotateKey(ctx, f.keyID); err != nil {
				t.Fatal(err)
			}
		}},
		{"automatic", func() {
			clock.Advance(8 * 24 * time.Hour)
			if err := f.kmsd.stack.Service.Worker.RunDue(ctx); err != nil {
				t.Fatal(err)
			}
		}},
	}
	if st := as.mustProbe(t); st.KeyID != f.keyID+":v1" {
		t.Fatalf("Status: %q", st.KeyID)
	}
	data := [][]byte{as.write(t, "v1", []byte("secret under v1"))}
	for i, r := range rotations {
		version := i + 2
		r.rotate()
		want := f.keyID + ":v" + strconv.Itoa(version)
		st := as.mustProbe(t) // the first Status after the rotation
		if st.KeyID != want {
			t.Fatalf("%s rotation: Status key_id %q, want %q", r.how, st.KeyID, want)
		}
		d := as.write(t, "v"+strconv.Itoa(version), []byte("secret under v"+strconv.Itoa(version)))
		if o := stored(t, d); o.KeyID != want || string(o.Annotations["version.hsmkms.io"]) != strconv.Itoa(version) {
			t.Fatalf("%s rotation: new data stored under %q %q", r.how, o.KeyID, o.Annotations)
		}
		data = append(data, d)
	}
	// The race: Status reports v3, the key rotates to v4, the apiserver's
	// Encrypt gets v4 and refuses it; its next health check succeeds.
	st, err := as.svc.Status(ctx)
	if err != nil || st.KeyID != f.keyID+":v3" {
		t.Fatalf("Status: %+v %v", st, err)
	}
	if _, err := f.admin.RotateKey(ctx, f.keyID); err != nil {
		t.Fatal(err)
	}
	enc, err := as.svc.Encrypt(ctx, "race", random(t, 32))
	if err != nil || enc.KeyID != f.keyID+":v4" {
		t.Fatalf("Encrypt after a rotation that Status has not reported: %+v %v (want the version that encrypted, v4)", enc, err)
	}
	if h, _ := blob.Parse(enc.Ciphertext); h.Version != 4 || string(enc.Annotations["version.hsmkms.io"]) != "4" {
		t.Fatalf("blob says %v, annotation %q", h, enc.Annotations["version.hsmkms.io"])
	}
	if st := as.mustProbe(t); st.KeyID != f.keyID+":v4" {
		t.Fatalf("next Status: %q", st.KeyID)
	}
	// And the mismatch itself, as the apiserver's check sees it: a probe whose
	// Status is v4 while a rotation to v5 lands before its Encrypt.
	racer := &raceService{Service: as.svc, between: func() {
		if _, err := f.admin.RotateKey(ctx, f.keyID); err != nil {
			t.Error(err)
		}
	}}
	raced := &apiserver{svc: racer}
	raced.state.Store(&kmsv2.State{KMSProviderName: providerName})
	if _, err := raced.probe(ctx); !errors.Is(err, errKeyIDMismatch) {
		t.Fatalf("a rotation between Status and Encrypt: %v, want the apiserver's key_id mismatch", err)
	}
	data = append(data, as.write(t, "v4", []byte("secret under v4")))
	// A fresh apiserver reads everything: every older version decrypts,
	// and only data under the current key_id is not stale.
	fresh := newAPIServer(t, p.socket)
	if st := fresh.mustProbe(t); st.KeyID != f.keyID+":v5" {
		t.Fatalf("Status after the raced rotation: %q", st.KeyID)
	}
	for i, d := range data {
		v := i + 1
		got, stale := fresh.read(t, fmt.Sprintf("v%d", v), d)
		if string(got) != fmt.Sprintf("secret under v%d", v) || !stale {
			t.Errorf("data under v%d: %q, stale %v (want stale: the key_id is now v5)", v, got, stale)
		}
	}
	d := fresh.write(t, "v5", []byte("secret under v5"))
	if _, stale := fresh.read(t, "v5", d); stale {
		t.Error("data under the current key_id is stale")
	}
	if logs := p.stderr.String(); !contains(logs, `"key_id":"`+f.keyID+`:v5"`, `"previous_key_id":"`+f.keyID+`:v4"`) {
		t.Errorf("the plugin's log does not show the key_id moving:\n%s", logs)
	}
}

// raceService runs between after Status, before the Encrypt that follows.
type raceService struct {
	kmsservice.Service
	between func()
}

func (r *raceService) Status(ctx context.Context) (*kmsservice.StatusResponse, error) {
	st, err := r.Service.Status(ctx)
	r.between()
	return st, err
}

// Requests the plugin must refuse, each with a clear gRPC error, and those
// refused locally never reach kmsd (its audit trail has no record of them).
func TestBadRequests(t *testing.T) {
	f := newFixture(t, kmstest.Options{}, nil, client.CreateKeyRequest{})
	p := f.plugin(t)
	as := newAPIServer(t, p.socket)
	as.mustProbe(t)
	ctx := kmstest.Ctx(t)
	enc, err := as.svc.Encrypt(ctx, "uid", random(t, 32))
	if err != nil {
		t.Fatal(err)
	}
	other, err := f.admin.CreateKey(ctx, client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	otherBlob, err := f.admin.Encrypt(ctx, other.KeyID, random(t, 32), dekContext)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(enc.Ciphertext)
	tampered[len(tampered)-1] ^= 1
	probe, err := f.admin.Encrypt(ctx, f.keyID, probeText, probeContext)
	if err != nil {
		t.Fatal(err)
	}
	decrypts := []struct {
		name    string
		req     kmsservice.DecryptRequest
		code    codes.Code
		msg     string
		reaches bool // kmsd is asked (and refuses)
	}{
		{"not a blob", kmsservice.DecryptRequest{Ciphertext: []byte("garbage"), KeyID: enc.KeyID}, codes.InvalidArgument, "not an hsmkms blob", false},
		{"empty", kmsservice.DecryptRequest{KeyID: enc.KeyID}, codes.InvalidArgument, "not an hsmkms blob", false},
		{"key_id of another version", kmsservice.DecryptRequest{Ciphertext: enc.Ciphertext, KeyID: f.keyID + ":v2"}, codes.InvalidArgument, "is not the ciphertext's key version", false},
		{"no key_id", kmsservice.DecryptRequest{Ciphertext: enc.Ciphertext}, codes.InvalidArgument, "is not the ciphertext's key version", false},
		{"tampered", kmsservice.DecryptRequest{Ciphertext: tampered, KeyID: enc.KeyID}, codes.InvalidArgument, "InvalidCiphertextException", true},
		{"a status probe's blob", kmsservice.DecryptRequest{Ciphertext: probe.CiphertextBlob, KeyID: enc.KeyID}, codes.InvalidArgument, "InvalidCiphertextException", true},
		{"another key", kmsservice.DecryptRequest{Ciphertext: otherBlob.CiphertextBlob, KeyID: other.KeyID + ":v1"}, codes.PermissionDenied, "AccessDeniedException", true},
	}
	for _, c := range decrypts {
		before := auditCount(t, f, "kms:Decrypt")
		_, err := as.svc.Decrypt(ctx, "uid", &c.req)
		if status.Code(err) != c.code || !contains(status.Convert(err).Message(), c.msg) {
			t.Errorf("decrypt %s: %v, want %v %q", c.name, err, c.code, c.msg)
		}
		if got := auditCount(t, f, "kms:Decrypt") - before; (got == 1) != c.reaches || got > 1 {
			t.Errorf("decrypt %s: %d records in kmsd's audit, want reaches=%v", c.name, got, c.reaches)
		}
	}
	for _, n := range []int{0, maxPlaintextLen + 1} {
		before := auditCount(t, f, "kms:Encrypt")
		if _, err := as.svc.Encrypt(ctx, "uid", make([]byte, n)); status.Code(err) != codes.InvalidArgument || !contains(err.Error(), "want 1 to 969") {
			t.Errorf("encrypt %d bytes: %v", n, err)
		}
		if auditCount(t, f, "kms:Encrypt") != before {
			t.Errorf("encrypt %d bytes reached kmsd", n)
		}
	}
	// The largest plaintext that fits makes a ciphertext within 1 KiB.
	if r, err := as.svc.Encrypt(ctx, "uid", make([]byte, maxPlaintextLen)); err != nil || len(r.Ciphertext) > 1024 {
		t.Errorf("encrypt %d bytes: %v", maxPlaintextLen, err)
	}
}

// auditCount is how many records of action kmsd holds for the plugin's principal.
func auditCount(t *testing.T, f *fixture, action string) int {
	t.Helper()
	n, next := 0, ""
	for {
		page, err := f.admin.ListAudit(kmstest.Ctx(t), client.AuditFilter{Principal: principal}, 1000, next)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Records {
			if r.Action == action {
				n++
			}
		}
		if next = page.NextToken; next == "" {
			return n
		}
	}
}

// Moving the plugin's alias to another key is a rotation too: once the
// policy names both keys, key_id names the new key at the next Status, and
// data under the old key still decrypts.
func TestAliasMovedToAnotherKey(t *testing.T) {
	f := newFixture(t, kmstest.Options{}, nil, client.CreateKeyRequest{})
	p := f.plugin(t)
	as := newAPIServer(t, p.socket)
	as.mustProbe(t)
	old := as.write(t, "old", []byte("under the first key"))
	ctx := kmstest.Ctx(t)
	next, err := f.admin.CreateKey(ctx, client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.UpdateAlias(ctx, "alias/kubernetes-secrets", next.KeyID); err != nil {
		t.Fatal(err)
	}
	// The policy names the first key only: not ok, and the key_id stays.
	if st, err := as.svc.Status(ctx); err != nil || !strings.Contains(st.Healthz, "AccessDeniedException") || st.KeyID != f.keyID+":v1" {
		t.Fatalf("Status with the alias on a key the policy does not name: %+v %v", st, err)
	}
	both := documentedPolicy(t, f.keyID)
	both.Statements[0].Resources = append(both.Statements[0].Resources, "key/"+next.KeyID)
	if _, err := f.admin.PutPolicy(ctx, principal, both); err != nil {
		t.Fatal(err)
	}
	if st := as.mustProbe(t); st.KeyID != next.KeyID+":v1" {
		t.Fatalf("Status after the alias moved: %q", st.KeyID)
	}
	d := as.write(t, "new", []byte("under the second key"))
	fresh := newAPIServer(t, p.socket)
	fresh.mustProbe(t)
	if got, stale := fresh.read(t, "old", old); string(got) != "under the first key" || !stale {
		t.Errorf("old data: %q stale %v", got, stale)
	}
	if got, stale := fresh.read(t, "new", d); string(got) != "under the second key" || stale {
		t.Errorf("new data: %q stale %v", got, stale)
	}
}
