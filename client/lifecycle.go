package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"
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

// RotationStatus is the answer of GET .../rotation-status.
type RotationStatus struct {
	KeyID             string     `json:"key_id"`
	AutomaticRotation string     `json:"automatic_rotation"`
	RotationInterval  string     `json:"rotation_interval"`
	LastRotationDate  *time.Time `json:"last_rotation_date,omitempty"`
	NextRotationDate  *time.Time `json:"next_rotation_date,omitempty"`
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

// Rotation is one entry of ListKeyRotations.
type Rotation struct {
	KeyVersion   int       `json:"key_version"`
	RotationDate time.Time `json:"rotation_date"`
	RotationType string    `json:"rotation_type"`
}

// RotationPage is one page of ListKeyRotations.
type RotationPage struct {
	Rotations []Rotation `json:"rotations"`
	NextToken string     `json:"next_token"`
}

// ListKeyRotations lists a key's rotations.
func (c *Client) ListKeyRotations(ctx context.Context, ref string, limit int, nextToken string) (*RotationPage, error) {
	var p RotationPage
	return &p, c.Do(ctx, http.MethodGet, keyPath(ref)+"/rotations"+pageQuery(url.Values{}, limit, nextToken), nil, &p)
}

// Version is one key version.
type Version struct {
	Version          int        `json:"version"`
	State            string     `json:"state"`
	Origin           string     `json:"origin"`
	CreationDate     time.Time  `json:"creation_date"`
	DestructionDate  *time.Time `json:"destruction_date,omitempty"`
	TokenObjectLabel string     `json:"token_object_label"`
	Encryptions      int64      `json:"encryptions"`
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
