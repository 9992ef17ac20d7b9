package client

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

func aliasPath(name string) string {
	return "/v1/aliases/" + url.PathEscape(strings.TrimPrefix(name, "alias/"))
}

// CreateAlias binds alias/NAME to a key.
func (c *Client) CreateAlias(ctx context.Context, name, targetKeyID string) (*Alias, error) {
	var a Alias
	body := map[string]string{"alias_name": name, "target_key_id": targetKeyID}
	return &a, c.Do(ctx, http.MethodPost, "/v1/aliases", body, &a)
}

// UpdateAlias re-binds an alias to another key.
func (c *Client) UpdateAlias(ctx context.Context, name, targetKeyID string) (*Alias, error) {
	var a Alias
	return &a, c.Do(ctx, http.MethodPut, aliasPath(name), map[string]string{"target_key_id": targetKeyID}, &a)
}

// DeleteAlias removes an alias.
func (c *Client) DeleteAlias(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, aliasPath(name), nil, nil)
}

// ListAliases lists aliases, of one key when keyID is not empty.
func (c *Client) ListAliases(ctx context.Context, keyID string, limit int, nextToken string) (*AliasPage, error) {
	q := url.Values{}
	if keyID != "" {
		q.Set("key_id", keyID)
	}
	var p AliasPage
	return &p, c.Do(ctx, http.MethodGet, "/v1/aliases"+pageQuery(q, limit, nextToken), nil, &p)
}
