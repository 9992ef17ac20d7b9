package client

import (
	"context"
	"net/http"
	"net/url"
)

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

// ListKeys returns one page of keys.
func (c *Client) ListKeys(ctx context.Context, limit int, nextToken string) (*KeyPage, error) {
	var p KeyPage
	return &p, c.Do(ctx, http.MethodGet, "/v1/keys"+pageQuery(url.Values{}, limit, nextToken), nil, &p)
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
