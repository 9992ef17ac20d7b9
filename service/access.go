package service

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/policy"
	"golang.org/x/sync/singleflight"
)

// Bearer tokens. A token made by the service is "kms_<id>_<secret>": the id
// (16 hex digits) finds the stored record without searching, and the secret
// is 32 random bytes (base64url). Only a MAC made in the token is stored
// (tokenmac.go), and it is compared in constant time. The bootstrap token
// (KMS_BOOTSTRAP_TOKEN) is chosen by the operator and has no id inside: it
// is stored under the id "bootstrap".
const (
	tokenPrefix      = "kms_"
	bootstrapTokenID = "bootstrap"
	// AdminPrincipal and AdminPolicy are made by Bootstrap and InitAdmin.
	AdminPrincipal = "admin"
	AdminPolicy    = "admin"
	// MinBootstrapTokenLength keeps an operator-chosen token guessable by no one.
	MinBootstrapTokenLength = 16
)

var adminDocument = policy.Document{Statements: []policy.Statement{
	{Effect: policy.EffectAllow, Actions: []string{"kms:*"}, Resources: []string{"*"}},
}}

var noResource = policy.Resource{}

// tokenID returns the id a bearer token names.
func tokenID(bearer string) string {
	rest, ok := strings.CutPrefix(bearer, tokenPrefix)
	if !ok {
		return bootstrapTokenID
	}
	id, _, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 16 {
		return bootstrapTokenID
	}
	return id
}

// validTokenID says whether id has the form of a token id.
func validTokenID(id string) bool {
	if id == bootstrapTokenID {
		return true
	}
	if len(id) != 16 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// hashToken is the SHA-256 (hex) that names an import token's parameters.
func hashToken(bearer string) string {
	h := sha256.Sum256([]byte(bearer))
	return hex.EncodeToString(h[:])
}

// newToken makes a token: a fresh id and 32 random bytes of secret.
func newToken() (id, bearer string, err error) {
	var idb [8]byte
	var secret [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", err
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", "", err
	}
	id = hex.EncodeToString(idb[:])
	return id, tokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret[:]), nil
}

// Access is the access part: authentication and its cache, principals,
// policies, bearer tokens and the administrator rule. It records its
// changes through the audit part it is given.
type Access struct {
	base
	store AccessStore
	tx    Tx[AccessTx]
	audit *Audit
	auth  *authCache
	// token keys bearer tokens' MACs and derives access keys' secrets
	// (its MAC capability).
	token hsm.Token
	// accessKeys is the state of AWS access keys (accesskeys.go).
	accessKeys accessKeyState
	// tokenMACs is the state of the bearer-token MAC key (tokenmac.go).
	tokenMACs tokenMACState
}

// AccessStore is what the access part reads outside transactions: its
// queries, access keys', and the lock every replica respects while the
// MAC key is made.
type AccessStore interface {
	AccessQueries
	AccessKeyQueries
	WithLock(ctx context.Context, name string, fn func() error) error
}

// AccessTx is what the access part's transactions read and write: its
// queries and the audit record that commits with each change.
type AccessTx interface {
	AccessQueries
	AccessKeyQueries
	AuditAppender
}

func newAccess(b base, store Store, token hsm.Token, audit *Audit, ttl time.Duration) *Access {
	return &Access{base: b, store: store, token: token, audit: audit, auth: newAuthCache(ttl),
		tx: narrow(store, func(q Queries) AccessTx { return q })}
}

// authCache keeps what authentication read from the store for a short
// time, so that a warm request makes no database round trip. Changes made
// by this process clear it at once; another replica's within ttl.
type authCache struct {
	ttl   time.Duration
	mu    sync.RWMutex // read on every request, written on a miss or a change
	gen   uint64
	toks  map[string]authEntry // by token id
	loads singleflight.Group
}

type authEntry struct {
	tok      BearerToken
	mac      []byte // the stored MAC; nil when the row holds none
	caller   *Caller
	loadedAt time.Time
	// verified is set once a bearer string matched mac: later requests
	// with it compare its SHA-256 with digest and call no token.
	verified bool
	digest   [sha256.Size]byte
}

func newAuthCache(ttl time.Duration) *authCache {
	return &authCache{ttl: ttl, toks: map[string]authEntry{}}
}

func (c *authCache) clear() {
	c.mu.Lock()
	c.gen++
	c.toks = map[string]authEntry{}
	c.mu.Unlock()
}

var (
	errUnknownToken = errorf(ErrUnauthenticated, "missing, unknown or revoked bearer token")
	errExpiredToken = errorf(ErrUnauthenticated, "the bearer token has expired")
)

// Authenticate turns a bearer token into its caller: the principal and its
// policy documents. Unknown and revoked tokens are ErrUnauthenticated, with
// one message for both; an expired one says so (only to its holder: the
// MAC is checked first). A token is checked in the token once per cache
// load (AuthCacheTTL); in between, the SHA-256 of the verified bearer
// string is compared in memory.
func (s *Access) Authenticate(ctx context.Context, bearer string) (*Caller, error) {
	if bearer == "" {
		return nil, errUnknownToken
	}
	// Before any row is read: the first call converts an older release's rows.
	if _, err := s.ensureTokenMAC(ctx); err != nil {
		return nil, err
	}
	id := tokenID(bearer)
	e, err := s.authEntry(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, errUnknownToken
	}
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256([]byte(bearer))
	if e.verified {
		if subtle.ConstantTimeCompare(digest[:], e.digest[:]) != 1 {
			return nil, errUnknownToken // a row matches one secret only
		}
	} else {
		ok, err := s.verifyToken(ctx, &e, digest)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errUnknownToken
		}
		s.auth.verified(id, e.loadedAt, digest)
	}
	now := s.clock.Now()
	switch {
	case e.tok.RevokedAt != nil:
		return nil, errUnknownToken
	case e.tok.ExpiresAt != nil && !now.Before(*e.tok.ExpiresAt):
		return nil, errExpiredToken
	}
	s.touchToken(ctx, &e, now)
	return e.caller, nil
}

// touchToken records a token's use at most once per tokenTouchEvery (the
// write is conditional, so replicas do not repeat it either).
func (s *Access) touchToken(ctx context.Context, e *authEntry, now time.Time) {
	if e.tok.LastUsedAt != nil && now.Sub(*e.tok.LastUsedAt) < tokenTouchEvery {
		return
	}
	if err := s.store.TouchToken(ctx, e.tok.ID, now, now.Add(-tokenTouchEvery)); err != nil {
		s.log.Warn("last use of a bearer token not recorded", "token_id", e.tok.ID, "err", err)
	}
	c := s.auth
	c.mu.Lock()
	if ce, ok := c.toks[e.tok.ID]; ok && ce.loadedAt.Equal(e.loadedAt) {
		ce.tok.LastUsedAt = &now
		c.toks[e.tok.ID] = ce
	}
	c.mu.Unlock()
}

// verified marks the cached entry of id, if it is still the one loaded at
// loadedAt, as matching the bearer string of digest.
func (c *authCache) verified(id string, loadedAt time.Time, digest [sha256.Size]byte) {
	c.mu.Lock()
	if e, ok := c.toks[id]; ok && e.loadedAt.Equal(loadedAt) {
		e.verified, e.digest = true, digest
		c.toks[id] = e
	}
	c.mu.Unlock()
}

func (s *Access) authEntry(ctx context.Context, id string) (authEntry, error) {
	now := s.clock.Now()
	c := s.auth
	c.mu.RLock()
	e, ok := c.toks[id]
	gen := c.gen
	c.mu.RUnlock()
	if ok && now.Sub(e.loadedAt) < c.ttl {
		return e, nil
	}
	// The generation is part of the key: a request that starts after a
	// revocation (which clears the cache) must not join a load that began
	// before it and return the token as it was.
	r, err := sharedLoad(ctx, &c.loads, strconv.FormatUint(gen, 10)+"/"+id, s.dbTimeout, func(ctx context.Context) (any, error) {
		t, err := s.store.GetToken(ctx, id)
		if err != nil {
			return nil, err
		}
		caller, err := s.loadCaller(ctx, t.Principal)
		if err != nil {
			return nil, err
		}
		caller.Credential = "token:" + t.ID
		e := authEntry{tok: *t, caller: caller, loadedAt: now}
		e.mac, _ = storedMAC(t.Hash)
		c.mu.Lock()
		if c.gen == gen {
			c.toks[id] = e
		}
		c.mu.Unlock()
		return e, nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return authEntry{}, err
		}
		return authEntry{}, s.storeErr(err)
	}
	return r.(authEntry), nil
}

// loadCaller reads a principal's policy documents.
func (s *Access) loadCaller(ctx context.Context, principal string) (*Caller, error) {
	recs, err := s.store.PoliciesOf(ctx, principal)
	if err != nil {
		return nil, err
	}
	docs := parseDocs(recs, func(name string, err error) {
		s.log.Error("stored policy document does not parse; it grants nothing", "policy", name, "err", err)
	})
	return &Caller{Principal: principal, Docs: docs}, nil
}

// parseDocs parses stored policy documents. They were validated when
// written; one that no longer parses grants nothing rather than failing
// everything, and is reported to bad (when not nil).
func parseDocs(recs []PolicyRecord, bad func(name string, err error)) []policy.Document {
	var docs []policy.Document
	for _, r := range recs {
		d, err := policy.Parse([]byte(r.Document))
		if err != nil {
			if bad != nil {
				bad(r.Name, err)
			}
			continue
		}
		docs = append(docs, d)
	}
	return docs
}

// AuthenticateCertificate maps a verified TLS client certificate's subject
// to its principal.
func (s *Access) AuthenticateCertificate(ctx context.Context, subject string) (*Caller, error) {
	ctx, cancel := s.dbCtx(ctx)
	defer cancel()
	p, err := s.store.PrincipalByCertSubject(ctx, subject)
	if errors.Is(err, ErrNotFound) {
		return nil, errorf(ErrUnauthenticated, "the client certificate is not mapped to a principal")
	}
	if err != nil {
		return nil, s.storeErr(err)
	}
	c, err := s.loadCaller(ctx, p.Name)
	if err != nil {
		return nil, s.storeErr(err)
	}
	c.Credential = "certificate:" + subject
	return c, nil
}

// Bootstrap creates the administrator (principal "admin", policy "admin"
// allowing everything) with bearer as its token, when no principal exists
// yet. It reports whether it did; with principals present it does nothing,
// so the bootstrap token of a later start never re-creates anything.
func (s *Access) Bootstrap(ctx context.Context, bearer string) (bool, error) {
	if len(bearer) < MinBootstrapTokenLength {
		return false, Validationf("the bootstrap token must be at least %d characters", MinBootstrapTokenLength)
	}
	if tokenID(bearer) != bootstrapTokenID {
		// It would be looked up as an issued token's id, never as the
		// bootstrap token: the administrator could not log in with it.
		return false, Validationf("the bootstrap token must not have the form of an issued token (%s<16 hex>_...)", tokenPrefix)
	}
	return s.createAdmin(ctx, bootstrapTokenID, bearer)
}

// InitAdmin creates the administrator with a new random token, which it
// returns (it is shown once, and stored only as a hash). It refuses when a
// principal exists already.
func (s *Access) InitAdmin(ctx context.Context) (string, error) {
	id, bearer, err := newToken()
	if err != nil {
		return "", err
	}
	made, err := s.createAdmin(ctx, id, bearer)
	if err != nil {
		return "", err
	}
	if !made {
		return "", errorf(ErrInvalidState, "principals exist already; kmsd init only sets up an empty database")
	}
	return bearer, nil
}

func (s *Access) createAdmin(ctx context.Context, tokenID, bearer string) (bool, error) {
	made := false
	doc, _ := json.Marshal(adminDocument)
	now := s.now()
	tok := &BearerToken{ID: tokenID, Principal: AdminPrincipal, Description: "administrator (bootstrap)", CreatedAt: now}
	if err := s.sealToken(ctx, tok, bearer); err != nil {
		return false, err
	}
	err := s.tx(ctx, func(q AccessTx) error {
		n, err := q.CountPrincipals(ctx)
		if err != nil || n > 0 {
			return err
		}
		if err := q.PutPolicy(ctx, &PolicyRecord{Name: AdminPolicy, Document: string(doc), CreatedAt: now, UpdatedAt: now}); err != nil {
			return err
		}
		if err := q.InsertPrincipal(ctx, &Principal{Name: AdminPrincipal, CreatedAt: now}); err != nil {
			return err
		}
		if err := q.AttachPolicy(ctx, AdminPrincipal, AdminPolicy); err != nil {
			return err
		}
		if err := q.InsertToken(ctx, tok); err != nil {
			return err
		}
		a := &Activity{principal: "system", action: "kms:Bootstrap", detail: map[string]string{"principal": AdminPrincipal}}
		if err := s.audit.appendIn(ctx, q, a, now); err != nil {
			return err
		}
		made = true
		return nil
	})
	if errors.Is(err, ErrAlreadyExists) {
		return false, nil // another replica bootstrapped at the same moment
	}
	return made, s.storeErr(err)
}

// PrincipalView is a principal with its tokens (never their secrets).
type PrincipalView struct {
	Principal
	Tokens []BearerToken
}

// NewToken is a token just made: the only time its secret is shown.
type NewToken struct {
	ID          string
	Token       string
	Principal   string
	Description string
	CreatedAt   time.Time
	ExpiresAt   *time.Time // nil: never
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@+=,-]{0,127}$`)

func validateName(kind, name string) error {
	if !namePattern.MatchString(name) {
		return Validationf("%s name %q must be 1-128 characters of A-Z a-z 0-9 _ . @ + = , - (not starting with a symbol)", kind, truncate(name, 140))
	}
	return nil
}

// CreatePrincipalInput is a new principal.
type CreatePrincipalInput struct {
	Name        string
	Policies    []string
	CertSubject string
}

// CreatePrincipal makes a principal with the given policies attached.
func (s *Access) CreatePrincipal(ctx context.Context, in CreatePrincipalInput) (*PrincipalView, error) {
	if err := s.manage(ctx, "principal", in.Name); err != nil {
		return nil, err
	}
	if err := validateName("principal", in.Name); err != nil {
		return nil, err
	}
	for _, p := range in.Policies {
		if err := validateName("policy", p); err != nil {
			return nil, err
		}
	}
	if len(in.CertSubject) > 1024 {
		return nil, Validationf("cert_subject must be at most 1024 characters")
	}
	err := commit(ctx, s.audit, s.tx, func(q AccessTx) error {
		if err := q.InsertPrincipal(ctx, &Principal{Name: in.Name, CreatedAt: s.now(), CertSubject: in.CertSubject}); err != nil {
			if errors.Is(err, ErrAlreadyExists) {
				return errorf(ErrAlreadyExists, "principal %q (or a principal with that certificate subject) already exists", in.Name)
			}
			return err
		}
		for _, p := range in.Policies {
			if err := q.AttachPolicy(ctx, in.Name, p); err != nil {
				if errors.Is(err, ErrNotFound) {
					return errorf(ErrNotFound, "policy %q not found", p)
				}
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.storeErr(err)
	}
	return s.principalView(ctx, in.Name)
}

// manage authorises an access-management action and names its subject in
// the audit record.
func (s *Access) manage(ctx context.Context, kind, name string) error {
	if name != "" {
		noteDetail(ctx, kind, truncate(name, 140))
	}
	return allow(ctx, ActManageAccess, noResource)
}

// GetPrincipal returns a principal with its policies and tokens.
func (s *Access) GetPrincipal(ctx context.Context, name string) (*PrincipalView, error) {
	if err := s.manage(ctx, "principal", name); err != nil {
		return nil, err
	}
	return s.principalView(ctx, name)
}

func (s *Access) principalView(ctx context.Context, name string) (*PrincipalView, error) {
	p, err := s.store.GetPrincipal(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil, errorf(ErrNotFound, "principal %q not found", truncate(name, 140))
	}
	if err != nil {
		return nil, s.storeErr(err)
	}
	toks, err := s.store.ListTokens(ctx, name)
	if err != nil {
		return nil, s.storeErr(err)
	}
	return &PrincipalView{Principal: *p, Tokens: toks}, nil
}

// ListPrincipals returns one page of principals with their tokens.
func (s *Access) ListPrincipals(ctx context.Context, limit int, nextToken string) ([]*PrincipalView, string, error) {
	if err := s.manage(ctx, "", ""); err != nil {
		return nil, "", err
	}
	rows, next, err := paged(limit, nextToken, func(p Page) ([]Principal, error) {
		return s.store.ListPrincipals(ctx, p)
	}, func(p *Principal) string { return p.Name })
	if err != nil {
		return nil, "", s.storeErr(err)
	}
	out := make([]*PrincipalView, len(rows))
	for i := range rows {
		toks, err := s.store.ListTokens(ctx, rows[i].Name)
		if err != nil {
			return nil, "", s.storeErr(err)
		}
		out[i] = &PrincipalView{Principal: rows[i], Tokens: toks}
	}
	return out, next, nil
}

// DeletePrincipal removes a principal, its tokens and attachments. A
// caller cannot delete itself (an administrator locking everyone out).
func (s *Access) DeletePrincipal(ctx context.Context, name string) error {
	if err := s.manage(ctx, "principal", name); err != nil {
		return err
	}
	if c := CallerFrom(ctx); c != nil && c.Principal == name {
		return errorf(ErrInvalidState, "a principal cannot delete itself")
	}
	err := commit(ctx, s.audit, s.tx, func(q AccessTx) error {
		return keepingAdministrator(ctx, q, func() error {
			err := q.DeletePrincipal(ctx, name)
			if errors.Is(err, ErrNotFound) {
				return errorf(ErrNotFound, "principal %q not found", truncate(name, 140))
			}
			return err
		})
	})
	if err != nil {
		return s.storeErr(err)
	}
	s.auth.clear()
	return nil
}

// AttachPolicy attaches a policy to a principal (attaching twice is a no-op).
func (s *Access) AttachPolicy(ctx context.Context, principal, policyName string) (*PrincipalView, error) {
	return s.attachment(ctx, principal, policyName, true)
}

// DetachPolicy detaches a policy from a principal.
func (s *Access) DetachPolicy(ctx context.Context, principal, policyName string) (*PrincipalView, error) {
	return s.attachment(ctx, principal, policyName, false)
}

func (s *Access) attachment(ctx context.Context, principal, policyName string, attach bool) (*PrincipalView, error) {
	if err := s.manage(ctx, "principal", principal); err != nil {
		return nil, err
	}
	noteDetail(ctx, "policy", truncate(policyName, 140))
	if err := validateName("policy", policyName); err != nil {
		return nil, err
	}
	err := commit(ctx, s.audit, s.tx, func(q AccessTx) error {
		if _, err := q.GetPrincipal(ctx, principal); errors.Is(err, ErrNotFound) {
			return errorf(ErrNotFound, "principal %q not found", truncate(principal, 140))
		} else if err != nil {
			return err
		}
		if _, err := q.GetPolicy(ctx, policyName); errors.Is(err, ErrNotFound) {
			return errorf(ErrNotFound, "policy %q not found", policyName)
		} else if err != nil {
			return err
		}
		return keepingAdministrator(ctx, q, func() error {
			if attach {
				// An attached deny takes rights away too.
				return q.AttachPolicy(ctx, principal, policyName)
			}
			err := q.DetachPolicy(ctx, principal, policyName)
			if errors.Is(err, ErrNotFound) {
				return errorf(ErrNotFound, "policy %q is not attached to principal %q", policyName, principal)
			}
			return err
		})
	})
	if err != nil {
		return nil, s.storeErr(err)
	}
	s.auth.clear()
	return s.principalView(ctx, principal)
}

// Bounds of a token's lifetime (CreateToken's expiresIn; 0 is none).
const (
	MinTokenLifetime = time.Minute
	MaxTokenLifetime = 10 * 365 * 24 * time.Hour
)

// CreateToken makes a new bearer token for a principal, which expires
// after expiresIn (0: never). The returned secret is shown once; only its
// MAC is kept.
func (s *Access) CreateToken(ctx context.Context, principal, description string, expiresIn time.Duration) (*NewToken, error) {
	if err := s.manage(ctx, "principal", principal); err != nil {
		return nil, err
	}
	if err := validateDescription(description); err != nil {
		return nil, err
	}
	if expiresIn != 0 && (expiresIn < MinTokenLifetime || expiresIn > MaxTokenLifetime) {
		return nil, Validationf("expires_in must be between %s and %s (or absent: never)",
			FormatDuration(MinTokenLifetime), FormatDuration(MaxTokenLifetime))
	}
	t, out, err := s.newBearerToken(ctx, principal, description, expiresIn)
	if err != nil {
		return nil, err
	}
	err = commit(ctx, s.audit, s.tx, func(q AccessTx) error { return s.insertToken(ctx, q, t) })
	if err != nil {
		return nil, s.storeErr(err)
	}
	return out, nil
}

// newBearerToken makes a token and its MAC (in the token: before any
// transaction) for insertToken.
func (s *Access) newBearerToken(ctx context.Context, principal, description string, expiresIn time.Duration) (*BearerToken, *NewToken, error) {
	id, bearer, err := newToken()
	if err != nil {
		return nil, nil, err
	}
	now := s.now()
	t := &BearerToken{ID: id, Principal: principal, Description: description, CreatedAt: now}
	if expiresIn > 0 {
		exp := now.Add(expiresIn)
		t.ExpiresAt = &exp
	}
	if err := s.sealToken(ctx, t, bearer); err != nil {
		return nil, nil, err
	}
	return t, &NewToken{ID: id, Token: bearer, Principal: principal, Description: description,
		CreatedAt: now, ExpiresAt: t.ExpiresAt}, nil
}

func (s *Access) insertToken(ctx context.Context, q AccessQueries, t *BearerToken) error {
	err := q.InsertToken(ctx, t)
	if errors.Is(err, ErrNotFound) {
		return errorf(ErrNotFound, "principal %q not found", truncate(t.Principal, 140))
	}
	if err != nil {
		return err
	}
	noteDetail(ctx, "token_id", t.ID)
	return nil
}

// RevokeToken revokes one of a principal's tokens at once (in this process;
// other replicas within AuthCacheTTL).
func (s *Access) RevokeToken(ctx context.Context, principal, id string) error {
	_, err := s.replaceToken(ctx, principal, id, false)
	return err
}

// RotateToken makes a new token for the principal and revokes the old one,
// in one transaction.
func (s *Access) RotateToken(ctx context.Context, principal, id string) (*NewToken, error) {
	return s.replaceToken(ctx, principal, id, true)
}

func (s *Access) replaceToken(ctx context.Context, principal, id string, issue bool) (*NewToken, error) {
	if err := s.manage(ctx, "principal", principal); err != nil {
		return nil, err
	}
	if !validTokenID(id) {
		// Never echo it: it may be a whole token pasted by mistake.
		return nil, Validationf("token_id must be a token id (16 hex digits, or bootstrap), not a bearer token")
	}
	noteDetail(ctx, "revoked_token_id", id)
	check := func(t *BearerToken, err error) error {
		if errors.Is(err, ErrNotFound) || (err == nil && t.Principal != principal) {
			return errorf(ErrNotFound, "principal %q has no token %q", truncate(principal, 140), id)
		}
		if err != nil {
			return err
		}
		if t.RevokedAt != nil {
			return errorf(ErrInvalidState, "token %q is already revoked", id)
		}
		return nil
	}
	var fresh *BearerToken
	var out *NewToken
	if issue {
		// The new token is made (its MAC in the token) before the
		// transaction: with the old one's description and lifetime.
		old, err := s.store.GetToken(ctx, id)
		if err := check(old, err); err != nil {
			return nil, s.storeErr(err)
		}
		var life time.Duration
		if old.ExpiresAt != nil {
			life = max(old.ExpiresAt.Sub(old.CreatedAt), MinTokenLifetime)
		}
		if fresh, out, err = s.newBearerToken(ctx, principal, old.Description, life); err != nil {
			return nil, err
		}
	}
	err := commit(ctx, s.audit, s.tx, func(q AccessTx) error {
		if err := check(q.GetToken(ctx, id)); err != nil {
			return err
		}
		return keepingAdministrator(ctx, q, func() error {
			if err := q.RevokeToken(ctx, id, s.now()); err != nil {
				return err
			}
			if fresh != nil {
				return s.insertToken(ctx, q, fresh)
			}
			return nil
		})
	})
	if err != nil {
		return nil, s.storeErr(err)
	}
	s.auth.clear()
	return out, nil
}

// PolicyView is a stored policy with its parsed document.
type PolicyView struct {
	PolicyRecord
	Doc policy.Document
}

func policyView(r *PolicyRecord) *PolicyView {
	d, _ := policy.Parse([]byte(r.Document))
	return &PolicyView{PolicyRecord: *r, Doc: d}
}

// PutPolicy creates or replaces a policy document. It applies at once in
// this process and within AuthCacheTTL on other replicas.
func (s *Access) PutPolicy(ctx context.Context, name string, doc policy.Document) (*PolicyView, error) {
	if err := s.manage(ctx, "policy", name); err != nil {
		return nil, err
	}
	if err := validateName("policy", name); err != nil {
		return nil, err
	}
	if err := doc.Validate(); err != nil {
		return nil, Validationf("document: %v", err)
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var out *PolicyRecord
	err = commit(ctx, s.audit, s.tx, func(q AccessTx) error {
		now := s.now()
		created := now
		if old, err := q.GetPolicy(ctx, name); err == nil {
			created = old.CreatedAt
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		out = &PolicyRecord{Name: name, Document: string(raw), CreatedAt: created, UpdatedAt: now}
		return keepingAdministrator(ctx, q, func() error { return q.PutPolicy(ctx, out) })
	})
	if err != nil {
		return nil, s.storeErr(err)
	}
	s.auth.clear()
	return policyView(out), nil
}

// GetPolicy returns one policy.
func (s *Access) GetPolicy(ctx context.Context, name string) (*PolicyView, error) {
	if err := s.manage(ctx, "policy", name); err != nil {
		return nil, err
	}
	r, err := s.store.GetPolicy(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil, errorf(ErrNotFound, "policy %q not found", truncate(name, 140))
	}
	if err != nil {
		return nil, s.storeErr(err)
	}
	return policyView(r), nil
}

// ListPolicies returns one page of policies.
func (s *Access) ListPolicies(ctx context.Context, limit int, nextToken string) ([]*PolicyView, string, error) {
	if err := s.manage(ctx, "", ""); err != nil {
		return nil, "", err
	}
	rows, next, err := paged(limit, nextToken, func(p Page) ([]PolicyRecord, error) {
		return s.store.ListPolicies(ctx, p)
	}, func(p *PolicyRecord) string { return p.Name })
	if err != nil {
		return nil, "", s.storeErr(err)
	}
	out := make([]*PolicyView, len(rows))
	for i := range rows {
		out[i] = policyView(&rows[i])
	}
	return out, next, nil
}

// DeletePolicy removes a policy that no principal has attached.
func (s *Access) DeletePolicy(ctx context.Context, name string) error {
	if err := s.manage(ctx, "policy", name); err != nil {
		return err
	}
	err := commit(ctx, s.audit, s.tx, func(q AccessTx) error {
		err := q.DeletePolicy(ctx, name)
		if errors.Is(err, ErrNotFound) {
			return errorf(ErrNotFound, "policy %q not found", truncate(name, 140))
		}
		return err
	})
	if err != nil {
		return s.storeErr(err)
	}
	s.auth.clear()
	return nil
}

// keepingAdministrator runs change inside the transaction of an access
// change and refuses it if it leaves no principal able to manage access
// (allowed kms:ManageAccess, with a live token or a mapped certificate)
// where there was one: kmsd init and the bootstrap token only set up an
// empty database, so nothing could undo it.
func keepingAdministrator(ctx context.Context, q AccessQueries, change func() error) error {
	// One such change at a time (on PostgreSQL; SQLite's write transactions
	// are serial already): two administrators taking each other's rights at
	// the same moment would each still see the other.
	if err := q.LockAccessChanges(ctx); err != nil {
		return err
	}
	had, err := hasAdministrator(ctx, q)
	if err != nil {
		return err
	}
	if err := change(); err != nil {
		return err
	}
	if !had {
		return nil
	}
	has, err := hasAdministrator(ctx, q)
	if err != nil {
		return err
	}
	if !has {
		return errorf(ErrInvalidState, "this change would leave no principal able to manage access (kms:ManageAccess with a live token or certificate); give that right to another principal first")
	}
	return nil
}

func hasAdministrator(ctx context.Context, q AccessQueries) (bool, error) {
	page := Page{Limit: 100}
	for {
		ps, err := q.ListPrincipals(ctx, page)
		if err != nil {
			return false, err
		}
		for _, p := range ps {
			ok, err := isAdministrator(ctx, q, p)
			if err != nil || ok {
				return ok, err
			}
		}
		if len(ps) < page.Limit {
			return false, nil
		}
		page.After = ps[len(ps)-1].Name
	}
}

func isAdministrator(ctx context.Context, q AccessQueries, p Principal) (bool, error) {
	recs, err := q.PoliciesOf(ctx, p.Name)
	if err != nil {
		return false, err
	}
	if policy.Evaluate(parseDocs(recs, nil), ActManageAccess, noResource) != policy.Allowed {
		return false, nil
	}
	if p.CertSubject != "" {
		return true, nil
	}
	toks, err := q.ListTokens(ctx, p.Name)
	if err != nil {
		return false, err
	}
	for _, t := range toks {
		// A token that will expire does not count: the administrator
		// would be locked out by time alone.
		if t.RevokedAt == nil && t.ExpiresAt == nil {
			if _, ok := storedMAC(t.Hash); ok {
				return true, nil
			}
		}
	}
	return false, nil
}

// NeedsBootstrap reports whether no principal exists yet.
func (s *Access) NeedsBootstrap(ctx context.Context) (bool, error) {
	n, err := s.store.CountPrincipals(ctx)
	return n == 0, s.storeErr(err)
}
