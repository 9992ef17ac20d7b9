// Package client is a typed Go client for the hsmkms REST API (docs/API.md).
// Errors from the server are *Error values carrying the API error code.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls one hsmkms server with one bearer token.
type Client struct {
	base  string
	token string
	http  *http.Client
	retry Retry
}

// New returns a client for the server at baseURL (e.g. http://127.0.0.1:8080).
func New(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: hc}
}

// Error is an error response of the API (docs/API.md, "Errors"); Code is
// one of wire's Code constants (Temporary says which are worth trying
// again).
type Error struct {
	Status    int    // HTTP status
	Code      string // e.g. "NotFoundException"
	Message   string
	RequestID string

	retryAfter time.Duration // the server's Retry-After, if any
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (%d): %s", e.Code, e.Status, e.Message)
}

// Code returns the API error code of err, or "" if err is not an API error.
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// Do sends one request with a JSON body (nil for none) and decodes the JSON
// response into out (nil to discard). It is exported for endpoints that have
// no typed method yet and for tests that send raw bodies.
//
// A client made WithRetry repeats a call that is safe to repeat while the
// server answers it is unavailable, over its quota or in a lock conflict.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var raw []byte // nil: no body
	if body != nil {
		switch b := body.(type) {
		case []byte:
			raw = append([]byte{}, b...)
		case string:
			raw = append([]byte{}, b...)
		default:
			buf, err := json.Marshal(body)
			if err != nil {
				return err
			}
			raw = buf
		}
	}
	defer clear(raw) // a copy, which may hold a plaintext
	tries := 1
	if repeatable(method, path) {
		tries = max(1, c.retry.Attempts)
	}
	for n := 1; ; n++ {
		err := c.do(ctx, method, path, raw, out)
		if n > 1 && goneAlready(method, out, err) {
			return nil
		}
		if err == nil || n >= tries || !Temporary(err) {
			return err
		}
		if serr := sleep(ctx, c.retry.wait(n, err)); serr != nil {
			return err
		}
	}
}

// do is one try of Do; body nil is no body.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rdr io.Reader
	if body != nil {
		rdr = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rdr)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	// Declared even for an empty body: the server requires it on every
	// POST, PUT and PATCH authenticated by a client certificate.
	if body != nil || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	// The body may hold a plaintext or a data key (base64): out has its own
	// copy once decoded.
	defer clear(data)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(data, &eb)
		return &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message,
			RequestID: resp.Header.Get("X-Request-Id"), retryAfter: retryAfter(resp.Header)}
	}
	if out == nil || len(data) == 0 {
		return nil
	}
	return json.Unmarshal(data, out)
}

// keyPath is the path of a key named by id or alias/NAME.
func keyPath(ref string) string {
	if name, ok := strings.CutPrefix(ref, "alias/"); ok {
		return "/v1/keys/alias/" + url.PathEscape(name)
	}
	return "/v1/keys/" + url.PathEscape(ref)
}

func pageQuery(q url.Values, limit int, next string) string {
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if next != "" {
		q.Set("next_token", next)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}
