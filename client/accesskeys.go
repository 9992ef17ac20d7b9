package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// NewAccessKey is an AWS access key just made; SecretAccessKey is shown
// only once.
type NewAccessKey struct {
	AccessKeyID     string    `json:"access_key_id"`
	SecretAccessKey string    `json:"secret_access_key"`
	Principal       string    `json:"principal"`
	CreationDate    time.Time `json:"creation_date"`
}

// AccessKeyInfo describes an access key without its secret.
type AccessKeyInfo struct {
	AccessKeyID  string     `json:"access_key_id"`
	CreationDate time.Time  `json:"creation_date"`
	LastUsedDate *time.Time `json:"last_used_date,omitempty"`
}

// CreateAccessKey makes an AWS access key for a principal.
func (c *Client) CreateAccessKey(ctx context.Context, principal string) (*NewAccessKey, error) {
	var k NewAccessKey
	return &k, c.Do(ctx, http.MethodPost, principalPath(principal)+"/access-keys", nil, &k)
}

// ListAccessKeys lists a principal's access keys.
func (c *Client) ListAccessKeys(ctx context.Context, principal string) ([]AccessKeyInfo, error) {
	var out struct {
		AccessKeys []AccessKeyInfo `json:"access_keys"`
	}
	return out.AccessKeys, c.Do(ctx, http.MethodGet, principalPath(principal)+"/access-keys", nil, &out)
}

// DeleteAccessKey deletes one of a principal's access keys.
func (c *Client) DeleteAccessKey(ctx context.Context, principal, accessKeyID string) error {
	return c.Do(ctx, http.MethodDelete, principalPath(principal)+"/access-keys/"+url.PathEscape(accessKeyID), nil, nil)
}
