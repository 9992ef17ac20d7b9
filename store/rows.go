package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/hsmkms/hsmkms/service"
)

// conn is where queries read and write: a DB reads through its reader pool
// and writes through its writer; in a transaction both are the *sqlx.Tx.
// Every query is written with "?" and rebound for the dialect here, at the
// call.
type conn struct {
	r sqlx.ExtContext
	w sqlx.ExtContext
	// timeout bounds each statement (DB.SetTimeout); 0: only ctx does.
	timeout time.Duration
}

// bound is ctx with the statement timeout: a database that hangs (a
// stopped PostgreSQL answers neither with rows nor with an error) fails
// the statement with context.DeadlineExceeded instead of holding it.
func bound(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, timeout)
}

// queries implements service.Queries once, for a DB and for a transaction,
// as one set of rows per part of the service, all on one conn.
type queries struct {
	keyRows      // keys, versions, aliases, rotations, encryption counts (service.KeyQueries, EncryptionQueries)
	scheduleRows // due work, leases, counts (service.ScheduleQueries, LeaseQueries)
	accessRows   // principals, policies, tokens, access keys (service.AccessQueries, AccessKeyQueries)
	auditRows    // the audit chain (service.AuditQueries)
	importRows   // bring your own key (service.ImportQueries)
}

type (
	keyRows      struct{ conn }
	scheduleRows struct{ conn }
	accessRows   struct{ conn }
	auditRows    struct {
		conn
		// stmts holds the audit chain's prepared statements of the
		// writer (SQLite); nil: none.
		stmts *stmtCache
	}
	importRows struct{ conn }
)

// newQueries puts every part's rows on one conn, each statement bounded
// by timeout (0: none); stmts is the writer's prepared audit statements
// (nil: none).
func newQueries(r, w sqlx.ExtContext, timeout time.Duration, stmts *stmtCache) queries {
	c := conn{r: r, w: w, timeout: timeout}
	return queries{keyRows{c}, scheduleRows{c}, accessRows{c}, auditRows{c, stmts}, importRows{c}}
}

func (q conn) get(ctx context.Context, dest any, query string, args ...any) error {
	ctx, cancel := bound(ctx, q.timeout)
	defer cancel()
	return classify(sqlx.GetContext(ctx, q.r, dest, q.r.Rebind(query), args...))
}

func (q conn) sel(ctx context.Context, dest any, query string, args ...any) error {
	ctx, cancel := bound(ctx, q.timeout)
	defer cancel()
	return classify(sqlx.SelectContext(ctx, q.r, dest, q.r.Rebind(query), args...))
}

// getW is get on the writer (a locking read).
func (q conn) getW(ctx context.Context, dest any, query string, args ...any) error {
	ctx, cancel := bound(ctx, q.timeout)
	defer cancel()
	return classify(sqlx.GetContext(ctx, q.w, dest, q.w.Rebind(query), args...))
}

func (q conn) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx, cancel := bound(ctx, q.timeout)
	defer cancel()
	res, err := q.w.ExecContext(ctx, q.w.Rebind(query), args...)
	return res, classify(err)
}

// limitArg turns a page size into a LIMIT argument: zero or less means no
// limit.
func limitArg(n int) int64 {
	if n <= 0 {
		return math.MaxInt64
	}
	return int64(n)
}

// Times are unix microseconds UTC in the database (see doc.go).

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func nullMicros(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromNullMicros(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromMicros(n.Int64)
	return &t
}

// encodeTags stores a nil map as "{}", never "null", so that every row
// decodes to a map.
func encodeTags(tags map[string]string) (string, error) {
	if len(tags) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(tags)
	if err != nil {
		return "", fmt.Errorf("store: encode tags: %w", err)
	}
	return string(b), nil
}

func decodeTags(s string) (map[string]string, error) {
	tags := map[string]string{}
	if s == "" {
		return tags, nil
	}
	if err := json.Unmarshal([]byte(s), &tags); err != nil {
		return nil, fmt.Errorf("store: decode tags: %w", err)
	}
	if tags == nil { // the text was "null"
		tags = map[string]string{}
	}
	return tags, nil
}

// keyColumns lists the columns of keyRow, in the order keyArgs gives them.
// The lease columns are not part of a Key: only ClaimKey and ReleaseKey
// touch them.
const keyColumns = `id, description, state, origin, key_spec, key_manager,
	created_at, updated_at, primary_version, rotation_enabled,
	rotation_interval_seconds, last_rotation, next_rotation, deletion_date, tags,
	rotation_anchor, on_demand_rotations, rotation_failure_at, rotation_failure_message`

// keyRow is a keys row as stored.
type keyRow struct {
	ID               string        `db:"id"`
	Description      string        `db:"description"`
	State            string        `db:"state"`
	Origin           string        `db:"origin"`
	KeySpec          string        `db:"key_spec"`
	Manager          string        `db:"key_manager"`
	CreatedAt        int64         `db:"created_at"`
	UpdatedAt        int64         `db:"updated_at"`
	PrimaryVersion   int           `db:"primary_version"`
	RotationEnabled  bool          `db:"rotation_enabled"`
	RotationInterval int64         `db:"rotation_interval_seconds"`
	LastRotation     sql.NullInt64 `db:"last_rotation"`
	NextRotation     sql.NullInt64 `db:"next_rotation"`
	DeletionDate     sql.NullInt64 `db:"deletion_date"`
	Tags             string        `db:"tags"`
	RotationAnchor   sql.NullInt64 `db:"rotation_anchor"`
	OnDemand         int           `db:"on_demand_rotations"`
	FailureAt        sql.NullInt64 `db:"rotation_failure_at"`
	FailureMessage   string        `db:"rotation_failure_message"`
}

func (r *keyRow) key() (*service.Key, error) {
	tags, err := decodeTags(r.Tags)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", r.ID, err)
	}
	return &service.Key{
		ID:                r.ID,
		Description:       r.Description,
		State:             service.KeyState(r.State),
		Origin:            service.Origin(r.Origin),
		KeySpec:           r.KeySpec,
		Manager:           service.KeyManager(r.Manager),
		CreatedAt:         fromMicros(r.CreatedAt),
		UpdatedAt:         fromMicros(r.UpdatedAt),
		PrimaryVersion:    r.PrimaryVersion,
		RotationEnabled:   r.RotationEnabled,
		RotationInterval:  time.Duration(r.RotationInterval) * time.Second,
		LastRotation:      fromNullMicros(r.LastRotation),
		NextRotation:      fromNullMicros(r.NextRotation),
		DeletionDate:      fromNullMicros(r.DeletionDate),
		RotationAnchor:    fromNullMicros(r.RotationAnchor),
		OnDemandRotations: r.OnDemand,
		RotationFailure:   failure(r.FailureAt, r.FailureMessage),
		Tags:              tags,
	}, nil
}

// failure is the stored last rotation failure, nil when there is none.
func failure(at sql.NullInt64, message string) *service.RotationFailure {
	t := fromNullMicros(at)
	if t == nil {
		return nil
	}
	return &service.RotationFailure{At: *t, Message: message}
}

// versionColumns lists the columns of versionRow.
const versionColumns = `key_id, version, state, origin, created_at, updated_at, destroy_at, token_label, encryptions`

// versionRow is a key_versions row as stored.
type versionRow struct {
	KeyID       string        `db:"key_id"`
	Version     int           `db:"version"`
	State       string        `db:"state"`
	Origin      string        `db:"origin"`
	CreatedAt   int64         `db:"created_at"`
	UpdatedAt   int64         `db:"updated_at"`
	DestroyAt   sql.NullInt64 `db:"destroy_at"`
	TokenLabel  string        `db:"token_label"`
	Encryptions int64         `db:"encryptions"`
}

func (r *versionRow) version() service.Version {
	return service.Version{
		KeyID:       r.KeyID,
		Version:     r.Version,
		State:       service.VersionState(r.State),
		Origin:      service.Origin(r.Origin),
		CreatedAt:   fromMicros(r.CreatedAt),
		UpdatedAt:   fromMicros(r.UpdatedAt),
		DestroyAt:   fromNullMicros(r.DestroyAt),
		TokenLabel:  r.TokenLabel,
		Encryptions: r.Encryptions,
	}
}

func versionsOf(rows []versionRow) []service.Version {
	vs := make([]service.Version, len(rows))
	for i := range rows {
		vs[i] = rows[i].version()
	}
	return vs
}
