package store

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/hsmkms/hsmkms/service"
)

// ErrSchemaTooNew means the database was migrated by a newer binary. Running
// an older binary against it could corrupt data, so Open refuses.
var ErrSchemaTooNew = errors.New("database schema is newer than this binary supports")

// violation is the kind of constraint a statement broke.
type violation int

const (
	noViolation violation = iota
	uniqueViolation
	foreignKeyViolation
)

// PostgreSQL SQLSTATE codes (Appendix A of its manual).
const (
	pgUniqueViolation      = "23505"
	pgForeignKeyViolation  = "23503"
	pgDeadlockDetected     = "40P01"
	pgSerializationFailure = "40001"
)

// conflictErr turns PostgreSQL's answer to two transactions in each
// other's way (a deadlock it broke, a serialization failure) into the
// retryable Unavailable the client can act on; the transaction was rolled
// back whole. Other errors pass unchanged.
func conflictErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == pgDeadlockDetected || pe.Code == pgSerializationFailure) {
		return &service.Error{Kind: service.ErrUnavailable, Message: "the request met a concurrent change and was rolled back; retry"}
	}
	return err
}

// unavailableError is a database that did not answer: a connection lost
// or refused, a deadline passed. It wraps service.ErrUnavailable, so that
// the service answers with the retryable error without knowing SQL, and
// the cause, for the service's log.
type unavailableError struct{ cause error }

func (e *unavailableError) Error() string { return "database unavailable: " + e.cause.Error() }

func (e *unavailableError) Unwrap() []error { return []error{service.ErrUnavailable, e.cause} }

// classify is the one place that decides a database error means the
// database is unavailable; any other error passes unchanged.
func classify(err error) error {
	var netErr net.Error
	var u *unavailableError
	switch {
	case err == nil, errors.As(err, &u):
		return err
	case errors.As(err, &netErr), errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, context.DeadlineExceeded):
		return &unavailableError{cause: err}
	}
	return err
}

// violationOf reads the driver's error code; error strings are not stable
// across versions and locales, codes are. The SQLite driver reports extended
// result codes, which tell a unique index from a primary key from a foreign key.
func violationOf(err error) violation {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return uniqueViolation
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return foreignKeyViolation
		}
		return noViolation
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case pgUniqueViolation:
			return uniqueViolation
		case pgForeignKeyViolation:
			return foreignKeyViolation
		}
	}
	return noViolation
}

// Entity names for messages; the messages reach clients, so they hold only
// names and ids the client already knows.

func keyEntity(id string) string { return fmt.Sprintf("key %q", id) }

func aliasEntity(name string) string { return fmt.Sprintf("alias %q", name) }

func versionEntity(id string, v int) string { return fmt.Sprintf("version %d of key %q", v, id) }

func rotationEntity(id string, v int) string {
	return fmt.Sprintf("rotation to version %d of key %q", v, id)
}

func principalEntity(name string) string { return fmt.Sprintf("principal %q", name) }

func subjectEntity(subject string) string {
	return fmt.Sprintf("principal with certificate subject %q", subject)
}

func policyEntity(name string) string { return fmt.Sprintf("policy %q", name) }

func attachmentEntity(principal, policy string) string {
	return fmt.Sprintf("policy %q attached to principal %q", policy, principal)
}

func tokenEntity(id string) string { return fmt.Sprintf("bearer token %q", id) }

func notFound(entity string) error { return fmt.Errorf("%s: %w", entity, service.ErrNotFound) }

func alreadyExists(entity string) error {
	return fmt.Errorf("%s: %w", entity, service.ErrAlreadyExists)
}

// internal wraps an unexpected database error; the service reports it as
// unavailable (connection errors) or internal, never to the client.
func internal(op, entity string, err error) error {
	return fmt.Errorf("store: %s %s: %w", op, entity, err)
}

// dbErr maps the error of statement op on entity to a domain error. keyID is
// the key the row refers to: a foreign-key violation means that key is
// missing. Any other error stays as it is, wrapped, so that errors.Is still
// sees context and connection errors.
func dbErr(err error, op, entity, keyID string) error {
	return refErr(err, op, entity, keyEntity(keyID))
}

// refErr is dbErr for a row that refers to ref, an entity other than a key:
// a foreign-key violation means ref is missing.
func refErr(err error, op, entity, ref string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return notFound(entity)
	}
	switch violationOf(err) {
	case uniqueViolation:
		return alreadyExists(entity)
	case foreignKeyViolation:
		return notFound(ref)
	}
	return internal(op, entity, err)
}

// onPrimaryKey reports whether err, a unique violation, is of the table's
// primary key rather than of another unique column. SQLite has an extended
// code for it; PostgreSQL names the constraint TABLE_pkey by default, and the
// migrations keep the defaults.
func onPrimaryKey(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == pgUniqueViolation && strings.HasSuffix(pe.ConstraintName, "_pkey")
	}
	return false
}

// invalidState is service.ErrInvalidState with a message saying why.
func invalidState(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), service.ErrInvalidState)
}

// affectedOne is dbErr for an UPDATE or DELETE of one named row: no row
// affected means the row is missing.
func affectedOne(res sql.Result, err error, op, entity, keyID string) error {
	if err != nil {
		return dbErr(err, op, entity, keyID)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return internal(op, entity, err)
	}
	if n == 0 {
		return notFound(entity)
	}
	return nil
}

// redactedError is an Open error with the password masked in its message.
// Its chain skips the pgx errors that hold the password in fields
// (ParseConfigError.ConnString, ConnectError.Config), so that code which
// digs with errors.As cannot find it either.
type redactedError struct {
	msg   string
	cause error
}

func (e *redactedError) Error() string { return e.msg }

func (e *redactedError) Unwrap() error { return e.cause }

// safeCause is the part of err's chain that holds no connection settings.
func safeCause(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return nil // its cause may be a *url.Error quoting the whole URL
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return ce.Unwrap() // the dial or server error: keeps net.Error
	}
	return err
}

// redact returns err with every form of the password of dsn (a postgres URL)
// masked. pgx masks its own messages, but only on a best-effort basis for
// malformed URLs, and net/url errors quote the whole URL. The raw text is
// scanned, not url.Parse'd, so that this works on malformed URLs too. Even
// without a password in dsn the chain is cut (PGPASSWORD, a passfile).
func redact(err error, dsn string) error {
	_, rest, _ := strings.Cut(dsn, "://")
	rest, query, _ := strings.Cut(rest, "?")
	var raw []string
	// The userinfo ends at the last '@': passwords may hold a bare '@'.
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if _, pw, ok := strings.Cut(rest[:at], ":"); ok {
			raw = append(raw, pw)
		}
	}
	for _, kv := range strings.Split(query, "&") {
		if pw, ok := strings.CutPrefix(kv, "password="); ok {
			raw = append(raw, pw)
		}
	}
	var secrets []string
	for _, s := range raw {
		secrets = append(secrets, s)
		if u, uerr := url.PathUnescape(s); uerr == nil {
			secrets = append(secrets, u)
		}
		if u, uerr := url.QueryUnescape(s); uerr == nil {
			secrets = append(secrets, u)
		}
	}
	secrets = slices.DeleteFunc(secrets, func(s string) bool { return s == "" })
	// Longest first, so that a secret containing another is masked whole.
	slices.SortFunc(secrets, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
	msg := err.Error()
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return &redactedError{msg: msg, cause: safeCause(err)}
}
