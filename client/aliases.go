package client

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Alias is an alias binding.
type Alias struct {
	AliasName       string    `json:"alias_name"`
	TargetKeyID     string    `json:"target_key_id"`
	CreationDate    time.Time `json:"creation_date"`
	LastUpdatedDate time.Time `json:"last_updated_date"`
}

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

// AliasPage is one page of ListAliases.
type AliasPage struct {
	Aliases   []Alias `json:"aliases"`
	NextToken string  `json:"next_token"`
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
