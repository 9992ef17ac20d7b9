package api

import (
	"net/http"

	"github.com/hsmkms/hsmkms/wire"
	"github.com/labstack/echo/v4"
)

// AWS access keys of a principal, for the AWS KMS protocol (awsapi):
// /v1/principals/{name}/access-keys (extensions of API.md).

func (h *handlers) createAccessKey(c echo.Context) error {
	if err := bindOptional(c); err != nil {
		return err
	}
	k, err := h.svc.Access.CreateAccessKey(c.Request().Context(), pathParam(c.Param("name")))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, wire.NewAccessKey{AccessKeyID: k.ID, SecretAccessKey: k.Secret,
		Principal: k.Principal, CreationDate: k.CreatedAt.UTC()})
}

func (h *handlers) listAccessKeys(c echo.Context) error {
	keys, err := h.svc.Access.ListAccessKeys(c.Request().Context(), pathParam(c.Param("name")))
	if err != nil {
		return err
	}
	out := wire.AccessKeyPage{AccessKeys: make([]wire.AccessKeyInfo, len(keys))}
	for i, k := range keys {
		out.AccessKeys[i] = wire.AccessKeyInfo{AccessKeyID: k.ID, CreationDate: k.CreatedAt.UTC(), LastUsedDate: utc(k.LastUsedAt)}
	}
	return c.JSON(http.StatusOK, out)
}

func (h *handlers) deleteAccessKey(c echo.Context) error {
	err := h.svc.Access.DeleteAccessKey(c.Request().Context(), pathParam(c.Param("name")), pathParam(c.Param("access_key_id")))
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// bindOptional accepts an empty body or an empty JSON object: the create
// call takes no fields, but clients that always send {} must not fail.
func bindOptional(c echo.Context) error {
	var req struct{}
	return bind(c, &req)
}
