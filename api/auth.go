package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"

	"github.com/hsmkms/hsmkms/service"
)

// StaticToken authenticates one bearer token (KMS_BOOTSTRAP_TOKEN) as one
// principal. Only the token's SHA-256 is kept, and the comparison takes
// constant time.
type StaticToken struct {
	hash      [sha256.Size]byte
	principal string
}

// NewStaticToken hashes token; the caller should drop its copy.
func NewStaticToken(token, principal string) *StaticToken {
	return &StaticToken{hash: sha256.Sum256([]byte(token)), principal: principal}
}

// Authenticate implements Authenticator.
func (s *StaticToken) Authenticate(_ context.Context, bearer string) (string, error) {
	h := sha256.Sum256([]byte(bearer))
	if subtle.ConstantTimeCompare(h[:], s.hash[:]) != 1 {
		return "", service.ErrUnauthenticated
	}
	return s.principal, nil
}
