package service_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Issue 16, item 7, the upgrade: a database an older release wrote holds
// the SHA-256 of each token. The first start on a token without the
// bearer-token MAC key makes it and converts those rows (their tokens keep
// working); from then on a SHA-256 row, which only someone writing the
// database can have added, is refused, by this process and by the next.
func TestTokensOfAnOlderReleaseAreConvertedOnce(t *testing.T) {
	ctx := kmstest.Ctx(t)
	tok := kmstest.Token(t)
	// A token this release never ran on: no bearer-token MAC key in it.
	if err := tok.Destroy(ctx, hsm.ObjectRef{KeyID: service.MACKeyID, Version: 2}); err != nil {
		t.Fatal(err)
	}
	db := kmstest.Store(t)
	bootstrap, issued := "Older-Release-Bootstrap-7", "kms_0123456789abcdef_"+strings.Repeat("b", 43)
	kmstest.Secret(bootstrap)
	kmstest.Secret(issued)
	now := time.Now().UTC()
	err := db.InTx(ctx, func(q service.Queries) error {
		for _, f := range []func() error{
			func() error {
				return q.PutPolicy(ctx, &service.PolicyRecord{Name: "admin", CreatedAt: now, UpdatedAt: now,
					Document: `{"statements":[{"effect":"allow","actions":["kms:*"],"resources":["*"]}]}`})
			},
			func() error { return q.InsertPrincipal(ctx, &service.Principal{Name: "admin", CreatedAt: now}) },
			func() error { return q.AttachPolicy(ctx, "admin", "admin") },
			func() error {
				return q.InsertToken(ctx, &service.BearerToken{ID: "bootstrap", Principal: "admin", Hash: sha256Hex(bootstrap), CreatedAt: now})
			},
			func() error {
				return q.InsertToken(ctx, &service.BearerToken{ID: "0123456789abcdef", Principal: "admin", Hash: sha256Hex(issued), CreatedAt: now})
			},
		} {
			if err := f(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	svc := service.New(db, tok, service.Config{Logger: kmstest.Logger()})
	defer svc.Close()
	for _, b := range []string{bootstrap, issued} {
		if c, err := svc.Access.Authenticate(ctx, b); err != nil || c.Principal != "admin" {
			t.Fatalf("a token of the older release after the upgrade: %v %v", c, err)
		}
	}
	for _, id := range []string{"bootstrap", "0123456789abcdef"} {
		row, err := db.GetToken(ctx, id)
		if err != nil || !strings.HasPrefix(row.Hash, "hmac:") || strings.Contains(row.Hash, sha256Hex(bootstrap)) {
			t.Fatalf("row %s after the upgrade: %+v %v, want a MAC", id, row, err)
		}
	}

	// A database writer adds SHA-256 rows now: refused, before and after
	// a restart (the key exists: nothing is converted again).
	planted := "kms_fedcba9876543210_" + strings.Repeat("c", 43)
	kmstest.Secret(planted)
	if err := db.InsertToken(ctx, &service.BearerToken{ID: "fedcba9876543210", Principal: "admin", Hash: sha256Hex(planted), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	again := service.New(db, tok, service.Config{Logger: kmstest.Logger()})
	defer again.Close()
	for i, s := range []*service.Service{svc, again} {
		if _, err := s.Access.Authenticate(ctx, planted); !errors.Is(err, service.ErrUnauthenticated) {
			t.Errorf("process %d: a SHA-256 row added after the upgrade: %v, want ErrUnauthenticated", i, err)
		}
		if _, err := s.Access.Authenticate(ctx, bootstrap); err != nil {
			t.Errorf("process %d: the converted bootstrap token: %v", i, err)
		}
	}
	if row, _ := db.GetToken(ctx, "fedcba9876543210"); row == nil || row.Hash != sha256Hex(planted) {
		t.Errorf("the planted row was converted: %+v", row)
	}
}

// Issue 16, item 13: a token with expires_in stops working at its expiry
// (ErrUnauthenticated saying so); the last use is written at most once a
// minute per token, however many requests it makes.
func TestTokenExpiryAndLastUse(t *testing.T) {
	clock := kmstest.NewClock()
	s := kmstest.Start(t, kmstest.Options{Config: service.Config{Clock: clock}})
	ctx := service.WithCaller(kmstest.Ctx(t), mustAuth(t, s, kmstest.AdminToken))
	for _, bad := range []time.Duration{-time.Hour, time.Second, 11 * 365 * 24 * time.Hour} {
		if _, err := s.Service.Access.CreateToken(ctx, service.AdminPrincipal, "bad", bad); !errors.Is(err, service.ErrValidation) {
			t.Errorf("expires in %s: %v, want ErrValidation", bad, err)
		}
	}
	nt, err := s.Service.Access.CreateToken(ctx, service.AdminPrincipal, "an hour", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kmstest.Secret(nt.Token)
	if nt.ExpiresAt == nil || !nt.ExpiresAt.Equal(clock.Now().Add(time.Hour)) {
		t.Fatalf("expiry %v, want an hour from now", nt.ExpiresAt)
	}
	first := clock.Now()
	lastUse := func() *time.Time {
		t.Helper()
		row, err := s.Store.GetToken(ctx, nt.ID)
		if err != nil {
			t.Fatal(err)
		}
		return row.LastUsedAt
	}
	for i := 0; i < 50; i++ {
		if _, err := s.Service.Access.Authenticate(ctx, nt.Token); err != nil {
			t.Fatalf("before expiry: %v", err)
		}
		clock.Advance(time.Second) // past the auth cache each time
	}
	if got := lastUse(); got == nil || !got.Equal(first) {
		t.Errorf("last use after 50 requests in 50 s: %v, want %v (one write)", got, first)
	}
	clock.Advance(15 * time.Second)
	if _, err := s.Service.Access.Authenticate(ctx, nt.Token); err != nil {
		t.Fatal(err)
	}
	if got := lastUse(); got == nil || !got.Equal(clock.Now()) {
		t.Errorf("last use a minute later: %v, want %v", got, clock.Now())
	}
	clock.Advance(time.Hour)
	_, err = s.Service.Access.Authenticate(ctx, nt.Token)
	if !errors.Is(err, service.ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("after expiry: %v, want ErrUnauthenticated (expired)", err)
	}
}

func mustAuth(t *testing.T, s *kmstest.Stack, bearer string) *service.Caller {
	t.Helper()
	c, err := s.Service.Access.Authenticate(kmstest.Ctx(t), bearer)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
