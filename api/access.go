package api

import (
	"net/http"
	"time"

	"github.com/hsmkms/hsmkms/policy"
	"github.com/hsmkms/hsmkms/service"
	"github.com/labstack/echo/v4"
)

// Access control and audit endpoints: /v1/principals, /v1/policies,
// /v1/audit (extensions of docs/API.md, documented in openapi.yaml).

type createPrincipalRequest struct {
	Name        string   `json:"name"`
	Policies    []string `json:"policies"`
	CertSubject string   `json:"cert_subject"`
}

type tokenInfo struct {
	TokenID      string     `json:"token_id"`
	Description  string     `json:"description"`
	CreationDate time.Time  `json:"creation_date"`
	RevokedDate  *time.Time `json:"revoked_date,omitempty"`
}

// PrincipalResponse is a principal; its tokens' secrets are never shown.
type PrincipalResponse struct {
	Name         string      `json:"name"`
	Policies     []string    `json:"policies"`
	CertSubject  string      `json:"cert_subject"`
	CreationDate time.Time   `json:"creation_date"`
	Tokens       []tokenInfo `json:"tokens"`
}

func principalResponse(p *service.PrincipalView) PrincipalResponse {
	out := PrincipalResponse{Name: p.Name, Policies: p.Policies, CertSubject: p.CertSubject,
		CreationDate: p.CreatedAt.UTC(), Tokens: make([]tokenInfo, 0, len(p.Tokens))}
	if out.Policies == nil {
		out.Policies = []string{}
	}
	for _, t := range p.Tokens {
		out.Tokens = append(out.Tokens, tokenInfo{TokenID: t.ID, Description: t.Description,
			CreationDate: t.CreatedAt.UTC(), RevokedDate: utc(t.RevokedAt)})
	}
	return out
}

type createTokenRequest struct {
	Description string `json:"description"`
}

// NewTokenResponse carries a token's secret: the only time it is shown.
type NewTokenResponse struct {
	TokenID      string    `json:"token_id"`
	Token        string    `json:"token"`
	Principal    string    `json:"principal"`
	Description  string    `json:"description"`
	CreationDate time.Time `json:"creation_date"`
}

func newTokenResponse(t *service.NewToken) NewTokenResponse {
	return NewTokenResponse{TokenID: t.ID, Token: t.Token, Principal: t.Principal,
		Description: t.Description, CreationDate: t.CreatedAt.UTC()}
}

type putPolicyRequest struct {
	Document *policy.Document `json:"document"`
}

// PolicyResponse is a stored policy document.
type PolicyResponse struct {
	Name            string          `json:"name"`
	Document        policy.Document `json:"document"`
	CreationDate    time.Time       `json:"creation_date"`
	LastUpdatedDate time.Time       `json:"last_updated_date"`
}

func policyResponse(p *service.PolicyView) PolicyResponse {
	return PolicyResponse{Name: p.Name, Document: p.Doc, CreationDate: p.CreatedAt.UTC(),
		LastUpdatedDate: p.UpdatedAt.UTC()}
}

// AuditRecord is one record of the hash-chained audit log.
type AuditRecord struct {
	Seq        int64     `json:"seq"`
	Time       time.Time `json:"time"`
	RequestID  string    `json:"request_id"`
	Principal  string    `json:"principal"`
	Action     string    `json:"action"`
	KeyID      string    `json:"key_id"`
	KeyVersion int       `json:"key_version"`
	Outcome    string    `json:"outcome"`
	ErrorCode  string    `json:"error_code"`
	Source     string    `json:"source"`
	Detail     string    `json:"detail"`
	PrevHash   string    `json:"prev_hash"`
	Hash       string    `json:"hash"`
}

// AuditVerifyResponse is the result of GET /v1/audit/verify.
type AuditVerifyResponse struct {
	Intact         bool   `json:"intact"`
	RecordsChecked int64  `json:"records_checked"`
	HeadSeq        int64  `json:"head_seq"`
	FirstBrokenSeq int64  `json:"first_broken_seq"`
	Reason         string `json:"reason"`
	SealedSeq      int64  `json:"sealed_seq"`
	Seals          int64  `json:"seals"`
}

func (h *handlers) createPrincipal(c echo.Context) error {
	var req createPrincipalRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if err := requireField("name", req.Name != ""); err != nil {
		return err
	}
	p, err := h.svc.CreatePrincipal(c.Request().Context(), service.CreatePrincipalInput{
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
	ps, next, err := h.svc.ListPrincipals(c.Request().Context(), limit, c.QueryParam("next_token"))
	if err != nil {
		return err
	}
	out := make([]PrincipalResponse, len(ps))
	for i, p := range ps {
		out[i] = principalResponse(p)
	}
	return c.JSON(http.StatusOK, map[string]any{"principals": out, "next_token": next})
}

func (h *handlers) getPrincipal(c echo.Context) error {
	p, err := h.svc.GetPrincipal(c.Request().Context(), pathParam(c.Param("name")))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, principalResponse(p))
}

func (h *handlers) deletePrincipal(c echo.Context) error {
	if err := h.svc.DeletePrincipal(c.Request().Context(), pathParam(c.Param("name"))); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (h *handlers) attachPolicy(c echo.Context) error {
	p, err := h.svc.AttachPolicy(c.Request().Context(), pathParam(c.Param("name")), pathParam(c.Param("policy")))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, principalResponse(p))
}

func (h *handlers) detachPolicy(c echo.Context) error {
	p, err := h.svc.DetachPolicy(c.Request().Context(), pathParam(c.Param("name")), pathParam(c.Param("policy")))
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
	t, err := h.svc.CreateToken(c.Request().Context(), pathParam(c.Param("name")), req.Description)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, newTokenResponse(t))
}

func (h *handlers) revokeToken(c echo.Context) error {
	if err := h.svc.RevokeToken(c.Request().Context(), pathParam(c.Param("name")), pathParam(c.Param("token"))); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (h *handlers) rotateToken(c echo.Context) error {
	t, err := h.svc.RotateToken(c.Request().Context(), pathParam(c.Param("name")), pathParam(c.Param("token")))
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
	p, err := h.svc.PutPolicy(c.Request().Context(), pathParam(c.Param("name")), *req.Document)
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
	ps, next, err := h.svc.ListPolicies(c.Request().Context(), limit, c.QueryParam("next_token"))
	if err != nil {
		return err
	}
	out := make([]PolicyResponse, len(ps))
	for i, p := range ps {
		out[i] = policyResponse(p)
	}
	return c.JSON(http.StatusOK, map[string]any{"policies": out, "next_token": next})
}

func (h *handlers) getPolicy(c echo.Context) error {
	p, err := h.svc.GetPolicy(c.Request().Context(), pathParam(c.Param("name")))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, policyResponse(p))
}

func (h *handlers) deletePolicy(c echo.Context) error {
	if err := h.svc.DeletePolicy(c.Request().Context(), pathParam(c.Param("name"))); err != nil {
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
	rows, next, err := h.svc.ListAudit(c.Request().Context(), f, c.QueryParam("next_token"))
	if err != nil {
		return err
	}
	out := make([]AuditRecord, len(rows))
	for i, r := range rows {
		out[i] = AuditRecord{Seq: r.Seq, Time: r.At.UTC(), RequestID: r.RequestID, Principal: r.Principal,
			Action: r.Action, KeyID: r.KeyID, KeyVersion: r.KeyVersion, Outcome: r.Outcome,
			ErrorCode: r.ErrorCode, Source: r.Source, Detail: r.Detail, PrevHash: r.PrevHash, Hash: r.Hash}
	}
	return c.JSON(http.StatusOK, map[string]any{"records": out, "next_token": next})
}

func (h *handlers) verifyAudit(c echo.Context) error {
	v, err := h.svc.VerifyAudit(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, AuditVerifyResponse{Intact: v.Intact, RecordsChecked: v.RecordsChecked,
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
