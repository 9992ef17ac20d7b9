package service_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

// Issue 16, item 5: encryptions are counted per version without a
// database write per request, flushed in batches, visible in the version
// listing and the stats; a key whose primary version passes the rotation
// threshold is rotated automatically, and no version encrypts past the
// hard limit, across a restart too. (The limits are small here; the
// defaults are 2^30 and 2^31, against NIST SP 800-38D's 2^32.)
func TestGCMInvocationLimit(t *testing.T) {
	w := newWorld(t)
	limits := func(rotateAfter, max int64) *service.Service {
		return service.New(w.store, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger(), MinRotationInterval: time.Hour,
			RotateAfterEncryptions: rotateAfter, MaxEncryptions: max})
	}
	w.svc = limits(5, 8)
	id := w.newKey() // one encryption
	for i := 0; i < 4; i++ {
		w.encrypt(id)
	}
	vs, err := w.svc.Keys.ListVersions(w.ctx, id)
	if err != nil || len(vs) != 1 || vs[0].Encryptions != 0 {
		t.Fatalf("before the flush: %+v %v (want no write per request)", vs, err)
	}
	if err := w.svc.Worker.FlushEncryptions(w.ctx); err != nil {
		t.Fatal(err)
	}
	vs, err = w.svc.Keys.ListVersions(w.ctx, id)
	if err != nil || len(vs) != 2 || vs[0].Encryptions != 5 || vs[1].State != service.VersionPrimary {
		t.Fatalf("after the flush: %+v %v; want v1 at 5 encryptions and v2 primary (rotated at the threshold)", vs, err)
	}
	if st := w.svc.Stats(); st.Encryptions != 5 || st.MaxVersionEncryptions != 5 || st.Rotations[service.RotationAutomatic] != 1 {
		t.Errorf("stats %+v", st)
	}
	w.encrypt(id) // under v2
	if err := w.svc.Worker.FlushEncryptions(w.ctx); err != nil {
		t.Fatal(err)
	}
	if vs, _ := w.svc.Keys.ListVersions(w.ctx, id); len(vs) != 2 || vs[1].Encryptions != 1 {
		t.Fatalf("v2 after one more encryption: %+v", vs)
	}
	w.check(id)

	// The hard limit, with automatic rotation out of reach: the fourth
	// encryption is refused before any flush, and after a restart too.
	w.svc = limits(100, 3)
	id2 := w.newKey()
	w.encrypt(id2)
	w.encrypt(id2)
	if _, err := w.svc.Crypto.Encrypt(w.ctx, id2, []byte("x"), nil); !errors.Is(err, service.ErrLimitExceeded) {
		t.Fatalf("a fourth encryption: %v, want ErrLimitExceeded", err)
	}
	if err := w.svc.Worker.FlushEncryptions(w.ctx); err != nil {
		t.Fatal(err)
	}
	w.svc = limits(100, 3)
	if _, err := w.svc.Crypto.Encrypt(w.ctx, id2, []byte("x"), nil); !errors.Is(err, service.ErrLimitExceeded) {
		t.Fatalf("after a restart: %v, want ErrLimitExceeded", err)
	}
	if _, err := w.svc.Worker.RotateKey(w.ctx, id2); err != nil {
		t.Fatal(err)
	}
	w.encrypt(id2)
	w.check(id2) // the blobs of v1 still decrypt
}
