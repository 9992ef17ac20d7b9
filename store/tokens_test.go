package store

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

// newToken is an unrevoked token whose hash is derived from its id.
func newToken(id, principal string, created time.Time) *service.BearerToken {
	sum := sha256.Sum256([]byte("secret of " + id))
	return &service.BearerToken{ID: id, Principal: principal, Hash: hex.EncodeToString(sum[:]),
		Description: "token " + id, CreatedAt: created}
}

func storedToken(tk *service.BearerToken) service.BearerToken {
	c := *tk
	c.CreatedAt, c.RevokedAt = us(c.CreatedAt), usPtr(c.RevokedAt)
	return c
}

func TestTokenCRUD(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertPrincipals(t, s, "alice", "bob")
		// Inserted out of order; listed by creation, then id.
		tokens := []*service.BearerToken{
			newToken("t-late", "alice", at(time.Hour)),
			newToken("t-b", "alice", t0),
			newToken("t-a", "alice", t0),
			newToken("t-bob", "bob", t0),
		}
		revoked := newToken("t-revoked", "alice", at(time.Minute))
		revoked.RevokedAt = ptr(at(2 * time.Minute))
		tokens = append(tokens, revoked)
		for _, tk := range tokens {
			noErr(t, s.InsertToken(ctx, tk))
		}
		got, err := s.GetToken(ctx, "t-revoked")
		noErr(t, err)
		deepEqual(t, "GetToken", *got, storedToken(revoked))

		list, err := s.ListTokens(ctx, "alice")
		noErr(t, err)
		var want []service.BearerToken
		for _, i := range []int{2, 1, 4, 0} {
			want = append(want, storedToken(tokens[i]))
		}
		deepEqual(t, "ListTokens", list, want)
		for _, who := range []string{"nobody", ""} {
			none, err := s.ListTokens(ctx, who)
			noErr(t, err)
			deepEqual(t, "ListTokens "+who, none, []service.BearerToken{})
		}

		// Revoke: the first time stands.
		noErr(t, s.RevokeToken(ctx, "t-a", at(3*time.Hour)))
		noErr(t, s.RevokeToken(ctx, "t-a", at(4*time.Hour)))
		noErr(t, s.RevokeToken(ctx, "t-revoked", at(5*time.Hour)))
		for id, when := range map[string]time.Time{"t-a": at(3 * time.Hour), "t-revoked": at(2 * time.Minute)} {
			got, err := s.GetToken(ctx, id)
			noErr(t, err)
			if got.RevokedAt == nil || !got.RevokedAt.Equal(us(when)) {
				t.Errorf("%s revoked at %v, want %v", id, got.RevokedAt, us(when))
			}
		}
		got, err = s.GetToken(ctx, "t-b")
		noErr(t, err)
		if got.RevokedAt != nil {
			t.Errorf("revoking t-a revoked t-b at %v", got.RevokedAt)
		}
	})
}

func TestTokenErrors(t *testing.T) {
	eachStore(t, func(t *testing.T, s *DB) {
		ctx := t.Context()
		mustInsertPrincipals(t, s, "alice")
		tk := newToken("t1", "alice", t0)
		noErr(t, s.InsertToken(ctx, tk))
		sameSecret := newToken("t2", "alice", t0)
		sameSecret.Hash = tk.Hash
		sameID := newToken("t2", "alice", t0) // another secret
		sameID.ID = "t1"
		_, getErr := s.GetToken(ctx, "none")
		tests := []struct {
			name   string
			err    error
			kind   error
			entity string
		}{
			{"insert taken id", s.InsertToken(ctx, sameID), service.ErrAlreadyExists, `bearer token "t1"`},
			{"insert taken hash", s.InsertToken(ctx, sameSecret), service.ErrAlreadyExists, "bearer token with the same secret"},
			{"insert for missing principal", s.InsertToken(ctx, newToken("t3", "nobody", t0)), service.ErrNotFound, `principal "nobody"`},
			{"get missing", getErr, service.ErrNotFound, `bearer token "none"`},
			{"revoke missing", s.RevokeToken(ctx, "none", t0), service.ErrNotFound, `bearer token "none"`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantErr(t, tt.err, tt.kind, tt.entity)
				if strings.Contains(tt.err.Error(), tk.Hash) {
					t.Errorf("err = %q quotes the token hash", tt.err)
				}
			})
		}
		list, err := s.ListTokens(ctx, "alice")
		noErr(t, err)
		if len(list) != 1 {
			t.Errorf("%d tokens after failed inserts, want 1", len(list))
		}
	})
}
