package service

import (
	"context"
	"time"
)

// AccessKey is an AWS access key of a principal (Signature Version 4). Its
// secret is never stored: it is derived in the token from the id and Nonce
// (accesskeys.go), so the database alone does not reveal it.
type AccessKey struct {
	ID         string     `db:"id"`
	Principal  string     `db:"principal"`
	Nonce      string     `db:"nonce"`
	CreatedAt  time.Time  `db:"created_at"`
	LastUsedAt *time.Time `db:"last_used_at"`
}

// AccessKeyQueries are the reads and writes of access keys.
type AccessKeyQueries interface {
	// InsertAccessKey adds k; ErrNotFound when its principal does not
	// exist, ErrAlreadyExists when its id is taken.
	InsertAccessKey(ctx context.Context, k *AccessKey) error
	GetAccessKey(ctx context.Context, id string) (*AccessKey, error)
	// ListAccessKeys lists a principal's access keys by creation.
	ListAccessKeys(ctx context.Context, principal string) ([]AccessKey, error)
	// DeleteAccessKey removes one; ErrNotFound when there is none.
	DeleteAccessKey(ctx context.Context, id string) error
	// TouchAccessKey sets last_used_at to at when it is unset or before
	// notAfter (so that a key in use is written about once a minute, not
	// on every request).
	TouchAccessKey(ctx context.Context, id string, at, notAfter time.Time) error
}
