package store

import (
	"context"
	"database/sql/driver"
	"fmt"
	"sync"
)

// sqliteLocks serialise WithLock on SQLite, whose deployments are one
// process: a mutex per name is a lock across everything that can share the
// file.
var sqliteLocks sync.Map // name -> *sync.Mutex

// WithLock runs fn while holding a named lock that every replica sharing
// the database respects: a PostgreSQL session advisory lock, or on SQLite
// a process-wide mutex. It is for rare, slow, once-only work that must not
// run twice at the same time (creating a token object two replicas might
// both want), and fn may call the token: no transaction is open.
func (db *DB) WithLock(ctx context.Context, name string, fn func() error) error {
	if db.dialect == dialectSQLite {
		m, _ := sqliteLocks.LoadOrStore(name, &sync.Mutex{})
		mu := m.(*sync.Mutex)
		mu.Lock()
		defer mu.Unlock()
		return fn()
	}
	lctx, cancel := bound(ctx, db.timeout)
	defer cancel()
	conn, err := db.w.Connx(lctx)
	if err != nil {
		return fmt.Errorf("store: lock %s: %w", name, classify(err))
	}
	defer conn.Close()
	if _, err := conn.ExecContext(lctx, `SELECT pg_advisory_lock(hashtextextended($1, 0))`, "hsmkms/"+name); err != nil {
		return fmt.Errorf("store: lock %s: %w", name, classify(err))
	}
	defer func() {
		_, err := conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, "hsmkms/"+name)
		if err != nil {
			// The session still holds the lock: drop the connection rather
			// than return it to the pool, so the server releases it.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return fn()
}
