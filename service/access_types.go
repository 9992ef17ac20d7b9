package service

import (
	"context"
	"time"
)

// Principal is a caller of the API: a name, the policies attached to it,
// and bearer tokens (and optionally a TLS client certificate subject).
type Principal struct {
	Name        string    `db:"name"`
	CreatedAt   time.Time `db:"created_at"`
	CertSubject string    `db:"cert_subject"` // "" when none is mapped
	Policies    []string  `db:"-"`            // attached policy names, sorted
}

// PolicyRecord is a stored, named policy document (policy.Document JSON).
type PolicyRecord struct {
	Name      string    `db:"name"`
	Document  string    `db:"document"`
	CreatedAt time.Time `db:"created_at"`
	UpdatedAt time.Time `db:"updated_at"`
}

// BearerToken is one token of a principal. Hash is a MAC made in the token
// ("hmac:" and hex, tokenmac.go), never the secret or a plain hash of it;
// the secret is shown once, at creation.
type BearerToken struct {
	ID          string     `db:"id"`
	Principal   string     `db:"principal"`
	Hash        string     `db:"hash"`
	Description string     `db:"description"`
	CreatedAt   time.Time  `db:"created_at"`
	RevokedAt   *time.Time `db:"revoked_at"`
	ExpiresAt   *time.Time `db:"expires_at"`   // nil: never
	LastUsedAt  *time.Time `db:"last_used_at"` // to about a minute
}

// AuditEvent is one record of the hash-chained audit log. Credential is
// Caller.Credential (the bearer token's or access key's id, or the
// certificate subject; never a secret); empty for the system,
// unauthenticated requests and records written before it was kept (hash
// v1, HashAuditEvent).
type AuditEvent struct {
	Seq        int64     `db:"seq"`
	At         time.Time `db:"at"`
	RequestID  string    `db:"request_id"`
	Principal  string    `db:"principal"`
	Credential string    `db:"credential"`
	Action     string    `db:"action"`
	KeyID      string    `db:"key_id"`
	KeyVersion int       `db:"key_version"`
	Outcome    string    `db:"outcome"` // "allowed", "denied", "failed"
	ErrorCode  string    `db:"error_code"`
	Source     string    `db:"source"`
	Detail     string    `db:"detail"` // JSON object; never plaintext, keys, PINs or tokens
	PrevHash   string    `db:"prev_hash"`
	Hash       string    `db:"hash"`
}

// AuditFilter selects audit records; zero fields do not filter.
type AuditFilter struct {
	From, To  time.Time // at >= From, at < To
	KeyID     string
	Principal string
	// Actions, when not empty, keeps records of these actions only (the
	// worker's search for the evidence of a scheduled destruction).
	Actions  []string
	AfterSeq int64
	Limit    int
}

// AuditHash computes an event's hash from the previous hash and the event's
// fields (Seq, PrevHash and the rest; not Hash itself).
type AuditHash func(e *AuditEvent) string

// AuditGenesisHash is the prev_hash of the first audit record.
const AuditGenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// AccessQueries are the reads and writes of access control.
type AccessQueries interface {
	InsertPrincipal(ctx context.Context, p *Principal) error
	// GetPrincipal returns a principal with its attached policy names.
	GetPrincipal(ctx context.Context, name string) (*Principal, error)
	PrincipalByCertSubject(ctx context.Context, subject string) (*Principal, error)
	// ListPrincipals returns principals ordered by name with name > p.After.
	ListPrincipals(ctx context.Context, p Page) ([]Principal, error)
	DeletePrincipal(ctx context.Context, name string) error
	CountPrincipals(ctx context.Context) (int, error)

	// PutPolicy inserts or replaces a policy document by name.
	PutPolicy(ctx context.Context, p *PolicyRecord) error
	GetPolicy(ctx context.Context, name string) (*PolicyRecord, error)
	ListPolicies(ctx context.Context, p Page) ([]PolicyRecord, error)
	// DeletePolicy removes a policy; ErrInvalidState while it is attached.
	DeletePolicy(ctx context.Context, name string) error
	// AttachPolicy: ErrNotFound if either is missing; attaching twice is a no-op.
	AttachPolicy(ctx context.Context, principal, policy string) error
	DetachPolicy(ctx context.Context, principal, policy string) error
	// PoliciesOf returns the documents attached to a principal.
	PoliciesOf(ctx context.Context, principal string) ([]PolicyRecord, error)

	InsertToken(ctx context.Context, t *BearerToken) error
	GetToken(ctx context.Context, id string) (*BearerToken, error)
	// ListTokens lists a principal's tokens (revoked ones too), by creation.
	ListTokens(ctx context.Context, principal string) ([]BearerToken, error)
	RevokeToken(ctx context.Context, id string, at time.Time) error
	// TouchToken sets a token's last_used_at to at unless it is already
	// after notAfter (another request or replica touched it recently). A
	// missing token is not an error.
	TouchToken(ctx context.Context, id string, at, notAfter time.Time) error
	// RekeyToken replaces a token's hash, only if it is still oldHash
	// (ErrNotFound otherwise).
	RekeyToken(ctx context.Context, id, oldHash, newHash string) error

	// LockAccessChanges serialises, until the transaction ends, the access
	// changes that could remove the last administrator.
	LockAccessChanges(ctx context.Context) error
}

// AuditAppender appends to the audit chain: the one write every part's
// transactions need (a management change commits with its record).
type AuditAppender interface {
	// AppendAudit appends events to the chain atomically: it locks the
	// chain head, gives each event the next seq and the previous hash,
	// computes its hash with h, inserts it and moves the head. Inside a
	// transaction the events commit or roll back with it.
	AppendAudit(ctx context.Context, events []*AuditEvent, h AuditHash) error
}

// AuditQueries are the reads and writes of the audit chain.
type AuditQueries interface {
	AuditAppender
	// ListAudit returns events matching f, ordered by seq.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
	// LastAudit returns the newest record with the given action
	// (ErrNotFound when there is none).
	LastAudit(ctx context.Context, action string) (*AuditEvent, error)
	// LockAuditHead locks the chain head until the transaction ends: no
	// record is appended by anyone else meanwhile.
	LockAuditHead(ctx context.Context) error
	// AuditHead returns the chain head: the last seq and its hash (0 and
	// the genesis hash when empty).
	AuditHead(ctx context.Context) (seq int64, hash string, err error)
}
