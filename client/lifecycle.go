package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// ScheduleKeyDeletion puts a key in PendingDeletion (days 7-30; 0 = 30).
func (c *Client) ScheduleKeyDeletion(ctx context.Context, ref string, days int) (*Key, error) {
	var k Key
	body := map[string]int{}
	if days != 0 {
		body["pending_window_days"] = days
	}
	return &k, c.Do(ctx, http.MethodPost, keyPath(ref)+"/schedule-deletion", body, &k)
}

// CancelKeyDeletion returns a PendingDeletion key to Disabled.
func (c *Client) CancelKeyDeletion(ctx context.Context, ref string) (*Key, error) {
	var k Key
	return &k, c.Do(ctx, http.MethodPost, keyPath(ref)+"/cancel-deletion", nil, &k)
}

// PutRotationPolicy sets automatic rotation (interval "" keeps the key's).
func (c *Client) PutRotationPolicy(ctx context.Context, ref string, enabled bool, interval string) (*Key, error) {
	body := struct {
		AutomaticRotation bool   `json:"automatic_rotation"`
		RotationInterval  string `json:"rotation_interval,omitempty"`
	}{enabled, interval}
	var k Key
	return &k, c.Do(ctx, http.MethodPut, keyPath(ref)+"/rotation-policy", body, &k)
}

// GetRotationStatus reports a key's rotation policy and dates.
func (c *Client) GetRotationStatus(ctx context.Context, ref string) (*RotationStatus, error) {
	var r RotationStatus
	return &r, c.Do(ctx, http.MethodGet, keyPath(ref)+"/rotation-status", nil, &r)
}

// RotateKey makes a new primary version now; it returns its number.
func (c *Client) RotateKey(ctx context.Context, ref string) (int, error) {
	var r struct {
		KeyVersion int `json:"key_version"`
	}
	err := c.Do(ctx, http.MethodPost, keyPath(ref)+"/rotate", nil, &r)
	return r.KeyVersion, err
}

// ListKeyRotations lists a key's rotations.
func (c *Client) ListKeyRotations(ctx context.Context, ref string, limit int, nextToken string) (*RotationPage, error) {
	var p RotationPage
	return &p, c.Do(ctx, http.MethodGet, keyPath(ref)+"/rotations"+pageQuery(url.Values{}, limit, nextToken), nil, &p)
}

// ListVersions lists a key's versions, oldest first.
func (c *Client) ListVersions(ctx context.Context, ref string) ([]Version, error) {
	var r struct {
		Versions []Version `json:"versions"`
	}
	err := c.Do(ctx, http.MethodGet, keyPath(ref)+"/versions", nil, &r)
	return r.Versions, err
}

// ChangeVersion posts a version action: "disable", "enable",
// "schedule-destruction" (with days) or "cancel-destruction".
func (c *Client) ChangeVersion(ctx context.Context, ref string, version int, action string, days int) (*Version, error) {
	var body any
	if days != 0 {
		body = map[string]int{"pending_window_days": days}
	}
	var v Version
	return &v, c.Do(ctx, http.MethodPost, fmt.Sprintf("%s/versions/%d/%s", keyPath(ref), version, action), body, &v)
}
