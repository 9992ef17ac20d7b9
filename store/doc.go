// Package store keeps the service's metadata (keys, versions, aliases,
// rotations), its access control (principals, policies, bearer tokens) and
// the audit log in SQL. It implements service.Store on two dialects with one
// schema:
//
//   - SQLite (modernc.org/sqlite, pure Go): the embedded default, one process.
//   - PostgreSQL (pgx through database/sql): several replicas share it.
//
// # Queries
//
// Every query is written once with "?" placeholders and rebound for the
// dialect at the call (sqlx Rebind). The queries live on one type that holds
// a reader and a writer (sqlx.ExtContext); a DB points them at its pools, a
// transaction points both at the *sqlx.Tx, so code is shared.
//
// # Portable values
//
// Times are stored as BIGINT unix microseconds UTC and read back as UTC
// time.Time values truncated to microseconds; NULL is a nil *time.Time.
// Durations are whole seconds. Tags are JSON text: a nil map is stored as
// "{}" and read back as an empty, non-nil map. Text keys compare bytewise on
// both dialects (COLLATE "C" on PostgreSQL), so pagination cursors and sort
// orders agree with Go's string order.
//
// # SQLite concurrency
//
// SQLite allows one writer at a time. A DB on SQLite holds two pools on the
// same file in WAL mode: a writer pool of exactly one connection, whose
// transactions begin IMMEDIATE (they take the write lock up front, so a
// read-then-write transaction never fails with SQLITE_BUSY halfway), and a
// read-only pool of several connections, which WAL lets run beside the
// writer. Writers in one process therefore queue in database/sql instead of
// racing for the file lock; busy_timeout covers other processes and
// checkpoints. Inside InTx, use only the Queries passed to fn: a write
// through the DB itself would wait for the connection fn holds until its
// context ends.
//
// # The audit chain
//
// Each audit record holds the hash of the record before it, and the row
// audit_head holds the last seq and hash. AppendAudit locks that row (FOR
// UPDATE on PostgreSQL; on SQLite the write transaction excludes every other
// writer), numbers and hashes its events from it, inserts them and moves it,
// all in one transaction: its caller's, or its own outside one. Appends from
// every connection and replica are therefore serial, and seqs run 1, 2, 3...
// with no gap and no fork. Inside InTx the head stays locked until the
// transaction ends, so an audited transaction appends last.
//
// # Errors
//
// A missing named row is service.ErrNotFound and a unique violation is
// service.ErrAlreadyExists, both wrapped in a message naming the entity. A
// foreign-key violation (an alias or version for a key that does not exist)
// is service.ErrNotFound for that key (or principal, or policy). Deleting a
// policy still attached to a principal is service.ErrInvalidState. Every
// other database error is returned wrapped, for the service to report as
// unavailable or internal.
package store
