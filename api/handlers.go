package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/wire"
	"github.com/labstack/echo/v4"
)

var errPanic = errors.New("panic in handler")

func urlUnescape(s string) (string, error) { return url.PathUnescape(s) }

type handlers struct {
	svc *service.Service
}

func (h *handlers) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (h *handlers) readyz(c echo.Context) error {
	if err := h.svc.Ready(c.Request().Context()); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// queryInt reads an optional integer query parameter.
func queryInt(c echo.Context, name string) (int, error) {
	s := c.QueryParam(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, service.Validationf("query parameter %s must be a positive integer", name)
	}
	return n, nil
}

func (h *handlers) createKey(c echo.Context) error {
	var req wire.CreateKeyRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	in := service.CreateKeyInput{
		Description: req.Description, Alias: req.Alias, Origin: service.Origin(req.Origin),
		KeySpec: req.KeySpec, AutomaticRotation: req.AutomaticRotation, Tags: req.Tags,
	}
	if req.RotationInterval != "" {
		d, err := service.ParseDuration(req.RotationInterval)
		if err != nil {
			return err
		}
		if d == 0 {
			return service.Validationf("rotation_interval must be positive")
		}
		in.RotationInterval = d
	}
	k, err := h.svc.Keys.CreateKey(c.Request().Context(), in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, h.keyResponse(k))
}

func (h *handlers) listKeys(c echo.Context) error {
	limit, err := queryInt(c, "limit")
	if err != nil {
		return err
	}
	keys, next, err := h.svc.Keys.ListKeys(c.Request().Context(), limit, c.QueryParam("next_token"))
	if err != nil {
		return err
	}
	out := wire.KeyPage{Keys: make([]wire.Key, len(keys)), NextToken: next}
	for i, k := range keys {
		out.Keys[i] = h.keyResponse(k)
	}
	return c.JSON(http.StatusOK, out)
}

func (h *handlers) describeKey(c echo.Context) error {
	k, err := h.svc.Keys.DescribeKey(c.Request().Context(), keyRef(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, h.keyResponse(k))
}

func (h *handlers) updateKey(c echo.Context) error {
	var req wire.UpdateKeyRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	k, err := h.svc.Keys.UpdateKey(c.Request().Context(), keyRef(c),
		service.UpdateKeyInput{Description: req.Description, Tags: req.Tags})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, h.keyResponse(k))
}

// keyAction serves a per-key change that takes no body (an empty body or
// {} is accepted, anything else is a ValidationException) and answers the key.
func (h *handlers) keyAction(do func(ctx context.Context, ref string) (*service.Key, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := bind(c, &struct{}{}); err != nil {
			return err
		}
		k, err := do(c.Request().Context(), keyRef(c))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, h.keyResponse(k))
	}
}

func (h *handlers) createAlias(c echo.Context) error {
	var req aliasRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if err := requireField("alias_name", req.AliasName != ""); err != nil {
		return err
	}
	a, err := h.svc.Keys.CreateAlias(c.Request().Context(), req.AliasName, req.TargetKeyID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, aliasResponse(a))
}

func (h *handlers) updateAlias(c echo.Context) error {
	var req updateAliasRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	a, err := h.svc.Keys.UpdateAlias(c.Request().Context(), service.AliasPrefix+pathParam(c.Param("name")), req.TargetKeyID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, aliasResponse(a))
}

func (h *handlers) deleteAlias(c echo.Context) error {
	if err := h.svc.Keys.DeleteAlias(c.Request().Context(), service.AliasPrefix+pathParam(c.Param("name"))); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (h *handlers) listAliases(c echo.Context) error {
	limit, err := queryInt(c, "limit")
	if err != nil {
		return err
	}
	aliases, next, err := h.svc.Keys.ListAliases(c.Request().Context(), c.QueryParam("key_id"), limit, c.QueryParam("next_token"))
	if err != nil {
		return err
	}
	out := wire.AliasPage{Aliases: make([]wire.Alias, len(aliases)), NextToken: next}
	for i := range aliases {
		out.Aliases[i] = aliasResponse(&aliases[i])
	}
	return c.JSON(http.StatusOK, out)
}
