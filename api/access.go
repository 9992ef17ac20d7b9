package api

import (
	"net/http"
	"time"

	"github.com/hsmkms/hsmkms/auditexport"
	"github.com/hsmkms/hsmkms/policy"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/wire"
	"github.com/labstack/echo/v4"
)

// Access control and audit endpoints: /v1/principals, /v1/policies,
// /v1/audit (extensions of docs/API.md, documented in openapi.yaml).

func principalResponse(p *service.PrincipalView) wire.Principal {
	out := wire.Principal{Name: p.Name, Policies: p.Policies, CertSubject: p.CertSubject,
		CreationDate: p.CreatedAt.UTC(), Tokens: make([]wire.TokenInfo, 0, len(p.Tokens))}
	if out.Policies == nil {
		out.Policies = []string{}
	}
	for _, t := range p.Tokens {
		out.Tokens = append(out.Tokens, wire.TokenInfo{TokenID: t.ID, Description: t.Description,
			CreationDate: t.CreatedAt.UTC(), RevokedDate: utc(t.RevokedAt),
			ExpirationDate: utc(t.ExpiresAt), LastUsedDate: utc(t.LastUsedAt)})
	}
	return out
}

type createTokenRequest struct {
	Description string `json:"description"`
	ExpiresIn   string `json:"expires_in"` // a duration ("90d", "12h"); absent: never
}

func newTokenResponse(t *service.NewToken) wire.NewToken {
	return wire.NewToken{TokenID: t.ID, Token: t.Token, Principal: t.Principal,
		Description: t.Description, CreationDate: t.CreatedAt.UTC(), ExpirationDate: utc(t.ExpiresAt)}
}

type putPolicyRequest struct {
	Document *policy.Document `json:"document"`
}

func policyResponse(p *service.PolicyView) wire.Policy {
	return wire.Policy{Name: p.Name, Document: policyDocument(p.Doc), CreationDate: p.CreatedAt.UTC(),
		LastUpdatedDate: p.UpdatedAt.UTC()}
}

// policyDocument is a policy document as the wire shows it (policy.Document
// and wire.PolicyDocument have one JSON form).
func policyDocument(d policy.Document) wire.PolicyDocument {
	var out wire.PolicyDocument
	if d.Statements != nil {
		out.Statements = make([]wire.Statement, len(d.Statements))
	}
	for i, st := range d.Statements {
		out.Statements[i] = wire.Statement{Effect: st.Effect, Actions: st.Actions, Resources: st.Resources}
	}
	return out
}

func (h *handlers) createPrincipal(c echo.Context) error {
	var req wire.CreatePrincipalRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if err := requireField("name", req.Name != ""); err != nil {
		return err
	}
	p, err := h.svc.Access.CreatePrincipal(c.Request().Context(), service.CreatePrincipalInput{
		Name: req.Name, Policies: req.Policies, CertSubject: req.CertSubject})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, principalResponse(p))
}

func (h *handlers) listPrincipals(c echo.Context) error {
	limit, err := queryInt(c, "limit")
	if err != nil {
		return err
	}
	ps, next, err := h.svc.Access.ListPrincipals(c.Request().Context(), limit, c.QueryParam("next_token"))
	if err != nil {
		return err
	}
	out := make([]wire.Principal, len(ps))
	for i, p := range ps {
		out[i] = principalResponse(p)
	}
	return c.JSON(http.StatusOK, map[string]any{"principals": out, "next_token": next})
}

func (h *handlers) getPrincipal(c echo.Context) error {
	p, err := h.svc.Access.GetPrincipal(c.Request().Context(), pathParam(c.Param("name")))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, principalResponse(p))
}

func (h *handlers) deletePrincipal(c echo.Context) error {
	if err := h.svc.Access.DeletePrincipal(c.Request().Context(), pathParam(c.Param("name"))); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (h *handlers) attachPolicy(c echo.Context) error {
	p, err := h.svc.Access.AttachPolicy(c.Request().Context(), pathParam(c.Param("name")), pathParam(c.Param("policy")))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, principalResponse(p))
}

func (h *handlers) detachPolicy(c echo.Context) error {
	p, err := h.svc.Access.DetachPolicy(c.Request().Context(), pathParam(c.Param("name")), pathParam(c.Param("policy")))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, principalResponse(p))
}

func (h *handlers) createToken(c echo.Context) error {
	var req createTokenRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	var life time.Duration
	if req.ExpiresIn != "" {
		d, err := service.ParseDuration(req.ExpiresIn)
		if err != nil {
			return err
		}
		if d == 0 {
			return service.Validationf("expires_in must be positive (leave it out for a token that does not expire)")
		}
		life = d
	}
	t, err := h.svc.Access.CreateToken(c.Request().Context(), pathParam(c.Param("name")), req.Description, life)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, newTokenResponse(t))
}

func (h *handlers) revokeToken(c echo.Context) error {
	if err := h.svc.Access.RevokeToken(c.Request().Context(), pathParam(c.Param("name")), pathParam(c.Param("token"))); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (h *handlers) rotateToken(c echo.Context) error {
	t, err := h.svc.Access.RotateToken(c.Request().Context(), pathParam(c.Param("name")), pathParam(c.Param("token")))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, newTokenResponse(t))
}

func (h *handlers) putPolicy(c echo.Context) error {
	var req putPolicyRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if err := requireField("document", req.Document != nil); err != nil {
		return err
	}
	p, err := h.svc.Access.PutPolicy(c.Request().Context(), pathParam(c.Param("name")), *req.Document)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, policyResponse(p))
}

func (h *handlers) listPolicies(c echo.Context) error {
	limit, err := queryInt(c, "limit")
	if err != nil {
		return err
	}
	ps, next, err := h.svc.Access.ListPolicies(c.Request().Context(), limit, c.QueryParam("next_token"))
	if err != nil {
		return err
	}
	out := make([]wire.Policy, len(ps))
	for i, p := range ps {
		out[i] = policyResponse(p)
	}
	return c.JSON(http.StatusOK, map[string]any{"policies": out, "next_token": next})
}

func (h *handlers) getPolicy(c echo.Context) error {
	p, err := h.svc.Access.GetPolicy(c.Request().Context(), pathParam(c.Param("name")))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, policyResponse(p))
}

func (h *handlers) deletePolicy(c echo.Context) error {
	if err := h.svc.Access.DeletePolicy(c.Request().Context(), pathParam(c.Param("name"))); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (h *handlers) listAudit(c echo.Context) error {
	limit, err := queryInt(c, "limit")
	if err != nil {
		return err
	}
	f := service.AuditFilter{Limit: limit, KeyID: c.QueryParam("key_id"), Principal: c.QueryParam("principal")}
	if f.From, err = queryTime(c, "from"); err != nil {
		return err
	}
	if f.To, err = queryTime(c, "to"); err != nil {
		return err
	}
	rows, next, err := h.svc.Audit.ListAudit(c.Request().Context(), f, c.QueryParam("next_token"))
	if err != nil {
		return err
	}
	out := make([]wire.AuditRecord, len(rows))
	for i := range rows {
		out[i] = auditexport.Record(&rows[i])
	}
	return c.JSON(http.StatusOK, map[string]any{"records": out, "next_token": next})
}

func (h *handlers) verifyAudit(c echo.Context) error {
	v, err := h.svc.Audit.VerifyAudit(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.AuditVerification{Intact: v.Intact, RecordsChecked: v.RecordsChecked,
		HeadSeq: v.HeadSeq, FirstBrokenSeq: v.FirstBrokenSeq, Reason: v.Reason,
		SealedSeq: v.SealedSeq, Seals: v.Seals})
}

// queryTime reads an optional RFC 3339 query parameter.
func queryTime(c echo.Context, name string) (time.Time, error) {
	s := c.QueryParam(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, service.Validationf("query parameter %s must be an RFC 3339 time", name)
	}
	return t, nil
}
