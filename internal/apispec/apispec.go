// Package apispec validates real traffic against the OpenAPI document
// (api/openapi.yaml): a test's HTTP client goes through Transport, and any
// response the document does not describe, or any request the document
// forbids that the server nevertheless accepted, fails the test. The
// document therefore cannot drift from the server.
package apispec

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/hsmkms/hsmkms/api"
)

var (
	once     sync.Once
	doc      *openapi3.T
	router   routers.Router
	setupErr error
)

// Load parses and validates the document once per test binary.
func Load() (*openapi3.T, routers.Router, error) {
	once.Do(func() {
		loader := openapi3.NewLoader()
		doc, setupErr = loader.LoadFromData(api.OpenAPI)
		if setupErr != nil {
			return
		}
		if setupErr = doc.Validate(context.Background()); setupErr != nil {
			return
		}
		// Match paths on any host: test servers listen on random ports.
		routed := *doc
		routed.Servers = nil
		router, setupErr = gorillamux.NewRouter(&routed)
	})
	return doc, router, setupErr
}

// Transport wraps rt (nil: http.DefaultTransport) so that every exchange
// is checked against the document.
func Transport(t testing.TB, rt http.RoundTripper) http.RoundTripper {
	t.Helper()
	if rt == nil {
		rt = http.DefaultTransport
	}
	if _, _, err := Load(); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	return &transport{t: t, rt: rt}
}

type transport struct {
	t  testing.TB
	rt http.RoundTripper
}

func (v *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		var err error
		if reqBody, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := v.rt.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	if err != nil {
		return resp, err
	}
	if problem := check(req, reqBody, resp, respBody); problem != "" {
		v.t.Errorf("OpenAPI: %s %s -> %d: %s\nresponse: %.300s", req.Method, req.URL.Path, resp.StatusCode, problem, respBody)
	}
	return resp, nil
}

// check returns what is wrong with one exchange, or "".
func check(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) string {
	_, rt, _ := Load()
	// The router reads the request: give it a copy with its own body.
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := rt.FindRoute(r)
	if err != nil {
		switch resp.StatusCode {
		case http.StatusNotFound, http.StatusMethodNotAllowed:
			return "" // an undocumented path that the server does not serve either
		case http.StatusUnauthorized:
			return "" // an unknown /v1 path is authenticated before it is refused
		}
		return fmt.Sprintf("the server answered a route the document does not have (%v)", err)
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	if reqErr != nil && resp.StatusCode < 300 {
		return fmt.Sprintf("the server accepted a request the document forbids: %v", reqErr)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode,
		Header: resp.Header, Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return fmt.Sprintf("the response does not match the document: %v", err)
	}
	return ""
}
