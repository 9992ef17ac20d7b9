package api_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

const day = 24 * time.Hour

// Rotate three times: every blob of every version decrypts, new blobs use
// the newest version, old versions are decrypt-only in the store and in the
// token, and the rotation history lists exactly the three rotations.
func TestRotateThreeTimesLosesNothing(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ctx := kmstest.Ctx(t)
	c := s.Client
	k, err := c.CreateKey(ctx, client.CreateKeyRequest{Alias: "alias/rot"})
	if err != nil {
		t.Fatal(err)
	}
	type made struct {
		blob    []byte
		version int
	}
	var blobs []made
	encrypt := func(wantVersion int) {
		t.Helper()
		for i := 0; i < 2; i++ {
			e, err := c.Encrypt(ctx, "alias/rot", []byte(fmt.Sprintf("v%d-%d", wantVersion, i)), nil)
			if err != nil {
				t.Fatal(err)
			}
			if e.KeyVersion != wantVersion {
				t.Fatalf("encrypt used version %d, want %d", e.KeyVersion, wantVersion)
			}
			blobs = append(blobs, made{e.CiphertextBlob, wantVersion})
		}
	}
	encrypt(1)
	for want := 2; want <= 4; want++ {
		v, err := c.RotateKey(ctx, "alias/rot")
		if err != nil {
			t.Fatal(err)
		}
		if v != want {
			t.Fatalf("rotate made version %d, want %d", v, want)
		}
		encrypt(want)
	}
	for _, b := range blobs {
		dec, err := c.Decrypt(ctx, b.blob, nil, "")
		if err != nil || dec.KeyVersion != b.version {
			t.Fatalf("blob of version %d: %v (version %d)", b.version, err, dec.KeyVersion)
		}
	}
	vs, err := c.ListVersions(ctx, k.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	wantStates := []string{"DecryptOnly", "DecryptOnly", "DecryptOnly", "Primary"}
	if len(vs) != 4 {
		t.Fatalf("%d versions, want 4", len(vs))
	}
	for i, v := range vs {
		ref, err := hsm.ParseLabel(v.TokenObjectLabel)
		if v.Version != i+1 || v.State != wantStates[i] || err != nil || ref.KeyID.String() != k.KeyID || ref.Version != i+1 || ref.Legacy() ||
			!strings.HasPrefix(v.TokenObjectLabel, fmt.Sprintf("hsmkms/%s/v%d/", k.KeyID, i+1)) {
			t.Errorf("version %d: %+v (%v)", i+1, v, err)
		}
	}
	// The token enforces decrypt-only too.
	inv, err := s.Token.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kid := uuid.MustParse(k.KeyID)
	seen := 0
	for _, o := range inv {
		if o.Ref.KeyID != kid {
			continue
		}
		seen++
		if want := o.Ref.Version == 4; o.Encrypt != want {
			t.Errorf("v%d CKA_ENCRYPT=%v, want %v", o.Ref.Version, o.Encrypt, want)
		}
	}
	if seen != 4 {
		t.Fatalf("%d token objects for the key, want 4", seen)
	}
	rots, err := c.ListKeyRotations(ctx, k.KeyID, 2, "")
	if err != nil || len(rots.Rotations) != 2 || rots.NextToken == "" {
		t.Fatalf("rotations page 1: %v %+v", err, rots)
	}
	rest, err := c.ListKeyRotations(ctx, k.KeyID, 2, rots.NextToken)
	if err != nil || len(rest.Rotations) != 1 || rest.NextToken != "" {
		t.Fatalf("rotations page 2: %v %+v", err, rest)
	}
	all := append(rots.Rotations, rest.Rotations...)
	for i, r := range all {
		if r.KeyVersion != i+2 || r.RotationType != "ON_DEMAND" {
			t.Errorf("rotation %d: %+v", i, r)
		}
	}
	d, err := c.DescribeKey(ctx, k.KeyID)
	if err != nil || d.PrimaryKeyVersion != 4 || d.LastRotationDate == nil {
		t.Fatalf("describe after rotations: %v %+v", err, d)
	}
}

func newRotationStack(t *testing.T) (*kmstest.Stack, *kmstest.Clock) {
	clock := kmstest.NewClock()
	s := kmstest.Start(t, kmstest.Options{Config: service.Config{Clock: clock, MinRotationInterval: day}})
	return s, clock
}

// Automatic rotation follows next = last + interval; a shortened interval
// that puts next in the past rotates at the next worker pass.
func TestAutomaticRotationAndShortenedInterval(t *testing.T) {
	s, clock := newRotationStack(t)
	ctx := kmstest.Ctx(t)
	c := s.Client
	k, err := c.CreateKey(ctx, client.CreateKeyRequest{AutomaticRotation: true, RotationInterval: "90d"})
	if err != nil {
		t.Fatal(err)
	}
	if k.AutomaticRotation != "Enabled" || k.RotationInterval != "7776000s" || k.NextRotationDate == nil ||
		!k.NextRotationDate.Equal(k.CreationDate.Add(90*day)) {
		t.Fatalf("new key rotation fields: %+v", k)
	}
	clock.Advance(89 * day)
	if err := s.Service.Worker.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.DescribeKey(ctx, k.KeyID); d.PrimaryKeyVersion != 1 {
		t.Fatalf("rotated before it was due: v%d", d.PrimaryKeyVersion)
	}
	clock.Advance(day)
	if err := s.Service.Worker.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := c.DescribeKey(ctx, k.KeyID)
	if err != nil || d.PrimaryKeyVersion != 2 {
		t.Fatalf("due rotation did not happen: %v v%d", err, d.PrimaryKeyVersion)
	}
	if !d.NextRotationDate.Equal(d.LastRotationDate.Add(90 * day)) {
		t.Fatalf("next %v != last %v + 90d", d.NextRotationDate, d.LastRotationDate)
	}
	// A second pass at the same time does nothing more.
	if err := s.Service.Worker.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.DescribeKey(ctx, k.KeyID); d.PrimaryKeyVersion != 2 {
		t.Fatalf("second pass rotated again: v%d", d.PrimaryKeyVersion)
	}
	// 10 days later, shorten the interval to 7 days: next = last + 7d is in
	// the past, so the worker rotates at once.
	clock.Advance(10 * day)
	k2, err := c.PutRotationPolicy(ctx, k.KeyID, true, "7d")
	if err != nil {
		t.Fatal(err)
	}
	if !k2.NextRotationDate.Equal(d.LastRotationDate.Add(7 * day)) {
		t.Fatalf("next after shortening: %v", k2.NextRotationDate)
	}
	if err := s.Service.Worker.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.DescribeKey(ctx, k.KeyID); d.PrimaryKeyVersion != 3 {
		t.Fatalf("shortened interval did not rotate at once: v%d", d.PrimaryKeyVersion)
	}
	rots, err := c.ListKeyRotations(ctx, k.KeyID, 0, "")
	if err != nil || len(rots.Rotations) != 2 || rots.Rotations[0].RotationType != "AUTOMATIC" {
		t.Fatalf("rotations: %v %+v", err, rots)
	}
	st, err := c.GetRotationStatus(ctx, k.KeyID)
	if err != nil || st.AutomaticRotation != "Enabled" || st.RotationInterval != "604800s" || st.NextRotationDate == nil {
		t.Fatalf("status: %v %+v", err, st)
	}
	// Turning the policy off stops rotation.
	if _, err := c.PutRotationPolicy(ctx, k.KeyID, false, ""); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * day)
	if err := s.Service.Worker.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.DescribeKey(ctx, k.KeyID); d.PrimaryKeyVersion != 3 || d.AutomaticRotation != "Disabled" {
		t.Fatalf("rotation with policy off: %+v", d)
	}
}

// A disabled key's rotation is Suspended; when enabled again it resumes
// with a recomputed date, not a burst of missed rotations.
func TestDisabledKeySuspendsAndResumesRotation(t *testing.T) {
	s, clock := newRotationStack(t)
	ctx := kmstest.Ctx(t)
	c := s.Client
	k, err := c.CreateKey(ctx, client.CreateKeyRequest{AutomaticRotation: true, RotationInterval: "30d"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.DisableKey(ctx, k.KeyID)
	if err != nil || d.AutomaticRotation != "Suspended" {
		t.Fatalf("disabled: %v %+v", err, d)
	}
	if _, err := c.RotateKey(ctx, k.KeyID); client.Code(err) != "DisabledException" {
		t.Fatalf("on-demand rotation of a disabled key: %v", err)
	}
	clock.Advance(100 * day) // three intervals missed
	if err := s.Service.Worker.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	e, err := c.EnableKey(ctx, k.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	if e.AutomaticRotation != "Enabled" || e.PrimaryKeyVersion != 1 || !e.NextRotationDate.Equal(clock.Now().Add(30*day)) {
		t.Fatalf("after enable: %+v (now %v)", e, clock.Now())
	}
	if err := s.Service.Worker.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.DescribeKey(ctx, k.KeyID); d.PrimaryKeyVersion != 1 {
		t.Fatalf("burst of missed rotations: v%d", d.PrimaryKeyVersion)
	}
	clock.Advance(30 * day)
	if err := s.Service.Worker.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.DescribeKey(ctx, k.KeyID); d.PrimaryKeyVersion != 2 {
		t.Fatalf("resumed rotation: v%d", d.PrimaryKeyVersion)
	}
}

// Scheduled deletion: all use refused during the window, cancel returns the
// key to Disabled; after the window the objects are destroyed, the aliases
// removed, and old blobs fail saying the key was deleted.
func TestScheduledDeletion(t *testing.T) {
	s, clock := newRotationStack(t)
	ctx := kmstest.Ctx(t)
	c := s.Client
	k, err := c.CreateKey(ctx, client.CreateKeyRequest{Alias: "alias/doomed"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RotateKey(ctx, k.KeyID); err != nil {
		t.Fatal(err)
	}
	enc, err := c.Encrypt(ctx, k.KeyID, []byte("old data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, days := range []int{6, 31, -1} {
		if _, err := c.ScheduleKeyDeletion(ctx, k.KeyID, days); client.Code(err) != "ValidationException" {
			t.Fatalf("window %d: %v", days, err)
		}
	}
	p, err := c.ScheduleKeyDeletion(ctx, "alias/doomed", 7)
	if err != nil || p.KeyState != "PendingDeletion" || p.DeletionDate == nil || !p.DeletionDate.Equal(clock.Now().Add(7*day)) {
		t.Fatalf("schedule: %v %+v", err, p)
	}
	if _, err := c.Encrypt(ctx, k.KeyID, []byte("x"), nil); client.Code(err) != "KMSInvalidStateException" {
		t.Fatalf("encrypt while pending deletion: %v", err)
	}
	if _, err := c.Decrypt(ctx, enc.CiphertextBlob, nil, ""); client.Code(err) != "KMSInvalidStateException" {
		t.Fatalf("decrypt while pending deletion: %v", err)
	}
	if _, err := c.EnableKey(ctx, k.KeyID); client.Code(err) != "KMSInvalidStateException" {
		t.Fatalf("enable while pending deletion: %v", err)
	}
	cancelled, err := c.CancelKeyDeletion(ctx, k.KeyID)
	if err != nil || cancelled.KeyState != "Disabled" || cancelled.DeletionDate != nil {
		t.Fatalf("cancel: %v %+v", err, cancelled)
	}
	if _, err := c.CancelKeyDeletion(ctx, k.KeyID); client.Code(err) != "KMSInvalidStateException" {
		t.Fatalf("cancel twice: %v", err)
	}
	clock.Advance(8 * day)
	if err := s.Service.Worker.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err := c.DescribeKey(ctx, k.KeyID); err != nil || d.KeyState != "Disabled" {
		t.Fatalf("cancelled key was deleted: %v %+v", err, d)
	}

	if _, err := c.ScheduleKeyDeletion(ctx, k.KeyID, 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Service.Audit.SealAudit(ctx); err != nil { // the evidence the worker needs: the request's record, sealed
		t.Fatal(err)
	}
	clock.Advance(7*day - time.Second)
	if err := s.Service.Worker.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.DescribeKey(ctx, k.KeyID); d.KeyState != "PendingDeletion" {
		t.Fatalf("deleted before the window passed: %s", d.KeyState)
	}
	clock.Advance(time.Second)
	if err := s.Service.Worker.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := c.DescribeKey(ctx, k.KeyID)
	if err != nil || d.KeyState != "Deleted" || len(d.Aliases) != 0 {
		t.Fatalf("after the window: %v %+v", err, d)
	}
	_, err = c.Decrypt(ctx, enc.CiphertextBlob, nil, "")
	if e, ok := err.(*client.Error); !ok || e.Code != "KMSInvalidStateException" || !contains(e.Message, "deleted") {
		t.Fatalf("decrypt of a deleted key's blob: %v", err)
	}
	if _, err := c.DescribeKey(ctx, "alias/doomed"); client.Code(err) != "NotFoundException" {
		t.Fatalf("alias of a deleted key: %v", err)
	}
	vs, err := c.ListVersions(ctx, k.KeyID)
	if err != nil || len(vs) != 2 || vs[0].State != "Destroyed" || vs[1].State != "Destroyed" {
		t.Fatalf("versions of a deleted key: %v %+v", err, vs)
	}
	inv, err := s.Token.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range inv {
		if o.Ref.KeyID == uuid.MustParse(k.KeyID) {
			t.Fatalf("token object %s survived deletion", o.Label)
		}
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub)))
}

// Retiring versions: disable and re-enable a non-primary version, schedule
// its destruction and cancel, then let it be destroyed: its blobs fail with
// an error naming the version; versions are never renumbered.
func TestVersionRetirement(t *testing.T) {
	s, clock := newRotationStack(t)
	ctx := kmstest.Ctx(t)
	c := s.Client
	k, err := c.CreateKey(ctx, client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	old, err := c.Encrypt(ctx, k.KeyID, []byte("v1 data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RotateKey(ctx, k.KeyID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ChangeVersion(ctx, k.KeyID, 2, "disable", 0); client.Code(err) != "KMSInvalidStateException" {
		t.Fatalf("disable the primary: %v", err)
	}
	if _, err := c.ChangeVersion(ctx, k.KeyID, 9, "disable", 0); client.Code(err) != "NotFoundException" {
		t.Fatalf("disable a missing version: %v", err)
	}
	if v, err := c.ChangeVersion(ctx, k.KeyID, 1, "disable", 0); err != nil || v.State != "Disabled" {
		t.Fatalf("disable v1: %v %+v", err, v)
	}
	_, err = c.Decrypt(ctx, old.CiphertextBlob, nil, "")
	if e, ok := err.(*client.Error); !ok || e.Code != "DisabledException" || !contains(e.Message, "version 1") {
		t.Fatalf("decrypt with disabled version: %v", err)
	}
	if v, err := c.ChangeVersion(ctx, k.KeyID, 1, "enable", 0); err != nil || v.State != "DecryptOnly" {
		t.Fatalf("enable v1: %v %+v", err, v)
	}
	if _, err := c.Decrypt(ctx, old.CiphertextBlob, nil, ""); err != nil {
		t.Fatalf("decrypt after re-enable: %v", err)
	}
	if _, err := c.ChangeVersion(ctx, k.KeyID, 1, "schedule-destruction", 3); client.Code(err) != "ValidationException" {
		t.Fatalf("window 3 days: %v", err)
	}
	v, err := c.ChangeVersion(ctx, k.KeyID, 1, "schedule-destruction", 7)
	v1Ref, lerr := hsm.ParseLabel(v.TokenObjectLabel)
	if lerr != nil {
		t.Fatalf("token object label %q: %v", v.TokenObjectLabel, lerr)
	}
	if err != nil || v.State != "PendingDestruction" || v.DestructionDate == nil {
		t.Fatalf("schedule destruction: %v %+v", err, v)
	}
	if v, err := c.ChangeVersion(ctx, k.KeyID, 1, "cancel-destruction", 0); err != nil || v.State != "Disabled" {
		t.Fatalf("cancel destruction: %v %+v", err, v)
	}
	if _, err := c.ChangeVersion(ctx, k.KeyID, 1, "schedule-destruction", 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Service.Audit.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	clock.Advance(7 * day)
	if err := s.Service.Worker.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = c.Decrypt(ctx, old.CiphertextBlob, nil, "")
	if e, ok := err.(*client.Error); !ok || e.Code != "KMSInvalidStateException" || !contains(e.Message, "version 1") {
		t.Fatalf("decrypt with destroyed version: %v", err)
	}
	if _, _, err := s.Token.Encrypt(ctx, v1Ref, []byte("x"), nil); err == nil {
		t.Fatal("destroyed version's token object still works")
	}
	if n, err := c.RotateKey(ctx, k.KeyID); err != nil || n != 3 {
		t.Fatalf("rotation after destruction made v%d (%v), want v3: versions are never renumbered", n, err)
	}
}

// A rotation that meets another rotation of the same key is a conflict
// (409 ConflictException, retry), not a quota; it changes nothing. The
// quota on versions stays a 429 LimitExceededException.
func TestConcurrentRotationIsAConflict(t *testing.T) {
	inside, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s := kmstest.Start(t, kmstest.Options{Config: service.Config{MaxVersionsPerKey: 2, StepHook: func(step string) {
		if step == service.StepPendingInserted {
			once.Do(func() { close(inside); <-release })
		}
	}}})
	ctx := kmstest.Ctx(t)
	c := s.Client
	k, err := c.CreateKey(ctx, client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() {
		v, err := c.RotateKey(ctx, k.KeyID)
		if err == nil && v != 2 {
			err = fmt.Errorf("the first rotation made version %d, want 2", v)
		}
		first <- err
	}()
	<-inside
	_, err = c.RotateKey(ctx, k.KeyID)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusConflict || ce.Code != "ConflictException" ||
		!strings.Contains(ce.Message, "being rotated by another request") {
		t.Errorf("a rotation during another: %v, want 409 ConflictException", err)
	}
	if !client.Temporary(err) {
		t.Errorf("the client does not call a conflict temporary: %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	vs, err := c.ListVersions(ctx, k.KeyID)
	if err != nil || len(vs) != 2 {
		t.Fatalf("versions after the conflict: %d (%v), want 2: the refused rotation made nothing", len(vs), err)
	}

	_, err = c.RotateKey(ctx, k.KeyID)
	if !errors.As(err, &ce) || ce.Status != http.StatusTooManyRequests || ce.Code != "LimitExceededException" {
		t.Errorf("a rotation past the most versions: %v, want 429 LimitExceededException", err)
	}
	if vs, err := c.ListVersions(ctx, k.KeyID); err != nil || len(vs) != 2 {
		t.Errorf("versions after the refused rotation: %d (%v), want 2", len(vs), err)
	}
}
