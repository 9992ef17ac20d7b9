package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/hsmkms/hsmkms/service"
)

// DB is the SQL store on SQLite or PostgreSQL. It is safe for concurrent
// use. Its query methods run outside any transaction; InTx runs several in one.
type DB struct {
	queries
	w       *sqlx.DB // writes and transactions
	r       *sqlx.DB // reads; the same pool as w on PostgreSQL
	dialect dialect
	timeout time.Duration // SetTimeout
}

var _ service.Store = (*DB)(nil)

// dialect names a SQL dialect; it also selects the migrations directory.
type dialect string

const (
	dialectSQLite   dialect = "sqlite"
	dialectPostgres dialect = "postgres"
)

// Pool sizes. SQLite takes one writer at a time, so its writer pool is one
// connection: writers queue in database/sql rather than fight over the file
// lock. PostgreSQL is shared by replicas; keep each replica's share modest.
const (
	sqliteBusyTimeoutMS = 5000
	postgresMaxConns    = 16
	postgresIdleTime    = 5 * time.Minute
)

// Open connects to the database named by dsn, applies pending migrations and
// returns the store. dsn is one of:
//
//	sqlite:PATH                 a file (its directory is created if missing)
//	postgres://USER:PASS@HOST:PORT/DB?sslmode=...  (or postgresql://)
//
// Open refuses a database whose schema is newer than this binary knows
// (ErrSchemaTooNew). Its errors never contain the password of a URL.
func Open(ctx context.Context, dsn string) (*DB, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		return openSQLite(ctx, strings.TrimPrefix(dsn, "sqlite:"))
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		db, err := openPostgres(ctx, dsn)
		if err != nil {
			return nil, redact(err, dsn)
		}
		return db, nil
	}
	// Do not echo dsn: an unsupported URL may still carry a password.
	return nil, errors.New("store: unsupported database DSN: want sqlite:PATH, or a postgres:// or postgresql:// URL")
}

// openSQLite opens the writer pool, migrates, then opens the reader pool.
func openSQLite(ctx context.Context, path string) (*DB, error) {
	switch {
	case path == "":
		return nil, errors.New("store: sqlite: empty path (want sqlite:PATH)")
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		// An in-memory database would differ per connection, and the reader
		// pool would not see the writer's data.
		return nil, fmt.Errorf("store: sqlite: %q is not supported: give a file path", path)
	case strings.Contains(path, "?"):
		// The driver takes everything after "?" as its own parameters.
		return nil, fmt.Errorf("store: sqlite: path %q must not contain '?'", path)
	}
	path = filepath.Clean(path)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	// The file holds the keys' metadata, the token hashes and the audit
	// trail: only kmsd's user may read it. SQLite gives its -wal and -shm
	// files the mode of the database file. An existing file keeps its mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	f.Close()
	common := fmt.Sprintf("_busy_timeout=%d&_foreign_keys=1", sqliteBusyTimeoutMS)
	w, err := sqlx.Open("sqlite", path+"?"+common+
		"&_journal_mode=WAL&_synchronous=NORMAL&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := prepare(ctx, w, dialectSQLite); err != nil {
		return nil, errors.Join(err, w.Close())
	}
	// The readers open after migration, so the file is already in WAL mode.
	// query_only makes a write through the reader pool fail loudly instead
	// of racing the writer for the lock.
	r, err := sqlx.Open("sqlite", path+"?"+common+"&_query_only=1")
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store: sqlite: %w", err), w.Close())
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	if err := r.PingContext(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("store: sqlite: %w", err), r.Close(), w.Close())
	}
	return &DB{queries: newQueries(r, w, 0, newStmtCache(w)), w: w, r: r, dialect: dialectSQLite}, nil
}

// openPostgres opens one pool through pgx's database/sql driver and migrates.
func openPostgres(ctx context.Context, dsn string) (*DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx quotes the URL, masked only as well as a malformed URL
		// allows: keep just the reason, and no chain (see safeCause).
		msg := err.Error()
		if _, reason, ok := strings.Cut(msg, "`: "); ok {
			msg = reason
		}
		return nil, fmt.Errorf("store: postgres: invalid URL: %s", msg)
	}
	db := sqlx.NewDb(stdlib.OpenDB(*cfg), "pgx")
	db.SetMaxOpenConns(postgresMaxConns)
	db.SetMaxIdleConns(postgresMaxConns)
	db.SetConnMaxIdleTime(postgresIdleTime)
	if err := prepare(ctx, db, dialectPostgres); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return &DB{queries: newQueries(db, db, 0, nil), w: db, r: db, dialect: dialectPostgres}, nil
}

// prepare proves the connection and applies the migrations.
func prepare(ctx context.Context, db *sqlx.DB, d dialect) error {
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("store: %s: connect: %w", d, err)
	}
	return migrate(ctx, db, d)
}

// SetTimeout bounds every statement, every transaction as a whole, Ping
// and the taking of a WithLock lock by d (0, the default: only the
// caller's context does). kmsd sets it to KMS_DB_TIMEOUT, so that a hung
// database fails requests within a known time. Call it before use.
func (db *DB) SetTimeout(d time.Duration) {
	db.timeout = d
	db.queries = newQueries(db.r, db.w, d, db.stmts)
}

// Ping proves the database answers. On SQLite it checks both pools, so it
// waits while a transaction holds the writer.
func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := bound(ctx, db.timeout)
	defer cancel()
	if err := db.w.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", classify(err))
	}
	if db.r != db.w {
		if err := db.r.PingContext(ctx); err != nil {
			return fmt.Errorf("store: ping: %w", classify(err))
		}
	}
	return nil
}

// Close closes the pools. Call it after the last query has returned.
func (db *DB) Close() error {
	err := errors.Join(db.stmts.close(), db.w.Close())
	if db.r != db.w {
		err = errors.Join(err, db.r.Close())
	}
	return err
}

// InTx runs fn in one transaction on the writer: it commits when fn returns
// nil and rolls back when fn returns an error (returned as it is, so domain
// errors pass through) or panics (the panic goes on after the rollback).
//
// On SQLite the transaction begins IMMEDIATE and holds the only writer
// connection until it ends, so fn must use q, never the DB: a write through
// the DB would wait for the connection fn holds. Reads through the DB do not
// block, but see the last committed state, not fn's. On PostgreSQL the
// isolation level is the server's default (READ COMMITTED).
func (db *DB) InTx(ctx context.Context, fn func(q service.Queries) error) error {
	ctx, cancel := bound(ctx, db.timeout)
	defer cancel()
	return conflictErr(withTx(ctx, db.w, func(tx *sqlx.Tx) error {
		return fn(newQueries(tx, tx, db.timeout, db.stmts))
	}))
}

// withTx runs fn in a transaction on db; InTx and the migrations share it.
func withTx(ctx context.Context, db *sqlx.DB, fn func(tx *sqlx.Tx) error) error {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", classify(err))
	}
	finished := false
	defer func() {
		if finished {
			return
		}
		// fn panicked. Roll back and let the panic unwind on: no recover,
		// so the panic keeps its value and stack. A rollback error has no
		// caller to go to here, and the panic is the news that matters.
		_ = tx.Rollback()
	}()
	fnErr := fn(tx)
	finished = true
	if fnErr != nil {
		// ErrTxDone: the context ended and database/sql already rolled back.
		if err := tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
			return errors.Join(fnErr, fmt.Errorf("store: rollback: %w", err))
		}
		return fnErr
	}
	if err := tx.Commit(); err != nil {
		// When the context ends, database/sql rolls back on its own and
		// Commit may report only ErrTxDone; name the cause instead.
		if errors.Is(err, sql.ErrTxDone) && ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("store: commit: %w", classify(err))
	}
	return nil
}
