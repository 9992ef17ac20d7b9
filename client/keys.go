package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// Key is a key as DescribeKey returns it.
type Key struct {
	KeyID             string            `json:"key_id"`
	Description       string            `json:"description"`
	Aliases           []string          `json:"aliases"`
	KeyState          string            `json:"key_state"`
	Origin            string            `json:"origin"`
	KeySpec           string            `json:"key_spec"`
	KeyUsage          string            `json:"key_usage"`
	KeyManager        string            `json:"key_manager"`
	CreationDate      time.Time         `json:"creation_date"`
	PrimaryKeyVersion int               `json:"primary_key_version"`
	AutomaticRotation string            `json:"automatic_rotation"`
	RotationInterval  string            `json:"rotation_interval"`
	LastRotationDate  *time.Time        `json:"last_rotation_date,omitempty"`
	NextRotationDate  *time.Time        `json:"next_rotation_date,omitempty"`
	DeletionDate      *time.Time        `json:"deletion_date,omitempty"`
	Tags              map[string]string `json:"tags"`
}

// CreateKeyRequest is the body of CreateKey; every field is optional.
type CreateKeyRequest struct {
	Description       string            `json:"description,omitempty"`
	Alias             string            `json:"alias,omitempty"`
	Origin            string            `json:"origin,omitempty"`
	KeySpec           string            `json:"key_spec,omitempty"`
	AutomaticRotation bool              `json:"automatic_rotation,omitempty"`
	RotationInterval  string            `json:"rotation_interval,omitempty"`
	Tags              map[string]string `json:"tags,omitempty"`
}

// CreateKey makes a key (POST /v1/keys).
func (c *Client) CreateKey(ctx context.Context, req CreateKeyRequest) (*Key, error) {
	var k Key
	return &k, c.Do(ctx, http.MethodPost, "/v1/keys", req, &k)
}

// DescribeKey returns a key by id or alias.
func (c *Client) DescribeKey(ctx context.Context, ref string) (*Key, error) {
	var k Key
	return &k, c.Do(ctx, http.MethodGet, keyPath(ref), nil, &k)
}

// KeyPage is one page of ListKeys.
type KeyPage struct {
	Keys      []Key  `json:"keys"`
	NextToken string `json:"next_token"`
}

// ListKeys returns one page of keys.
func (c *Client) ListKeys(ctx context.Context, limit int, nextToken string) (*KeyPage, error) {
	var p KeyPage
	return &p, c.Do(ctx, http.MethodGet, "/v1/keys"+pageQuery(url.Values{}, limit, nextToken), nil, &p)
}

// UpdateKeyRequest changes description and/or tags; nil fields stay.
type UpdateKeyRequest struct {
	Description *string           `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"` // nil: unchanged; empty, not nil: remove them all
}

// MarshalJSON sends tags whenever they are not nil: an empty map removes
// every tag, which omitempty would silently drop.
func (r UpdateKeyRequest) MarshalJSON() ([]byte, error) {
	type plain UpdateKeyRequest
	if r.Tags != nil && len(r.Tags) == 0 {
		return json.Marshal(struct {
			Description *string           `json:"description,omitempty"`
			Tags        map[string]string `json:"tags"`
		}{r.Description, r.Tags})
	}
	return json.Marshal(plain(r))
}

// UpdateKey changes a key's description and tags.
func (c *Client) UpdateKey(ctx context.Context, ref string, req UpdateKeyRequest) (*Key, error) {
	var k Key
	return &k, c.Do(ctx, http.MethodPatch, keyPath(ref), req, &k)
}

// EnableKey enables a key.
func (c *Client) EnableKey(ctx context.Context, ref string) (*Key, error) {
	var k Key
	return &k, c.Do(ctx, http.MethodPost, keyPath(ref)+"/enable", nil, &k)
}

// DisableKey disables a key.
func (c *Client) DisableKey(ctx context.Context, ref string) (*Key, error) {
	var k Key
	return &k, c.Do(ctx, http.MethodPost, keyPath(ref)+"/disable", nil, &k)
}
