package store

import (
	"context"
	"fmt"

	"github.com/hsmkms/hsmkms/service"
)

// Policies, and their attachment to principals.

const (
	policyColumns = `name, document, created_at, updated_at`
	// An upsert: a replaced policy keeps its created_at.
	sqlPutPolicy = `INSERT INTO policies (` + policyColumns + `) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at`
	sqlGetPolicy    = `SELECT ` + policyColumns + ` FROM policies WHERE name = ?`
	sqlListPolicies = `SELECT ` + policyColumns + ` FROM policies
		WHERE name > ? ORDER BY name LIMIT ?`
	sqlCountAttachments = `SELECT COUNT(*) FROM principal_policies WHERE policy = ?`
	sqlDeletePolicy     = `DELETE FROM policies WHERE name = ?`

	// Inserts nothing when either side is missing or the pair exists, so
	// that the common cases raise no error (an error aborts a PostgreSQL
	// transaction). The WHERE clause also keeps SQLite from reading ON
	// CONFLICT as a join constraint.
	sqlAttachPolicy = `INSERT INTO principal_policies (principal, policy)
		SELECT p.name, y.name FROM principals p, policies y
		WHERE p.name = ? AND y.name = ?
		ON CONFLICT (principal, policy) DO NOTHING`
	sqlAttachable = `SELECT
		(SELECT COUNT(*) FROM principals WHERE name = ?) AS principals,
		(SELECT COUNT(*) FROM policies WHERE name = ?) AS policies`
	sqlDetachPolicy = `DELETE FROM principal_policies WHERE principal = ? AND policy = ?`
	sqlPoliciesOf   = `SELECT y.name, y.document, y.created_at, y.updated_at
		FROM principal_policies pp JOIN policies y ON y.name = pp.policy
		WHERE pp.principal = ? ORDER BY y.name`
)

// policyRow is a policies row as stored.
type policyRow struct {
	Name      string `db:"name"`
	Document  string `db:"document"`
	CreatedAt int64  `db:"created_at"`
	UpdatedAt int64  `db:"updated_at"`
}

func policiesOf(rows []policyRow) []service.PolicyRecord {
	ps := make([]service.PolicyRecord, len(rows))
	for i, r := range rows {
		ps[i] = service.PolicyRecord{Name: r.Name, Document: r.Document,
			CreatedAt: fromMicros(r.CreatedAt), UpdatedAt: fromMicros(r.UpdatedAt)}
	}
	return ps
}

// PutPolicy inserts p, or replaces the document and updated_at of the policy
// of that name; a replaced policy keeps its created_at (p.CreatedAt is then
// ignored). Principals it is attached to see the new document at once.
func (q accessRows) PutPolicy(ctx context.Context, p *service.PolicyRecord) error {
	_, err := q.exec(ctx, sqlPutPolicy, p.Name, p.Document, micros(p.CreatedAt), micros(p.UpdatedAt))
	return dbErr(err, "put", policyEntity(p.Name), "")
}

// GetPolicy reads one policy; ErrNotFound if there is none by that name.
func (q accessRows) GetPolicy(ctx context.Context, name string) (*service.PolicyRecord, error) {
	var row policyRow
	if err := q.get(ctx, &row, sqlGetPolicy, name); err != nil {
		return nil, dbErr(err, "get", policyEntity(name), "")
	}
	return &policiesOf([]policyRow{row})[0], nil
}

// ListPolicies returns up to p.Limit policies (all if p.Limit <= 0) ordered
// by name with name > p.After.
func (q accessRows) ListPolicies(ctx context.Context, p service.Page) ([]service.PolicyRecord, error) {
	var rows []policyRow
	if err := q.sel(ctx, &rows, sqlListPolicies, p.After, limitArg(p.Limit)); err != nil {
		return nil, internal("list", "policies", err)
	}
	return policiesOf(rows), nil
}

// DeletePolicy removes a policy. ErrInvalidState while it is attached to a
// principal (detach it first), ErrNotFound if there is none by that name.
func (q accessRows) DeletePolicy(ctx context.Context, name string) error {
	var n int
	if err := q.get(ctx, &n, sqlCountAttachments, name); err != nil {
		return internal("delete", policyEntity(name), err)
	}
	if n > 0 {
		return attachedErr(name, n)
	}
	res, err := q.exec(ctx, sqlDeletePolicy, name)
	if violationOf(err) == foreignKeyViolation {
		// Attached between the count and the delete.
		return attachedErr(name, 1)
	}
	return affectedOne(res, err, "delete", policyEntity(name), "")
}

// attachedErr says why a policy attached to n principals cannot go.
func attachedErr(name string, n int) error {
	whom := fmt.Sprintf("%d principals", n)
	if n == 1 {
		whom = "1 principal"
	}
	return invalidState("%s is attached to %s; detach it first", policyEntity(name), whom)
}

// AttachPolicy attaches a policy to a principal; attaching it again is a
// no-op. ErrNotFound naming the principal or the policy if either is missing.
func (q accessRows) AttachPolicy(ctx context.Context, principal, policy string) error {
	entity := attachmentEntity(principal, policy)
	res, err := q.exec(ctx, sqlAttachPolicy, principal, policy)
	if err != nil {
		// A foreign-key violation: one side was deleted during the insert.
		return refErr(err, "attach", entity, principalEntity(principal)+" or "+policyEntity(policy))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return internal("attach", entity, err)
	}
	if n == 1 {
		return nil
	}
	// Nothing inserted: attached already, or a side is missing.
	var have struct {
		Principals int `db:"principals"`
		Policies   int `db:"policies"`
	}
	if err := q.get(ctx, &have, sqlAttachable, principal, policy); err != nil {
		return internal("attach", entity, err)
	}
	switch {
	case have.Principals == 0:
		return notFound(principalEntity(principal))
	case have.Policies == 0:
		return notFound(policyEntity(policy))
	}
	return nil
}

// DetachPolicy detaches a policy from a principal; ErrNotFound if it is not
// attached to it (or either does not exist).
func (q accessRows) DetachPolicy(ctx context.Context, principal, policy string) error {
	res, err := q.exec(ctx, sqlDetachPolicy, principal, policy)
	return affectedOne(res, err, "detach", attachmentEntity(principal, policy), "")
}

// PoliciesOf returns the policies attached to a principal, ordered by name;
// none for an unknown principal (GetPrincipal tells whether it exists).
func (q accessRows) PoliciesOf(ctx context.Context, principal string) ([]service.PolicyRecord, error) {
	var rows []policyRow
	if err := q.sel(ctx, &rows, sqlPoliciesOf, principal); err != nil {
		return nil, internal("list policies of", principalEntity(principal), err)
	}
	return policiesOf(rows), nil
}
