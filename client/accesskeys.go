package client

import (
	"context"
	"net/http"
	"net/url"
)

// CreateAccessKey makes an AWS access key for a principal.
func (c *Client) CreateAccessKey(ctx context.Context, principal string) (*NewAccessKey, error) {
	var k NewAccessKey
	return &k, c.Do(ctx, http.MethodPost, principalPath(principal)+"/access-keys", nil, &k)
}

// ListAccessKeys lists a principal's access keys.
func (c *Client) ListAccessKeys(ctx context.Context, principal string) ([]AccessKeyInfo, error) {
	var out AccessKeyPage
	return out.AccessKeys, c.Do(ctx, http.MethodGet, principalPath(principal)+"/access-keys", nil, &out)
}

// DeleteAccessKey deletes one of a principal's access keys.
func (c *Client) DeleteAccessKey(ctx context.Context, principal, accessKeyID string) error {
	return c.Do(ctx, http.MethodDelete, principalPath(principal)+"/access-keys/"+url.PathEscape(accessKeyID), nil, nil)
}
