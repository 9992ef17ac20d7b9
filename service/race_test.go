package service_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

// An object left without a row (a rotation whose cleanup failed) is
// reported and kept by the reconciler, never destroyed (issue 16, item 6);
// a rotation that makes that version number again gets its own object
// (another nonce) and loses nothing.
func TestReconcilerNeverDestroysAVersionMadeAgain(t *testing.T) {
	w := newWorld(t)
	id := w.newKey()
	leftover := hsm.ObjectRef{KeyID: uuid.MustParse(id), Version: 2}
	if err := w.token.GenerateKey(w.ctx, leftover); err != nil {
		t.Fatal(err)
	}
	destroyed := false
	w.token.BeforeNextDestroy(func() { destroyed = true })
	if _, err := w.svc.Worker.RotateKey(w.ctx, id); err != nil {
		t.Fatal(err)
	}
	rep, err := w.svc.Worker.Reconcile(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if destroyed || rep.ObjectsDestroyed != 0 || len(rep.Kept) != 1 {
		t.Fatalf("report %+v (destroyed: %v); want the leftover kept and reported", rep, destroyed)
	}
	if err := w.token.Destroy(w.ctx, leftover); err != nil { // the operator, after looking at it
		t.Fatal(err)
	}
	w.restart(nil)
	w.check(id)
}

// A version's destruction and its cancellation, concurrent: either the
// cancel wins and the version lives, or the destruction wins and the cancel
// is refused. Never a cancel that was acknowledged and a version destroyed.
func TestCancelledDestructionIsNeverDestroyed(t *testing.T) {
	w := newWorld(t)
	id := w.newKey()
	if _, err := w.svc.Worker.RotateKey(w.ctx, id); err != nil {
		t.Fatal(err)
	}
	w.encrypt(id)
	if _, err := w.svc.Keys.ChangeVersion(w.ctx, id, 1, service.ScheduleVersionDestruction, 7); err != nil {
		t.Fatal(err)
	}
	if err := w.svc.Audit.SealAudit(w.ctx); err != nil { // the request's record, sealed: the evidence
		t.Fatal(err)
	}
	w.clock.Advance(8 * 24 * time.Hour)
	reached, resume := make(chan struct{}), make(chan struct{})
	worker := service.New(w.store, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger(), MinRotationInterval: time.Hour,
		StepHook: func(s string) {
			if s == service.StepDestructionChecked {
				close(reached)
				<-resume
			}
		}})
	workerDone := make(chan error, 1)
	go func() { workerDone <- worker.Worker.RunDue(w.ctx) }()
	<-reached
	cancelDone := make(chan error, 1)
	go func() {
		_, err := w.svc.Keys.ChangeVersion(w.ctx, id, 1, service.CancelVersionDestruction, 0)
		cancelDone <- err
	}()
	// Give the cancel the chance to commit while the worker is between its
	// check and its write (it cannot, with the key locked, and then waits).
	var cancelErr error
	cancelled := false
	select {
	case cancelErr = <-cancelDone:
		cancelled = true
	case <-time.After(300 * time.Millisecond):
	}
	close(resume)
	if err := <-workerDone; err != nil {
		t.Fatal(err)
	}
	if !cancelled {
		cancelErr = <-cancelDone
	}
	vs, err := w.svc.Keys.ListVersions(w.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	state := vs[0].State
	switch {
	case cancelErr == nil && state == service.VersionDestroyed:
		t.Fatal("the cancel was acknowledged and the version destroyed anyway")
	case cancelErr != nil && state != service.VersionDestroyed:
		t.Fatalf("the cancel failed (%v) and the version is %s", cancelErr, state)
	}
	t.Logf("cancel: %v; version 1: %s", cancelErr, state)
	if state == service.VersionDestroyed {
		w.blobs[id] = w.blobs[id][1:] // the blob of version 1 is gone with it, as it should be
	}
	w.restart(nil)
	w.check(id)
}

// A rotation that outlives its lease while another rotation makes and
// promotes a later version must not promote its own afterwards: that
// would leave two primaries.
func TestSlowRotationDoesNotPromoteOverALaterOne(t *testing.T) {
	w := newWorld(t)
	id := w.newKey()
	reached, resume := make(chan struct{}), make(chan struct{})
	slow := service.New(w.store, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger(),
		MinRotationInterval: time.Hour, LeaseDuration: time.Second,
		StepHook: func(s string) {
			if s == service.StepObjectGenerated {
				close(reached)
				<-resume
			}
		}})
	done := make(chan error, 1)
	go func() { _, err := slow.Worker.RotateKey(w.ctx, id); done <- err }()
	<-reached
	w.clock.Advance(2 * time.Second) // the slow rotation's lease has expired
	fast := service.New(w.store, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger(),
		MinRotationInterval: time.Hour, LeaseDuration: time.Second})
	v, err := fast.Worker.RotateKey(w.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	w.encrypt(id)
	close(resume)
	if err := <-done; err == nil {
		t.Errorf("the slow rotation promoted its version after version %d", v.Version)
	}
	// Its abandoned Pending version is the reconciler's to roll back.
	w.clock.Advance(time.Hour)
	w.restart(nil)
	if _, err := w.svc.Worker.Reconcile(w.ctx); err != nil {
		t.Fatal(err)
	}
	w.check(id)
	if d, err := w.svc.Keys.DescribeKey(w.ctx, id); err != nil || d.PrimaryVersion != v.Version {
		t.Fatalf("primary after both rotations: %+v %v, want %d", d, err, v.Version)
	}
}

// A key creation whose GenerateKey failed after the token made the object
// leaves neither rows nor the object behind.
func TestFailedCreateLeavesNoObject(t *testing.T) {
	w := newWorld(t)
	objects := func() map[hsm.ObjectRef]bool {
		inv, err := w.token.Inventory(w.ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[hsm.ObjectRef]bool{}
		for _, o := range inv {
			m[o.Ref] = true
		}
		return m
	}
	before := objects()
	w.token.FailNext("GenerateKey", kmstest.AfterCall{Err: hsm.ErrUnavailable})
	if _, err := w.svc.Keys.CreateKey(w.ctx, service.CreateKeyInput{}); err == nil {
		t.Fatal("CreateKey succeeded with a failing token")
	}
	if keys, _, err := w.svc.Keys.ListKeys(w.ctx, 1000, ""); err != nil || len(keys) != 0 {
		t.Fatalf("keys after the failed creation: %+v %v", keys, err)
	}
	for ref := range objects() {
		if !before[ref] {
			t.Fatalf("object %s outlived its failed creation", ref)
		}
	}
}

// Two replicas sealing the audit chain at the same moment: one seal wins,
// the other notices and stands down; the chain verifies. (On PostgreSQL a
// seal that read the last seal before locking the head could append with a
// stale predecessor, and the log would report itself broken forever.)
func TestConcurrentSealsKeepTheChainIntact(t *testing.T) {
	w := newWorld(t)
	record := func(n int) {
		for i := 0; i < n; i++ {
			_, a := service.StartActivity(w.ctx, uuid.NewString(), "", service.ActGenerateRandom)
			if err := w.svc.Audit.Record(w.ctx, a, service.OutcomeAllowed, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	record(3)
	fs := kmstest.NewFaultStore(w.store)
	a := service.New(fs, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger()})
	b := service.New(w.store, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger()})
	if err := b.Audit.SealAudit(w.ctx); err != nil { // the seal key exists; both know the last seal
		t.Fatal(err)
	}
	record(2)
	bDone := make(chan error, 1)
	fs.AfterNext("LastAudit", func() {
		// A has read the last seal; B seals now. If A holds the head, B
		// waits for it (and A goes on after a moment); if not, B commits.
		go func() { bDone <- b.Audit.SealAudit(w.ctx) }()
		select {
		case err := <-bDone:
			bDone <- err
		case <-time.After(300 * time.Millisecond):
		}
	})
	if err := a.Audit.SealAudit(w.ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
	v, err := w.svc.Audit.VerifyAudit(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Intact || v.Seals != 2 {
		t.Fatalf("the chain reports itself broken after two concurrent seals: %+v", v)
	}
}

// Moving an alias and deleting it at the same moment, the delete having
// been authorised on the key the alias left: the delete must not take the
// alias from the key it was moved to. One of the two wins, the other is
// refused.
func TestAliasMovedWhileBeingDeleted(t *testing.T) {
	w := newWorld(t)
	x, y := w.newKey(), w.newKey()
	if _, err := w.svc.Keys.CreateAlias(w.ctx, "alias/race", x); err != nil {
		t.Fatal(err)
	}
	fs := kmstest.NewFaultStore(w.store)
	deleter := service.New(fs, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger()})
	moveDone := make(chan error, 1)
	fs.AfterNext("GetAlias", func() {
		go func() { _, err := w.svc.Keys.UpdateAlias(w.ctx, "alias/race", y); moveDone <- err }()
		select {
		case err := <-moveDone:
			moveDone <- err
		case <-time.After(300 * time.Millisecond):
		}
	})
	delErr := deleter.Keys.DeleteAlias(w.ctx, "alias/race")
	moveErr := <-moveDone
	if delErr == nil && moveErr == nil {
		t.Fatal("both the move to the other key and the delete authorised on the first key succeeded")
	}
	a, err := w.store.GetAlias(w.ctx, "alias/race")
	switch {
	case delErr == nil && err == nil:
		t.Fatalf("the delete succeeded and the alias is still there: %+v", a)
	case moveErr == nil && (err != nil || a.KeyID != y):
		t.Fatalf("the move succeeded and the alias is %+v, %v", a, err)
	}
	t.Logf("delete: %v; move: %v", delErr, moveErr)
}

// A token revoked while another request is loading it: a request that
// starts after the revocation is refused, even if it would have joined that
// load.
func TestRevokedTokenIsRefusedAtOnce(t *testing.T) {
	w := newWorld(t)
	fs := kmstest.NewFaultStore(w.store)
	svc := service.New(fs, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger()})
	if _, err := svc.Access.CreatePrincipal(w.ctx, service.CreatePrincipalInput{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	tok, err := svc.Access.CreateToken(w.ctx, "app", "to revoke", 0)
	if err != nil {
		t.Fatal(err)
	}
	kmstest.Secret(tok.Token)
	late := make(chan error, 1)
	fs.AfterNext("GetToken", func() {
		// The first request has read the token, not yet revoked. Now it
		// is revoked, and a second request comes in.
		if err := svc.Access.RevokeToken(w.ctx, "app", tok.ID); err != nil {
			t.Error(err)
		}
		go func() { _, err := svc.Access.Authenticate(w.ctx, tok.Token); late <- err }()
		time.Sleep(300 * time.Millisecond) // time for it to reach the load (and, without the fix, join it)
	})
	_, _ = svc.Access.Authenticate(w.ctx, tok.Token) // began before the revocation: either answer is right
	if err := <-late; err == nil {
		t.Fatal("a request that began after the revocation was authenticated")
	}
	if _, err := svc.Access.Authenticate(w.ctx, tok.Token); err == nil {
		t.Fatal("the revoked token still authenticates")
	}
}

// Two administrators taking each other's rights at the same moment: one of
// the changes is refused, so somebody can still manage access. (Without
// serialising, each transaction still saw the other administrator.)
func TestAdministratorsCannotLockEachOtherOut(t *testing.T) {
	w := newWorld(t)
	if _, err := w.svc.Access.Bootstrap(w.ctx, "bootstrap-token-for-the-lockout-test"); err != nil {
		t.Fatal(err)
	}
	kmstest.Secret("bootstrap-token-for-the-lockout-test")
	if _, err := w.svc.Access.CreatePrincipal(w.ctx, service.CreatePrincipalInput{Name: "admin2", Policies: []string{service.AdminPolicy}}); err != nil {
		t.Fatal(err)
	}
	tok2, err := w.svc.Access.CreateToken(w.ctx, "admin2", "second administrator", 0)
	if err != nil {
		t.Fatal(err)
	}
	kmstest.Secret(tok2.Token)
	fs := kmstest.NewFaultStore(w.store)
	a := service.New(fs, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger()})
	bDone := make(chan error, 1)
	fs.AfterNext("before AppendAudit", func() {
		// A has revoked admin2's token and found admin still in charge;
		// before A commits, B detaches admin's policy.
		go func() {
			_, err := w.svc.Access.DetachPolicy(w.ctx, service.AdminPrincipal, service.AdminPolicy)
			bDone <- err
		}()
		select {
		case err := <-bDone:
			bDone <- err
		case <-time.After(300 * time.Millisecond):
		}
	})
	// An activity, so that the change appends its audit record in its
	// transaction (where the hook is).
	actx, _ := service.StartActivity(w.ctx, uuid.NewString(), "", "kms:RevokeToken")
	aErr := a.Access.RevokeToken(actx, "admin2", tok2.ID)
	var bErr error
	select {
	case bErr = <-bDone:
	case <-time.After(time.Minute):
		t.Fatal("the concurrent detach never ran (the hook did not fire) or never finished")
	}
	if aErr == nil && bErr == nil {
		t.Fatal("both administrators lost their rights: nobody can manage access any more")
	}
	t.Logf("revoke: %v; detach: %v", aErr, bErr)
}

// A key's cached state is as old as the first read that loaded it: a load
// that took long (here 400 ms of a 500 ms TTL) does not stretch how long
// another replica's change goes unseen.
func TestSlowCacheLoadDoesNotExtendTheTTL(t *testing.T) {
	w := newWorld(t)
	id := w.newKey() // made by w.svc: the replica below has nothing cached
	fs := kmstest.NewFaultStore(w.store)
	replica := service.New(fs, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger()})
	fs.AfterNext("ListVersions", func() { w.clock.Advance(400 * time.Millisecond) })
	if _, err := replica.Crypto.Encrypt(w.ctx, id, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.Keys.DisableKey(w.ctx, id); err != nil { // on the other replica
		t.Fatal(err)
	}
	w.clock.Advance(200 * time.Millisecond) // 600 ms after the load began
	if _, err := replica.Crypto.Encrypt(w.ctx, id, []byte("x"), nil); !errors.Is(err, service.ErrDisabled) {
		t.Fatalf("encrypt 600 ms after the load began, the key disabled meanwhile: %v, want DisabledException", err)
	}
}

// An automatic rotation that keeps failing (here: the key has the most
// versions allowed) is postponed, so that such keys cannot fill every batch
// of due rotations and starve the others.
func TestFailingAutomaticRotationIsPostponed(t *testing.T) {
	w := newWorld(t)
	svc := service.New(w.store, w.token, service.Config{Clock: w.clock, Logger: kmstest.Logger(),
		MinRotationInterval: time.Hour, MaxVersionsPerKey: 2})
	capped, err := svc.Keys.CreateKey(w.ctx, service.CreateKeyInput{AutomaticRotation: true, RotationInterval: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Worker.RotateKey(w.ctx, capped.ID); err != nil { // now at the cap
		t.Fatal(err)
	}
	other, err := svc.Keys.CreateKey(w.ctx, service.CreateKeyInput{AutomaticRotation: true, RotationInterval: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(25 * time.Hour)
	if err := svc.Worker.RunDue(w.ctx); err != nil {
		t.Fatal(err)
	}
	now := w.clock.Now()
	k, err := w.store.GetKey(w.ctx, capped.ID)
	if err != nil {
		t.Fatal(err)
	}
	if k.NextRotation == nil || !k.NextRotation.After(now.Add(59*time.Minute)) {
		t.Errorf("the capped key's next rotation is %v, want about an hour after %v", k.NextRotation, now)
	}
	if d, err := svc.Keys.DescribeKey(w.ctx, other.ID); err != nil || d.PrimaryVersion != 2 {
		t.Errorf("the other due key: %+v %v, want rotated to version 2", d, err)
	}
}
