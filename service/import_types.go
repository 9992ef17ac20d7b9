package service

import (
	"context"
	"time"
)

// ImportParams are one import's parameters as stored: the wrapping key
// pair in the token (WrappingID) and the SHA-256 of the import token.
type ImportParams struct {
	TokenHash  string
	KeyID      string
	WrappingID string
	Algorithm  string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	UsedAt     *time.Time
}

// KeyMaterial is what is known of a key's imported material without
// holding it: the key check value of its first import, and its expiry.
type KeyMaterial struct {
	KeyID      string
	KCV        string // hex
	ImportedAt time.Time
	ValidTo    *time.Time
}

// ImportQueries are the reads and writes of bring your own key.
type ImportQueries interface {
	InsertImportParams(ctx context.Context, p *ImportParams) error
	// GetImportParams finds parameters by the hash of their import token.
	GetImportParams(ctx context.Context, tokenHash string) (*ImportParams, error)
	// UseImportParams marks parameters used at `at`; ErrInvalidState if
	// they were used already (an import token is good once).
	UseImportParams(ctx context.Context, tokenHash string, at time.Time) error
	// ExpiredImportParams lists parameters expired at now: the worker
	// destroys their wrapping keys (used ones are destroyed at import
	// already; this catches the rest) and deletes them.
	ExpiredImportParams(ctx context.Context, now time.Time, limit int) ([]ImportParams, error)
	DeleteImportParams(ctx context.Context, tokenHash string) error
	GetKeyMaterial(ctx context.Context, keyID string) (*KeyMaterial, error)
	// PutKeyMaterial inserts or replaces a key's material record.
	PutKeyMaterial(ctx context.Context, m *KeyMaterial) error
	// ExpiredMaterial lists keys whose material's valid_to <= now and that
	// still hold it (state Enabled or Disabled).
	ExpiredMaterial(ctx context.Context, now time.Time, limit int) ([]string, error)
}
