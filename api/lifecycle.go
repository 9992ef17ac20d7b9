package api

import (
	"net/http"
	"strconv"

	"github.com/hsmkms/hsmkms/policy"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/wire"
	"github.com/labstack/echo/v4"
)

type deletionRequest struct {
	PendingWindowDays *int `json:"pending_window_days"`
}

// days is the window asked for: absent is the service's default (0 to the
// service); an explicit 0 is a mistake, refused rather than read as 30.
func (r deletionRequest) days() (int, error) {
	switch {
	case r.PendingWindowDays == nil:
		return 0, nil
	case *r.PendingWindowDays == 0:
		return 0, service.Validationf("pending_window_days must be %d to %d (omit it for %d)",
			service.MinPendingWindowDays, service.MaxPendingWindowDays, service.DefaultPendingWindowDays)
	}
	return *r.PendingWindowDays, nil
}

type rotationPolicyRequest struct {
	AutomaticRotation *bool  `json:"automatic_rotation"`
	RotationInterval  string `json:"rotation_interval"`
}

type rotateResponse struct {
	KeyID      string `json:"key_id"`
	KeyVersion int    `json:"key_version"`
}

func versionResponse(v *service.Version) wire.Version {
	return wire.Version{Version: v.Version, State: string(v.State), Origin: string(v.Origin),
		CreationDate: v.CreatedAt.UTC(), DestructionDate: utc(v.DestroyAt), TokenObjectLabel: v.TokenLabel,
		Encryptions: v.Encryptions}
}

func (h *handlers) scheduleDeletion(c echo.Context) error {
	var req deletionRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	days, err := req.days()
	if err != nil {
		return err
	}
	k, err := h.svc.Keys.ScheduleKeyDeletion(c.Request().Context(), keyRef(c), days)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, h.keyResponse(k))
}

func (h *handlers) putRotationPolicy(c echo.Context) error {
	var req rotationPolicyRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if err := requireField("automatic_rotation", req.AutomaticRotation != nil); err != nil {
		return err
	}
	in := service.RotationPolicyInput{AutomaticRotation: *req.AutomaticRotation}
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
	k, err := h.svc.Keys.PutRotationPolicy(c.Request().Context(), keyRef(c), in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, h.keyResponse(k))
}

func (h *handlers) rotationStatus(c echo.Context) error {
	st, err := h.svc.Keys.GetRotationStatus(c.Request().Context(), keyRef(c))
	if err != nil {
		return err
	}
	out := wire.RotationStatus{KeyID: st.KeyID, AutomaticRotation: st.Status,
		RotationInterval: service.FormatDuration(st.RotationInterval),
		LastRotationDate: utc(st.LastRotation), NextRotationDate: utc(st.NextRotation),
		OnDemandRotationsRemaining: st.OnDemandRemaining, LastRotationFailure: failureResponse(st.LastFailure)}
	if st.Status != policy.RotationStatusEnabled {
		out.NextRotationDate = nil
	}
	return c.JSON(http.StatusOK, out)
}

func (h *handlers) rotate(c echo.Context) error {
	if err := bind(c, &struct{}{}); err != nil {
		return err
	}
	v, err := h.svc.Worker.RotateKey(c.Request().Context(), keyRef(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rotateResponse{KeyID: v.KeyID, KeyVersion: v.Version})
}

func (h *handlers) listRotations(c echo.Context) error {
	limit, err := queryInt(c, "limit")
	if err != nil {
		return err
	}
	rows, next, err := h.svc.Keys.ListKeyRotations(c.Request().Context(), keyRef(c), limit, c.QueryParam("next_token"))
	if err != nil {
		return err
	}
	out := wire.RotationPage{Rotations: make([]wire.Rotation, len(rows)), NextToken: next}
	for i, r := range rows {
		out.Rotations[i] = wire.Rotation{KeyVersion: r.Version, RotationDate: r.At.UTC(), RotationType: string(r.Type)}
	}
	return c.JSON(http.StatusOK, out)
}

func (h *handlers) listVersions(c echo.Context) error {
	vs, err := h.svc.Keys.ListVersions(c.Request().Context(), keyRef(c))
	if err != nil {
		return err
	}
	out := struct {
		Versions []wire.Version `json:"versions"`
	}{Versions: make([]wire.Version, len(vs))}
	for i := range vs {
		out.Versions[i] = versionResponse(&vs[i])
	}
	return c.JSON(http.StatusOK, out)
}

// changeVersion serves POST .../versions/{version}/{disable,enable,
// schedule-destruction,cancel-destruction}.
func (h *handlers) changeVersion(action service.VersionAction) echo.HandlerFunc {
	return func(c echo.Context) error {
		version, err := strconv.Atoi(c.Param("version"))
		if err != nil || version < 1 || version > service.MaxVersion {
			return service.Validationf("version must be an integer from 1 to %d", service.MaxVersion)
		}
		var req deletionRequest
		if action == service.ScheduleVersionDestruction {
			err = bind(c, &req)
		} else {
			err = bind(c, &struct{}{})
		}
		if err != nil {
			return err
		}
		days, err := req.days()
		if err != nil {
			return err
		}
		v, err := h.svc.Keys.ChangeVersion(c.Request().Context(), keyRef(c), version, action, days)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, versionResponse(v))
	}
}
