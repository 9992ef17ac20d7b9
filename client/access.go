package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

func principalPath(name string) string { return "/v1/principals/" + url.PathEscape(name) }

// CreatePrincipal makes a principal.
func (c *Client) CreatePrincipal(ctx context.Context, req CreatePrincipalRequest) (*Principal, error) {
	var p Principal
	return &p, c.Do(ctx, http.MethodPost, "/v1/principals", req, &p)
}

// GetPrincipal reads a principal.
func (c *Client) GetPrincipal(ctx context.Context, name string) (*Principal, error) {
	var p Principal
	return &p, c.Do(ctx, http.MethodGet, principalPath(name), nil, &p)
}

// ListPrincipals lists principals by name.
func (c *Client) ListPrincipals(ctx context.Context, limit int, nextToken string) (*PrincipalPage, error) {
	var p PrincipalPage
	return &p, c.Do(ctx, http.MethodGet, "/v1/principals"+pageQuery(url.Values{}, limit, nextToken), nil, &p)
}

// DeletePrincipal removes a principal with its tokens.
func (c *Client) DeletePrincipal(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, principalPath(name), nil, nil)
}

// AttachPolicy attaches a policy to a principal.
func (c *Client) AttachPolicy(ctx context.Context, principal, policy string) (*Principal, error) {
	var p Principal
	return &p, c.Do(ctx, http.MethodPut, principalPath(principal)+"/policies/"+url.PathEscape(policy), nil, &p)
}

// DetachPolicy detaches a policy from a principal.
func (c *Client) DetachPolicy(ctx context.Context, principal, policy string) (*Principal, error) {
	var p Principal
	return &p, c.Do(ctx, http.MethodDelete, principalPath(principal)+"/policies/"+url.PathEscape(policy), nil, &p)
}

// CreateToken makes a bearer token for a principal that does not expire.
func (c *Client) CreateToken(ctx context.Context, principal, description string) (*NewToken, error) {
	return c.CreateExpiringToken(ctx, principal, description, "")
}

// CreateExpiringToken makes a bearer token for a principal that expires
// after expiresIn, a duration such as "90d" or "12h" ("": never).
func (c *Client) CreateExpiringToken(ctx context.Context, principal, description, expiresIn string) (*NewToken, error) {
	var t NewToken
	body := map[string]string{"description": description}
	if expiresIn != "" {
		body["expires_in"] = expiresIn
	}
	return &t, c.Do(ctx, http.MethodPost, principalPath(principal)+"/tokens", body, &t)
}

// RevokeToken revokes a token.
func (c *Client) RevokeToken(ctx context.Context, principal, tokenID string) error {
	return c.Do(ctx, http.MethodDelete, principalPath(principal)+"/tokens/"+url.PathEscape(tokenID), nil, nil)
}

// RotateToken replaces a token by a new one and revokes it.
func (c *Client) RotateToken(ctx context.Context, principal, tokenID string) (*NewToken, error) {
	var t NewToken
	return &t, c.Do(ctx, http.MethodPost, principalPath(principal)+"/tokens/"+url.PathEscape(tokenID)+"/rotate", nil, &t)
}

func policyPath(name string) string { return "/v1/policies/" + url.PathEscape(name) }

// PutPolicy creates or replaces a policy.
func (c *Client) PutPolicy(ctx context.Context, name string, doc PolicyDocument) (*Policy, error) {
	var p Policy
	return &p, c.Do(ctx, http.MethodPut, policyPath(name), map[string]any{"document": doc}, &p)
}

// GetPolicy reads a policy.
func (c *Client) GetPolicy(ctx context.Context, name string) (*Policy, error) {
	var p Policy
	return &p, c.Do(ctx, http.MethodGet, policyPath(name), nil, &p)
}

// ListPolicies lists policies by name.
func (c *Client) ListPolicies(ctx context.Context, limit int, nextToken string) (*PolicyPage, error) {
	var p PolicyPage
	return &p, c.Do(ctx, http.MethodGet, "/v1/policies"+pageQuery(url.Values{}, limit, nextToken), nil, &p)
}

// DeletePolicy removes a policy no principal has attached.
func (c *Client) DeletePolicy(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, policyPath(name), nil, nil)
}

// AuditFilter selects audit records; zero fields do not filter.
type AuditFilter struct {
	From, To  time.Time
	KeyID     string
	Principal string
}

// ListAudit lists audit records, oldest first.
func (c *Client) ListAudit(ctx context.Context, f AuditFilter, limit int, nextToken string) (*AuditPage, error) {
	q := url.Values{}
	if !f.From.IsZero() {
		q.Set("from", f.From.UTC().Format(time.RFC3339Nano))
	}
	if !f.To.IsZero() {
		q.Set("to", f.To.UTC().Format(time.RFC3339Nano))
	}
	if f.KeyID != "" {
		q.Set("key_id", f.KeyID)
	}
	if f.Principal != "" {
		q.Set("principal", f.Principal)
	}
	var p AuditPage
	return &p, c.Do(ctx, http.MethodGet, "/v1/audit"+pageQuery(q, limit, nextToken), nil, &p)
}

// VerifyAudit checks the whole audit chain on the server.
func (c *Client) VerifyAudit(ctx context.Context) (*AuditVerification, error) {
	var v AuditVerification
	return &v, c.Do(ctx, http.MethodGet, "/v1/audit/verify", nil, &v)
}
