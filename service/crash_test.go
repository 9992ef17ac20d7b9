package service_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

// crash is what the step hook panics with to stop a rotation mid-way, as a
// process crash would: nothing after the step runs.
type crash struct{ step string }

// world is one deployment: a store and the token, and a service on them
// that tests replace to model a restart.
type world struct {
	t     *testing.T
	ctx   context.Context
	clock *kmstest.Clock
	store service.Store
	token *kmstest.FaultToken
	svc   *service.Service
	blobs map[string][][]byte // key id -> blobs made so far
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, ctx: kmstest.Ctx(t), clock: kmstest.NewClock(), store: kmstest.Store(t),
		token: kmstest.NewFaultToken(kmstest.Token(t)), blobs: map[string][][]byte{}}
	w.restart(nil)
	return w
}

// restart models a new process on the same token and database.
func (w *world) restart(hook func(string)) {
	w.svc = service.New(w.store, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger(),
		StepHook: hook, MinRotationInterval: time.Hour})
}

// ref is the token name the store records for version n of key id.
func (w *world) ref(id string, n int) hsm.ObjectRef {
	w.t.Helper()
	v, err := w.store.GetVersion(w.ctx, id, n)
	if err != nil {
		w.t.Fatal(err)
	}
	ref, err := hsm.ParseLabel(v.TokenLabel)
	if err != nil {
		w.t.Fatal(err)
	}
	return ref
}

func (w *world) newKey() string {
	k, err := w.svc.Keys.CreateKey(w.ctx, service.CreateKeyInput{})
	if err != nil {
		w.t.Fatal(err)
	}
	w.encrypt(k.ID)
	return k.ID
}

func (w *world) encrypt(id string) {
	w.t.Helper()
	r, err := w.svc.Crypto.Encrypt(w.ctx, id, []byte("data of "+id), nil)
	if err != nil {
		w.t.Fatalf("encrypt: %v", err)
	}
	w.blobs[id] = append(w.blobs[id], r.Ciphertext)
}

// check proves the invariants: every blob decrypts; each key has exactly one
// primary and it encrypts; the token holds exactly the objects of the
// store's live versions, and only the primary can encrypt.
func (w *world) check(ids ...string) {
	w.t.Helper()
	inv, err := w.token.Inventory(w.ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, id := range ids {
		for i, b := range w.blobs[id] {
			if _, err := w.svc.Crypto.Decrypt(w.ctx, b, nil, ""); err != nil {
				w.t.Fatalf("key %s blob %d no longer decrypts: %v", id, i, err)
			}
		}
		vs, err := w.svc.Keys.ListVersions(w.ctx, id)
		if err != nil {
			w.t.Fatal(err)
		}
		primaries := 0
		live := map[int]service.VersionState{}
		for _, v := range vs {
			if v.State == service.VersionPrimary {
				primaries++
			}
			if v.State != service.VersionDestroyed {
				live[v.Version] = v.State
			}
		}
		if primaries != 1 {
			w.t.Fatalf("key %s has %d primary versions: %+v", id, primaries, vs)
		}
		objects := map[int]bool{}
		for _, o := range inv {
			if o.Ref.KeyID.String() != id {
				continue
			}
			objects[o.Ref.Version] = true
			st, ok := live[o.Ref.Version]
			if !ok {
				w.t.Fatalf("token object %s has no live version row", o.Label)
			}
			if o.Encrypt != (st == service.VersionPrimary) {
				w.t.Fatalf("%s (%s) has CKA_ENCRYPT=%v", o.Label, st, o.Encrypt)
			}
		}
		for v := range live {
			if !objects[v] {
				w.t.Fatalf("key %s version %d has no token object", id, v)
			}
		}
		w.encrypt(id)
	}
}

// rotateCrashing runs an on-demand rotation that crashes after step.
func (w *world) rotateCrashing(id, step string) {
	w.t.Helper()
	w.restart(func(s string) {
		if s == step {
			panic(crash{s})
		}
	})
	func() {
		defer func() {
			if r := recover(); r == nil {
				w.t.Fatalf("rotation did not reach step %s", step)
			} else if _, ok := r.(crash); !ok {
				panic(r)
			}
		}()
		w.svc.Worker.RotateKey(w.ctx, id)
	}()
}

// A crash after each step of the rotation protocol loses nothing: after a
// restart and a reconciler pass, every blob decrypts, each key has exactly
// one primary, and the token holds exactly what the store knows.
func TestCrashAfterEachRotationStep(t *testing.T) {
	cases := []struct {
		step        string
		wantPrimary int
		want        service.ReconcileReport
	}{
		{service.StepPendingInserted, 1, service.ReconcileReport{RotationsRolledBack: 1}},
		{service.StepObjectGenerated, 1, service.ReconcileReport{RotationsRolledBack: 1}},
		{service.StepPromoted, 2, service.ReconcileReport{EncryptRevoked: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.step, func(t *testing.T) {
			w := newWorld(t)
			id := w.newKey()
			w.rotateCrashing(id, tc.step)
			w.restart(nil)
			// Until the reconciler runs, the key keeps working.
			w.encrypt(id)
			w.clock.Advance(10 * time.Minute) // past the pending grace and the lease
			rep, err := w.svc.Worker.Reconcile(w.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep.RotationsRolledBack != tc.want.RotationsRolledBack || rep.EncryptRevoked != tc.want.EncryptRevoked ||
				rep.CreatesRolledBack != 0 {
				t.Fatalf("reconcile report %+v, want %+v", rep, tc.want)
			}
			k, err := w.svc.Keys.DescribeKey(w.ctx, id)
			if err != nil || k.PrimaryVersion != tc.wantPrimary {
				t.Fatalf("primary v%d (%v), want v%d", k.PrimaryVersion, err, tc.wantPrimary)
			}
			w.check(id)
			// The key rotates normally afterwards.
			v, err := w.svc.Worker.RotateKey(w.ctx, id)
			if err != nil || v.Version != tc.wantPrimary+1 {
				t.Fatalf("rotate after recovery: %v %+v", err, v)
			}
			w.check(id)
			// A second pass finds nothing to do.
			if rep, err := w.svc.Worker.Reconcile(w.ctx); err != nil || rep.RotationsRolledBack+rep.EncryptRevoked+rep.ObjectsDestroyed != 0 {
				t.Fatalf("second reconcile: %v %+v", err, rep)
			}
		})
	}
}

// A crash while a key is being created leaves no half key: the reconciler
// rolls the creation back.
func TestCrashDuringCreateIsRolledBack(t *testing.T) {
	w := newWorld(t)
	boom := errors.New("injected database failure")
	fs := kmstest.NewFaultStore(w.store)
	w.store = fs
	w.restart(nil)
	ok := w.newKey()
	// The step-3 transaction fails after the object was generated; the
	// service rolls back at once.
	fs.FailNextTx(nil) // step 1 runs
	fs.FailNextTx(boom)
	if _, err := w.svc.Keys.CreateKey(w.ctx, service.CreateKeyInput{Alias: "alias/half"}); err == nil {
		t.Fatal("create succeeded despite the failure")
	}
	keys, _, err := w.svc.Keys.ListKeys(w.ctx, 0, "")
	if err != nil || len(keys) != 1 || keys[0].ID != ok {
		t.Fatalf("keys after failed create: %v %+v", err, keys)
	}
	// The token refuses generation: nothing is left either.
	w.token.FailNext("GenerateKey", fmt.Errorf("injected: %w", hsm.ErrUnavailable))
	_, err = w.svc.Keys.CreateKey(w.ctx, service.CreateKeyInput{})
	if !errors.Is(err, service.ErrUnavailable) {
		t.Fatalf("create with the token down: %v, want ErrUnavailable", err)
	}
	rep, err := w.svc.Worker.Reconcile(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ObjectsDestroyed != 0 || rep.CreatesRolledBack != 0 {
		t.Fatalf("nothing should be left to repair: %+v", rep)
	}
	w.check(ok)
}

// Injected token and database failures in a rotation: the request fails or
// succeeds cleanly and the reconciler repairs the rest.
func TestRotationWithInjectedFailures(t *testing.T) {
	w := newWorld(t)
	id := w.newKey()

	w.token.FailNext("GenerateKey", fmt.Errorf("injected: %w", hsm.ErrUnavailable))
	if _, err := w.svc.Worker.RotateKey(w.ctx, id); !errors.Is(err, service.ErrUnavailable) {
		t.Fatalf("rotate with generate failing: %v", err)
	}
	w.check(id) // the pending row was rolled back at once

	w.token.FailNext("SetDecryptOnly", fmt.Errorf("injected: %w", hsm.ErrUnavailable))
	v, err := w.svc.Worker.RotateKey(w.ctx, id)
	if err != nil || v.Version != 2 {
		t.Fatalf("rotate with step 4 failing: %v %+v", err, v)
	}
	rep, err := w.svc.Worker.Reconcile(w.ctx)
	if err != nil || rep.EncryptRevoked != 1 {
		t.Fatalf("reconcile after step 4 failed: %v %+v", err, rep)
	}
	w.check(id)

	fs := kmstest.NewFaultStore(w.store)
	w.store = fs
	w.restart(nil)
	fs.FailNextTx(errors.New("injected database failure"))
	if _, err := w.svc.Worker.RotateKey(w.ctx, id); err == nil {
		t.Fatal("rotate with step 3 failing succeeded")
	}
	w.clock.Advance(10 * time.Minute)
	rep, err = w.svc.Worker.Reconcile(w.ctx)
	if err != nil || rep.RotationsRolledBack != 1 {
		t.Fatalf("reconcile after step 3 failed: %v %+v", err, rep)
	}
	w.check(id)
}

// The reconciler repairs what someone with the PIN did behind the service's
// back, and reports (never destroys) objects left without rows.
func TestReconcilerRepairsTheToken(t *testing.T) {
	w := newWorld(t)
	out := kmstest.NewOutsider(t)
	id := w.newKey()
	if _, err := w.svc.Worker.RotateKey(w.ctx, id); err != nil {
		t.Fatal(err)
	}
	kid := uuid.MustParse(id)
	// Decrypt-only version made able to encrypt again.
	if err := out.SetEncrypt(w.ref(id, 1), true); err != nil {
		t.Fatal(err)
	}
	// A stray object of a known key without a row (an earlier crash).
	if err := out.CreateStray(hsm.ObjectRef{KeyID: kid, Version: 7}); err != nil {
		t.Fatal(err)
	}
	// An object of a key this database does not know: reported, kept.
	unknown := hsm.ObjectRef{KeyID: uuid.New(), Version: 1}
	if err := out.CreateStray(unknown); err != nil {
		t.Fatal(err)
	}
	defer out.Destroy(unknown)
	rep, err := w.svc.Worker.Reconcile(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	stray := hsm.ObjectRef{KeyID: kid, Version: 7}
	if rep.EncryptRevoked != 1 || rep.ObjectsDestroyed != 0 || len(rep.Kept) != 1 || !strings.HasPrefix(rep.Kept[0], stray.Label()+":") {
		t.Fatalf("report %+v; want the decrypt-only version repaired and the stray kept and reported", rep)
	}
	if _, err := out.Find(stray); err != nil {
		t.Fatalf("an object without a row was destroyed: %v", err)
	}
	if err := out.Destroy(stray); err != nil { // the operator, after looking at it
		t.Fatal(err)
	}
	found := false
	for _, l := range rep.UnknownObjects {
		found = found || l == unknown.Label()
	}
	if !found {
		t.Fatalf("unknown object not reported: %+v", rep.UnknownObjects)
	}
	if _, err := out.Find(unknown); err != nil {
		t.Fatalf("object of an unknown key was destroyed without opt-in: %v", err)
	}
	w.check(id)
}

// Several workers (replicas) running at once while a key falls due make
// exactly one new version; concurrent on-demand rotations each make their
// own version and never two primaries.
func TestConcurrentRotationsMakeExactlyOneVersion(t *testing.T) {
	w := newWorld(t)
	k, err := w.svc.Keys.CreateKey(w.ctx, service.CreateKeyInput{AutomaticRotation: true, RotationInterval: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	w.encrypt(k.ID)
	w.clock.Advance(24 * time.Hour)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		replica := service.New(w.store, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger(), MinRotationInterval: time.Hour})
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := replica.Worker.RunDue(w.ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	d, err := w.svc.Keys.DescribeKey(w.ctx, k.ID)
	if err != nil || d.PrimaryVersion != 2 {
		t.Fatalf("after 8 concurrent workers: v%d (%v), want exactly v2", d.PrimaryVersion, err)
	}
	w.check(k.ID)

	var mu sync.Mutex
	made := map[int]bool{}
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := w.svc.Worker.RotateKey(w.ctx, k.ID)
			if errors.Is(err, service.ErrConflict) {
				return // another rotation held the lease
			}
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			if made[v.Version] {
				t.Errorf("version %d made twice", v.Version)
			}
			made[v.Version] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	d, _ = w.svc.Keys.DescribeKey(w.ctx, k.ID)
	if d.PrimaryVersion != 2+len(made) {
		t.Fatalf("primary v%d after %d successful rotations from v2", d.PrimaryVersion, len(made))
	}
	w.check(k.ID)
}

// A rotation that outlives its lease (a hung token, a paused process) must
// not lose a version to the reconciler that rolls it back meanwhile: either
// the rotation commits first and the reconciler leaves it, or the
// reconciler removes the row first and the rotation fails. The token and
// the store agree afterwards either way.
func TestSlowRotationAndReconcilerNeverLoseAVersion(t *testing.T) {
	for _, step := range []string{service.StepPendingInserted, service.StepObjectGenerated} {
		t.Run(step, func(t *testing.T) {
			w := newWorld(t)
			id := w.newKey()
			reached, resume := make(chan struct{}), make(chan struct{})
			var once sync.Once
			slow := service.New(w.store, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger(),
				MinRotationInterval: time.Hour, PendingGrace: time.Millisecond, LeaseDuration: time.Second,
				StepHook: func(s string) {
					if s == step {
						once.Do(func() { close(reached); <-resume })
					}
				}})
			done := make(chan error, 1)
			go func() { _, err := slow.Worker.RotateKey(w.ctx, id); done <- err }()
			<-reached
			w.clock.Advance(2 * time.Second) // the slow rotation's lease has expired
			other := service.New(w.store, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger(),
				MinRotationInterval: time.Hour, PendingGrace: time.Millisecond, LeaseDuration: time.Second})
			// The worst moment: the reconciler has decided to roll back and
			// is about to destroy the object when the rotation goes on.
			var err error
			w.token.BeforeNextDestroy(func() { close(resume); err = <-done })
			if _, rerr := other.Worker.Reconcile(w.ctx); rerr != nil {
				t.Fatal(rerr)
			}
			if err == nil {
				t.Log("the rotation committed after all")
			} else {
				t.Logf("the rotation failed as it should: %v", err)
			}
			w.restart(nil)
			if _, err := w.svc.Worker.Reconcile(w.ctx); err != nil {
				t.Fatal(err)
			}
			w.check(id)
		})
	}
}

// A shutdown cancels the worker's context in the middle of a pass. A
// rotation that has written its Pending row finishes all the same (steps 2
// to 4 take milliseconds), rather than leaving a Pending row and a token
// object for the reconciler's grace period (seen in TestTwoReplicas under
// load: versions still Pending after both replicas stopped).
func TestRotationFinishesWhenItsCallerIsCancelled(t *testing.T) {
	for _, step := range []string{service.StepPendingInserted, service.StepObjectGenerated} {
		t.Run(step, func(t *testing.T) {
			w := newWorld(t)
			id := w.newKey()
			ctx, cancel := context.WithCancel(w.ctx)
			defer cancel()
			w.restart(func(s string) {
				if s == step {
					cancel() // the shutdown arrives between two steps
				}
			})
			v, err := w.svc.Worker.RotateKey(ctx, id)
			if err != nil {
				t.Fatalf("rotation cancelled after %s: %v", step, err)
			}
			vs, err := w.svc.Keys.ListVersions(w.ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) != 2 || vs[1].Version != v.Version || vs[1].State != service.VersionPrimary || vs[0].State != service.VersionDecryptOnly {
				t.Fatalf("versions after a cancelled rotation: %+v", vs)
			}
			w.encrypt(id)
			w.check(id) // every blob decrypts; the token holds exactly the live versions
		})
	}
}
