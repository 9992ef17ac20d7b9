package api_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

var accessKeyID = regexp.MustCompile(`^AKIA[A-Z2-7]{16}$`)

func TestAccessKeys(t *testing.T) {
	dir := t.TempDir()
	s := kmstest.Start(t, kmstest.Options{Store: kmstest.StoreAt(t, "sqlite:"+filepath.Join(dir, "kms.db"))})
	ctx := kmstest.Ctx(t)
	admin := s.Client
	if _, err := admin.CreatePrincipal(ctx, client.CreatePrincipalRequest{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.CreateToken(ctx, "app", "")
	if err != nil {
		t.Fatal(err)
	}
	app := client.New(s.URL, tok.Token, nil)

	k, err := admin.CreateAccessKey(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	kmstest.Secret(k.SecretAccessKey)
	if !accessKeyID.MatchString(k.AccessKeyID) || len(k.SecretAccessKey) != 40 || k.Principal != "app" {
		t.Fatalf("new access key %q, secret of %d characters, principal %q", k.AccessKeyID, len(k.SecretAccessKey), k.Principal)
	}
	check := func(secret string) func([]byte) error {
		return func(got []byte) error {
			if string(got) != secret {
				return errors.New("secret differs")
			}
			return nil
		}
	}
	caller, err := s.Service.Access.AuthenticateAccessKey(ctx, k.AccessKeyID, check(k.SecretAccessKey))
	if err != nil || caller.Principal != "app" {
		t.Fatalf("AuthenticateAccessKey = %v, %v; want principal app", caller, err)
	}
	if _, err := s.Service.Access.AuthenticateAccessKey(ctx, k.AccessKeyID, check("another secret")); !errors.Is(err, service.ErrUnauthenticated) {
		t.Fatalf("a wrong secret authenticated: %v", err)
	}

	list, err := admin.ListAccessKeys(ctx, "app")
	if err != nil || len(list) != 1 || list[0].AccessKeyID != k.AccessKeyID || list[0].LastUsedDate == nil {
		t.Fatalf("ListAccessKeys = %+v, %v; want the one key, used", list, err)
	}

	// Refusals change nothing.
	for _, tc := range []struct {
		name string
		call func() error
		code string
	}{
		{"a principal without kms:ManageAccess creates", func() error { _, err := app.CreateAccessKey(ctx, "app"); return err }, "AccessDeniedException"},
		{"... lists", func() error { _, err := app.ListAccessKeys(ctx, "app"); return err }, "AccessDeniedException"},
		{"... deletes", func() error { return app.DeleteAccessKey(ctx, "app", k.AccessKeyID) }, "AccessDeniedException"},
		{"unknown principal", func() error { _, err := admin.CreateAccessKey(ctx, "nobody"); return err }, "NotFoundException"},
		{"list of an unknown principal", func() error { _, err := admin.ListAccessKeys(ctx, "nobody"); return err }, "NotFoundException"},
		{"delete of another principal's key", func() error { return admin.DeleteAccessKey(ctx, "admin", k.AccessKeyID) }, "NotFoundException"},
		{"delete of no access key id", func() error { return admin.DeleteAccessKey(ctx, "app", k.SecretAccessKey[:20]) }, "ValidationException"},
		{"delete of a missing key", func() error { return admin.DeleteAccessKey(ctx, "app", "AKIAAAAAAAAAAAAAAAAA") }, "NotFoundException"},
		{"a body with fields", func() error {
			return admin.Do(ctx, "POST", "/v1/principals/app/access-keys", map[string]string{"secret": "x"}, nil)
		}, "ValidationException"},
	} {
		if err := tc.call(); client.Code(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
	if list, err := admin.ListAccessKeys(ctx, "app"); err != nil || len(list) != 1 {
		t.Fatalf("after refusals: %+v, %v", list, err)
	}

	// The database alone never reveals the secret: not in any file of it.
	// (The audit records name the key id, never the secret; the log scan
	// of the suite checks the logs.)
	s.Service.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "kms.db*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), k.SecretAccessKey) {
			t.Errorf("%s holds the secret access key", f)
		}
	}
}

func TestDeletedAccessKeyStopsAtOnce(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ctx := kmstest.Ctx(t)
	k, err := s.Client.CreateAccessKey(ctx, "admin")
	if err != nil {
		t.Fatal(err)
	}
	kmstest.Secret(k.SecretAccessKey)
	ok := func(got []byte) error {
		if string(got) != k.SecretAccessKey {
			return errors.New("secret differs")
		}
		return nil
	}
	if _, err := s.Service.Access.AuthenticateAccessKey(ctx, k.AccessKeyID, ok); err != nil {
		t.Fatal(err)
	}
	if err := s.Client.DeleteAccessKey(ctx, "admin", k.AccessKeyID); err != nil {
		t.Fatal(err)
	}
	_, err = s.Service.Access.AuthenticateAccessKey(context.Background(), k.AccessKeyID, ok)
	if !errors.Is(err, service.ErrUnknownAccessKey) {
		t.Fatalf("deleted key: %v, want ErrUnknownAccessKey", err)
	}
	if list, err := s.Client.ListAccessKeys(ctx, "admin"); err != nil || len(list) != 0 {
		t.Fatalf("ListAccessKeys = %+v, %v; want none", list, err)
	}
}
