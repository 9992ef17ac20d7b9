package store

import (
	"context"
	"database/sql"
	"strings"
	"sync"

	"github.com/jmoiron/sqlx"
)

// stmtCache keeps the multi-row audit INSERT prepared, one statement per
// number of rows, on SQLite's single writer connection: a group commit of n
// records then costs no parse of its statement (modernc's ExecContext
// parses the SQL text on every call). Statements are prepared on the pool
// before the transaction begins, since the transaction holds the only
// writer connection; inside it, Tx.StmtContext finds the statement already
// prepared on that connection and uses it as it is. PostgreSQL has none
// (pgx caches prepared statements per connection itself).
type stmtCache struct {
	db     *sqlx.DB
	mu     sync.Mutex
	stmts  map[int]*sql.Stmt // audit INSERT of n rows; at most auditInsertChunk
	head   *sql.Stmt         // sqlAuditHead
	move   *sql.Stmt         // sqlMoveAuditHead
	closed bool
}

func newStmtCache(db *sqlx.DB) *stmtCache {
	return &stmtCache{db: db, stmts: map[int]*sql.Stmt{}}
}

// auditInsertSQL is the INSERT of n audit rows.
func auditInsertSQL(n int) string {
	var b strings.Builder
	b.Grow(len(sqlInsertAuditRows) + n*(len(auditRowPlaceholders)+2))
	b.WriteString(sqlInsertAuditRows)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(auditRowPlaceholders)
	}
	return b.String()
}

// prepareAudit makes sure the INSERTs for a batch of n records are
// prepared. It must not be called inside a transaction on the same pool
// (it needs the connection). A failure leaves the cache as it was; the
// insert then runs unprepared.
func (c *stmtCache) prepareAudit(ctx context.Context, n int) {
	if c == nil {
		return
	}
	c.mu.Lock()
	needHead, closed := c.head == nil, c.closed
	c.mu.Unlock()
	if needHead && !closed {
		head, err1 := c.db.PrepareContext(ctx, sqlAuditHead)
		move, err2 := c.db.PrepareContext(ctx, sqlMoveAuditHead)
		c.mu.Lock()
		if err1 == nil && err2 == nil && c.head == nil && !c.closed {
			c.head, c.move = head, move
		} else {
			for _, st := range []*sql.Stmt{head, move} {
				if st != nil {
					_ = st.Close()
				}
			}
		}
		c.mu.Unlock()
	}
	for _, rows := range auditChunkSizes(n) {
		c.mu.Lock()
		_, ok := c.stmts[rows]
		closed := c.closed
		c.mu.Unlock()
		if ok || closed {
			continue
		}
		st, err := c.db.PrepareContext(ctx, auditInsertSQL(rows))
		if err != nil {
			continue
		}
		c.mu.Lock()
		if _, ok := c.stmts[rows]; ok || c.closed {
			_ = st.Close()
		} else {
			c.stmts[rows] = st
		}
		c.mu.Unlock()
	}
}

// auditChunkSizes are the row counts of the INSERTs for n records.
func auditChunkSizes(n int) []int {
	var out []int
	if n >= auditInsertChunk {
		out = append(out, auditInsertChunk)
	}
	if r := n % auditInsertChunk; r > 0 {
		out = append(out, r)
	}
	return out
}

// auditInsert returns the prepared INSERT of n rows, or nil.
func (c *stmtCache) auditInsert(n int) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stmts[n]
}

// auditHead returns the prepared head SELECT and UPDATE, or nils.
func (c *stmtCache) auditHead() (head, move *sql.Stmt) {
	if c == nil {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.head, c.move
}

// close closes the statements; later inserts run unprepared.
func (c *stmtCache) close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var err error
	for _, st := range []*sql.Stmt{c.head, c.move} {
		if st != nil {
			if e := st.Close(); e != nil && err == nil {
				err = e
			}
		}
	}
	c.head, c.move = nil, nil
	for n, st := range c.stmts {
		if e := st.Close(); e != nil && err == nil {
			err = e
		}
		delete(c.stmts, n)
	}
	return err
}
