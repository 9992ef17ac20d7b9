package store

import (
	"context"
	"database/sql"

	"github.com/hsmkms/hsmkms/service"
)

// Principals. A principal is read together with its attached policy names
// in one statement (a LEFT JOIN on principal_policies, one row per policy),
// so that the two always come from the same snapshot.

// principalColumns selects from principals p LEFT JOIN principal_policies
// pp. A missing certificate subject is NULL in the table and "" in Go.
const principalColumns = `p.name, p.created_at, COALESCE(p.cert_subject, '') AS cert_subject, pp.policy`

const (
	sqlInsertPrincipal = `INSERT INTO principals (name, created_at, cert_subject) VALUES (?, ?, ?)`
	sqlGetPrincipal    = `SELECT ` + principalColumns + `
		FROM principals p LEFT JOIN principal_policies pp ON pp.principal = p.name
		WHERE p.name = ? ORDER BY pp.policy`
	sqlPrincipalBySubject = `SELECT ` + principalColumns + `
		FROM principals p LEFT JOIN principal_policies pp ON pp.principal = p.name
		WHERE p.cert_subject = ? ORDER BY pp.policy`
	// The page is cut first, then joined, so that LIMIT counts principals
	// rather than attachments.
	sqlListPrincipals = `SELECT ` + principalColumns + `
		FROM (SELECT name, created_at, cert_subject FROM principals
			WHERE name > ? ORDER BY name LIMIT ?) p
		LEFT JOIN principal_policies pp ON pp.principal = p.name
		ORDER BY p.name, pp.policy`
	// Attachments and tokens go too: ON DELETE CASCADE.
	sqlDeletePrincipal = `DELETE FROM principals WHERE name = ?`
	sqlCountPrincipals = `SELECT COUNT(*) FROM principals`
)

// principalRow is one row of the join: a principal and one attached policy
// (NULL when it has none).
type principalRow struct {
	Name        string         `db:"name"`
	CreatedAt   int64          `db:"created_at"`
	CertSubject string         `db:"cert_subject"`
	Policy      sql.NullString `db:"policy"`
}

// principalsOf folds join rows, ordered by principal, into principals. Each
// has a non-nil Policies slice, empty when none is attached.
func principalsOf(rows []principalRow) []service.Principal {
	ps := []service.Principal{}
	for _, r := range rows {
		if n := len(ps); n == 0 || ps[n-1].Name != r.Name {
			ps = append(ps, service.Principal{Name: r.Name, CreatedAt: fromMicros(r.CreatedAt),
				CertSubject: r.CertSubject, Policies: []string{}})
		}
		if r.Policy.Valid {
			p := &ps[len(ps)-1]
			p.Policies = append(p.Policies, r.Policy.String)
		}
	}
	return ps
}

// nullText stores "" as NULL.
func nullText(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// InsertPrincipal adds p (its Policies are ignored: see AttachPolicy).
// ErrAlreadyExists if the name is taken, or if p.CertSubject is not empty
// and already mapped to another principal; any number of principals may
// have no subject.
func (q accessRows) InsertPrincipal(ctx context.Context, p *service.Principal) error {
	_, err := q.exec(ctx, sqlInsertPrincipal, p.Name, micros(p.CreatedAt), nullText(p.CertSubject))
	if violationOf(err) == uniqueViolation && !onPrimaryKey(err) {
		return alreadyExists(subjectEntity(p.CertSubject))
	}
	return dbErr(err, "insert", principalEntity(p.Name), "")
}

// GetPrincipal reads one principal with its attached policy names, sorted
// bytewise; ErrNotFound if there is none by that name.
func (q accessRows) GetPrincipal(ctx context.Context, name string) (*service.Principal, error) {
	return q.onePrincipal(ctx, principalEntity(name), sqlGetPrincipal, name)
}

// PrincipalByCertSubject reads the principal mapped to a TLS client
// certificate subject, as GetPrincipal does; ErrNotFound if none is (always
// for the empty subject).
func (q accessRows) PrincipalByCertSubject(ctx context.Context, subject string) (*service.Principal, error) {
	if subject == "" {
		return nil, notFound(subjectEntity(subject))
	}
	return q.onePrincipal(ctx, subjectEntity(subject), sqlPrincipalBySubject, subject)
}

func (q accessRows) onePrincipal(ctx context.Context, entity, query, arg string) (*service.Principal, error) {
	var rows []principalRow
	if err := q.sel(ctx, &rows, query, arg); err != nil {
		return nil, internal("get", entity, err)
	}
	ps := principalsOf(rows)
	if len(ps) == 0 {
		return nil, notFound(entity)
	}
	return &ps[0], nil
}

// ListPrincipals returns up to p.Limit principals (all if p.Limit <= 0)
// ordered by name with name > p.After, each with its policy names as
// GetPrincipal gives them.
func (q accessRows) ListPrincipals(ctx context.Context, p service.Page) ([]service.Principal, error) {
	var rows []principalRow
	if err := q.sel(ctx, &rows, sqlListPrincipals, p.After, limitArg(p.Limit)); err != nil {
		return nil, internal("list", "principals", err)
	}
	return principalsOf(rows), nil
}

// DeletePrincipal removes a principal with its policy attachments and bearer
// tokens in one statement (the policies themselves stay); ErrNotFound if
// there is none by that name.
func (q accessRows) DeletePrincipal(ctx context.Context, name string) error {
	res, err := q.exec(ctx, sqlDeletePrincipal, name)
	return affectedOne(res, err, "delete", principalEntity(name), "")
}

// CountPrincipals is the number of principals (zero: nobody can log in yet).
func (q accessRows) CountPrincipals(ctx context.Context) (int, error) {
	var n int
	if err := q.get(ctx, &n, sqlCountPrincipals); err != nil {
		return 0, internal("count", "principals", err)
	}
	return n, nil
}
