package api_test

import (
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

// runDue is one worker pass at the stack's clock.
func runDue(t *testing.T, s *kmstest.Stack) {
	t.Helper()
	if err := s.Service.Worker.RunDue(kmstest.Ctx(t)); err != nil {
		t.Fatal(err)
	}
}

// wantSchedule checks the primary version and next rotation date that
// DescribeKey and rotation-status both show.
func wantSchedule(t *testing.T, c *client.Client, id string, primary int, next time.Time) {
	t.Helper()
	ctx := kmstest.Ctx(t)
	d, err := c.DescribeKey(ctx, id)
	if err != nil || d.PrimaryKeyVersion != primary || d.NextRotationDate == nil || !d.NextRotationDate.Equal(next) {
		t.Fatalf("describe: %v, primary %d next %v; want %d and %v", err, d.PrimaryKeyVersion, d.NextRotationDate, primary, next)
	}
	st, err := c.GetRotationStatus(ctx, id)
	if err != nil || st.NextRotationDate == nil || !st.NextRotationDate.Equal(next) {
		t.Fatalf("rotation-status: %v %+v; want next %v", err, st, next)
	}
}

// On-demand rotations leave the automatic schedule alone (AWS KMS): next =
// last automatic rotation (or enabling) + interval. A shortened interval
// counts from there, so a date already past rotates at once.
func TestOnDemandRotationKeepsSchedule(t *testing.T) {
	s, clock := newRotationStack(t)
	ctx := kmstest.Ctx(t)
	c := s.Client
	k, err := c.CreateKey(ctx, client.CreateKeyRequest{AutomaticRotation: true, RotationInterval: "30d"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := k.CreationDate
	wantSchedule(t, c, k.KeyID, 1, t0.Add(30*day))

	clock.Advance(10 * day)
	if v, err := c.RotateKey(ctx, k.KeyID); err != nil || v != 2 {
		t.Fatalf("on-demand rotation: v%d %v", v, err)
	}
	wantSchedule(t, c, k.KeyID, 2, t0.Add(30*day))
	if d, _ := c.DescribeKey(ctx, k.KeyID); d.LastRotationDate == nil || !d.LastRotationDate.Equal(clock.Now()) {
		t.Fatalf("last rotation after on-demand: %v, want %v", d.LastRotationDate, clock.Now())
	}

	clock.Advance(20*day - time.Second)
	runDue(t, s)
	wantSchedule(t, c, k.KeyID, 2, t0.Add(30*day)) // not due yet
	clock.Advance(time.Second)
	runDue(t, s)
	wantSchedule(t, c, k.KeyID, 3, t0.Add(60*day)) // automatic: the schedule restarts

	clock.Advance(5 * day)
	if _, err := c.RotateKey(ctx, k.KeyID); err != nil {
		t.Fatal(err)
	}
	wantSchedule(t, c, k.KeyID, 4, t0.Add(60*day))

	// Shortened to 7 days 10 days after the automatic rotation: next is
	// that rotation + 7 days, not the on-demand one + 7, and already past.
	clock.Advance(5 * day)
	p, err := c.PutRotationPolicy(ctx, k.KeyID, true, "7d")
	if err != nil || p.NextRotationDate == nil || !p.NextRotationDate.Equal(t0.Add(37*day)) {
		t.Fatalf("shortened interval: %v %+v; want next %v", err, p, t0.Add(37*day))
	}
	runDue(t, s)
	wantSchedule(t, c, k.KeyID, 5, clock.Now().Add(7*day))

	// Turned off and on again, the schedule starts when it was turned on.
	clock.Advance(2 * day)
	if _, err := c.PutRotationPolicy(ctx, k.KeyID, false, ""); err != nil {
		t.Fatal(err)
	}
	clock.Advance(20 * day)
	on, err := c.PutRotationPolicy(ctx, k.KeyID, true, "")
	if err != nil || on.NextRotationDate == nil || !on.NextRotationDate.Equal(clock.Now().Add(7*day)) {
		t.Fatalf("re-enabled rotation: %v %+v; want next %v", err, on, clock.Now().Add(7*day))
	}
	runDue(t, s)
	wantSchedule(t, c, k.KeyID, 5, clock.Now().Add(7*day))
	rots, err := c.ListKeyRotations(ctx, k.KeyID, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, r := range rots.Rotations {
		types = append(types, r.RotationType)
	}
	if got := strings.Join(types, ","); got != "ON_DEMAND,AUTOMATIC,ON_DEMAND,AUTOMATIC" {
		t.Fatalf("rotation history %s", got)
	}
}

// Each key has a lifetime quota of on-demand rotations, shown as
// on_demand_rotations_remaining; automatic rotations do not use it; at 0
// RotateKeyOnDemand is 429 LimitExceededException and changes nothing.
func TestOnDemandRotationQuota(t *testing.T) {
	clock := kmstest.NewClock()
	s := kmstest.Start(t, kmstest.Options{Config: service.Config{Clock: clock, MinRotationInterval: day, MaxOnDemandRotations: 2}})
	ctx := kmstest.Ctx(t)
	c := s.Client
	k, err := c.CreateKey(ctx, client.CreateKeyRequest{AutomaticRotation: true, RotationInterval: "1d"})
	if err != nil {
		t.Fatal(err)
	}
	remaining := func(want int) {
		t.Helper()
		d, err := c.DescribeKey(ctx, k.KeyID)
		if err != nil || d.OnDemandRotationsRemaining == nil || *d.OnDemandRotationsRemaining != want {
			t.Fatalf("describe: %v, remaining %v; want %d", err, d.OnDemandRotationsRemaining, want)
		}
		st, err := c.GetRotationStatus(ctx, k.KeyID)
		if err != nil || st.OnDemandRotationsRemaining == nil || *st.OnDemandRotationsRemaining != want {
			t.Fatalf("rotation-status: %v, remaining %v; want %d", err, st.OnDemandRotationsRemaining, want)
		}
	}
	if k.OnDemandRotationsRemaining == nil || *k.OnDemandRotationsRemaining != 2 {
		t.Fatalf("new key: remaining %v, want 2", k.OnDemandRotationsRemaining)
	}
	remaining(2)
	if _, err := c.RotateKey(ctx, k.KeyID); err != nil {
		t.Fatal(err)
	}
	remaining(1)
	clock.Advance(day)
	runDue(t, s) // automatic: does not count
	remaining(1)
	if _, err := c.RotateKey(ctx, k.KeyID); err != nil {
		t.Fatal(err)
	}
	remaining(0)
	_, err = c.RotateKey(ctx, k.KeyID)
	e, ok := err.(*client.Error)
	if !ok || e.Status != http.StatusTooManyRequests || e.Code != "LimitExceededException" || !strings.Contains(e.Message, "on-demand rotations") {
		t.Fatalf("rotation past the quota: %v, want 429 LimitExceededException about on-demand rotations", err)
	}
	vs, err := c.ListVersions(ctx, k.KeyID)
	if err != nil || len(vs) != 4 || vs[3].State != "Primary" {
		t.Fatalf("versions after the refusal: %v %+v, want 4 with v4 primary", err, vs)
	}
	remaining(0)
	// Automatic rotation goes on.
	clock.Advance(day)
	runDue(t, s)
	if d, _ := c.DescribeKey(ctx, k.KeyID); d.PrimaryKeyVersion != 5 {
		t.Fatalf("automatic rotation after the quota: v%d, want 5", d.PrimaryKeyVersion)
	}

	// Unlimited: the field is absent; the version cap still guards the token.
	u := kmstest.Start(t, kmstest.Options{Config: service.Config{MaxOnDemandRotations: -1, MaxVersionsPerKey: 3}})
	uk, err := u.Client.CreateKey(ctx, client.CreateKeyRequest{})
	if err != nil || uk.OnDemandRotationsRemaining != nil {
		t.Fatalf("unlimited quota: %v, remaining %v, want absent", err, uk.OnDemandRotationsRemaining)
	}
	for i := 0; i < 2; i++ {
		if _, err := u.Client.RotateKey(ctx, uk.KeyID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := u.Client.RotateKey(ctx, uk.KeyID); client.Code(err) != "LimitExceededException" || !strings.Contains(err.Error(), "versions") {
		t.Fatalf("rotation at the version cap: %v", err)
	}
	if st, err := u.Client.GetRotationStatus(ctx, uk.KeyID); err != nil || st.OnDemandRotationsRemaining != nil {
		t.Fatalf("unlimited rotation-status: %v %+v", err, st)
	}
}

// A failed automatic rotation (here: the key at the version cap) shows as
// last_rotation_failure in DescribeKey and rotation-status, to replicas and
// after a restart too, is counted by reason, and is cleared by the next
// rotation that succeeds.
func TestFailedAutomaticRotationIsVisible(t *testing.T) {
	clock := kmstest.NewClock()
	path := "sqlite:" + filepath.Join(t.TempDir(), "kms.db")
	cfg := service.Config{Clock: clock, MinRotationInterval: day, MaxVersionsPerKey: 2}
	s := kmstest.Start(t, kmstest.Options{Store: kmstest.StoreAt(t, path), Config: cfg})
	ctx := kmstest.Ctx(t)
	c := s.Client
	k, err := c.CreateKey(ctx, client.CreateKeyRequest{AutomaticRotation: true, RotationInterval: "1d"})
	if err != nil || k.LastRotationFailure != nil {
		t.Fatalf("new key: %v %+v", err, k)
	}
	if _, err := c.RotateKey(ctx, k.KeyID); err != nil { // now at the cap
		t.Fatal(err)
	}
	clock.Advance(day)
	failedAt := clock.Now()
	runDue(t, s)
	if n := s.Service.Worker.Stats().RotationFailures[service.FailureLimitExceeded]; n != 1 {
		t.Fatalf("rotation failures (limit_exceeded) = %d, want 1", n)
	}
	check := func(c *client.Client) {
		t.Helper()
		d, err := c.DescribeKey(ctx, k.KeyID)
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.GetRotationStatus(ctx, k.KeyID)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []*client.RotationFailure{d.LastRotationFailure, st.LastRotationFailure} {
			if f == nil || !f.Date.Equal(failedAt) || !strings.Contains(f.Message, "versions") ||
				strings.Contains(f.Message, "store:") || strings.Contains(f.Message, "token:") {
				t.Fatalf("last rotation failure: %+v, want at %v about the versions, no internals", f, failedAt)
			}
		}
		if d.PrimaryKeyVersion != 2 || st.AutomaticRotation != "Enabled" {
			t.Fatalf("after the failure: %+v %+v", d, st)
		}
	}
	check(c)
	// Another process on the same database (a replica, or after a restart)
	// sees it too: it is stored, not kept in memory.
	r := kmstest.Start(t, kmstest.Options{Store: kmstest.StoreAt(t, path), Token: s.Token, Config: cfg})
	check(r.Client)

	// Make room: destroy version 1; the next pass after that rotates and
	// clears the failure.
	if _, err := c.ChangeVersion(ctx, k.KeyID, 1, "schedule-destruction", 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Service.Audit.SealAudit(ctx); err != nil { // the evidence the worker needs to destroy v1
		t.Fatal(err)
	}
	clock.Advance(7 * day)
	runDue(t, s)             // rotation fails again (v1 is destroyed later in this pass), then v1 goes
	clock.Advance(time.Hour) // the failed rotation's retry
	runDue(t, s)
	d, err := c.DescribeKey(ctx, k.KeyID)
	if err != nil || d.PrimaryKeyVersion != 3 || d.LastRotationFailure != nil {
		t.Fatalf("after a successful rotation: %v %+v, want v3 and no failure", err, d)
	}
	if st, err := r.Client.GetRotationStatus(ctx, k.KeyID); err != nil || st.LastRotationFailure != nil {
		t.Fatalf("replica's rotation-status after success: %v %+v", err, st)
	}
}

// The development window (Config.DevPendingWindow, KMS_DEV_PENDING_WINDOW)
// replaces the days of deletions and destructions; the days are still
// checked. The worker then destroys the token objects minutes later.
func TestDevPendingWindow(t *testing.T) {
	clock := kmstest.NewClock()
	s := kmstest.Start(t, kmstest.Options{Config: service.Config{Clock: clock, DevPendingWindow: 2 * time.Minute}})
	ctx := kmstest.Ctx(t)
	c := s.Client
	k, err := c.CreateKey(ctx, client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RotateKey(ctx, k.KeyID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ScheduleKeyDeletion(ctx, k.KeyID, 6); client.Code(err) != "ValidationException" {
		t.Fatalf("6 days with the development window: %v, want ValidationException", err)
	}
	if d, _ := c.DescribeKey(ctx, k.KeyID); d.KeyState != "Enabled" {
		t.Fatalf("a refused deletion changed the key: %s", d.KeyState)
	}
	v, err := c.ChangeVersion(ctx, k.KeyID, 1, "schedule-destruction", 0)
	if err != nil || v.DestructionDate == nil || !v.DestructionDate.Equal(clock.Now().Add(2*time.Minute)) {
		t.Fatalf("schedule destruction: %v %+v, want in 2 minutes", err, v)
	}
	d, err := c.ScheduleKeyDeletion(ctx, k.KeyID, 30)
	if err != nil || d.DeletionDate == nil || !d.DeletionDate.Equal(clock.Now().Add(2*time.Minute)) {
		t.Fatalf("schedule deletion: %v %+v, want in 2 minutes", err, d)
	}
	if err := s.Service.Audit.SealAudit(ctx); err != nil { // the evidence the worker needs: the requests' records, sealed
		t.Fatal(err)
	}
	clock.Advance(2*time.Minute - time.Second)
	runDue(t, s)
	if d, _ := c.DescribeKey(ctx, k.KeyID); d.KeyState != "PendingDeletion" {
		t.Fatalf("deleted before the window passed: %s", d.KeyState)
	}
	clock.Advance(time.Second)
	runDue(t, s)
	if d, _ := c.DescribeKey(ctx, k.KeyID); d.KeyState != "Deleted" {
		t.Fatalf("after the window: %s", d.KeyState)
	}
	inv, err := s.Token.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range inv {
		if o.Ref.KeyID.String() == k.KeyID {
			t.Fatalf("token object %s survived the deletion", o.Label)
		}
	}
}

// A failure the service cannot name (a token error it does not know) is
// recorded with a message that tells the client nothing of the internals,
// and counted as internal; unavailability is counted but not recorded
// (the worker retries at its next pass).
func TestInternalRotationFailureSaysNothingInternal(t *testing.T) {
	clock := kmstest.NewClock()
	tok := kmstest.NewFaultToken(kmstest.Token(t))
	s := kmstest.Start(t, kmstest.Options{Token: tok, Config: service.Config{Clock: clock, MinRotationInterval: day}})
	ctx := kmstest.Ctx(t)
	k, err := s.Client.CreateKey(ctx, client.CreateKeyRequest{AutomaticRotation: true, RotationInterval: "1d"})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(day)
	tok.FailNext("GenerateKey", hsm.ErrUnavailable)
	runDue(t, s)
	st, err := s.Client.GetRotationStatus(ctx, k.KeyID)
	if err != nil || st.LastRotationFailure != nil {
		t.Fatalf("after an unavailable token: %v %+v, want no recorded failure", err, st)
	}
	const secret = "CKR_GENERAL_ERROR in slot 7 at /opt/hsm/lib.so"
	tok.FailNext("GenerateKey", errors.New(secret))
	runDue(t, s)
	st, err = s.Client.GetRotationStatus(ctx, k.KeyID)
	if err != nil || st.LastRotationFailure == nil || !st.LastRotationFailure.Date.Equal(clock.Now()) ||
		strings.Contains(st.LastRotationFailure.Message, "CKR_") || strings.Contains(st.LastRotationFailure.Message, "/opt") {
		t.Fatalf("after a token error: %v %+v", err, st.LastRotationFailure)
	}
	f := s.Service.Stats().RotationFailures
	if f[service.FailureUnavailable] != 1 || f[service.FailureInternal] != 1 || f[service.FailureLimitExceeded] != 0 {
		t.Fatalf("rotation failures by reason: %v", f)
	}
	if d, _ := s.Client.DescribeKey(ctx, k.KeyID); d.PrimaryKeyVersion != 1 {
		t.Fatalf("a failed rotation made a version: v%d", d.PrimaryKeyVersion)
	}
}
