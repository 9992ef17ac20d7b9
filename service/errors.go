package service

import (
	"errors"
	"fmt"
)

// Domain errors. Every error the service returns wraps exactly one of these
// (checked with errors.Is); the API maps each to one status and code, in one
// place. Messages wrapped around them are safe to show to clients: they never
// contain plaintext, key material, PINs, tokens or internals.
var (
	ErrValidation        = errors.New("validation error")
	ErrInvalidCiphertext = errors.New("the ciphertext is invalid, was tampered with, or the encryption context does not match")
	ErrIncorrectKey      = errors.New("the ciphertext was not made with the given key")
	ErrUnauthenticated   = errors.New("missing or unknown bearer token")
	ErrAccessDenied      = errors.New("access denied")
	ErrNotFound          = errors.New("not found")
	ErrAlreadyExists     = errors.New("already exists")
	ErrDisabled          = errors.New("disabled")
	ErrInvalidState      = errors.New("operation not allowed in the current state")
	ErrConflict          = errors.New("a concurrent request holds what this one needs; safe to retry")
	ErrLimitExceeded     = errors.New("limit exceeded")
	ErrUnavailable       = errors.New("key service temporarily unavailable; safe to retry")
)

// Error is a domain error with a client-safe message. Kind is one of the
// sentinel errors above; Unwrap exposes it to errors.Is.
type Error struct {
	Kind    error
	Message string
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the kind, so errors.Is(err, ErrNotFound) works.
func (e *Error) Unwrap() error { return e.Kind }

// errorf builds a client-safe domain error of the given kind.
func errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Validationf is a ValidationException with a message naming the bad field.
func Validationf(format string, args ...any) error {
	return errorf(ErrValidation, format, args...)
}
