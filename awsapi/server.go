// Package awsapi serves the AWS KMS JSON protocol (TrentService) on kmsd's
// listener, so that the AWS SDKs and CLI, SOPS, the Encryption SDK and the
// awskms seals of OpenBao and Vault use hsmkms unchanged. It is a second
// wire format over the same service, never a second implementation of it:
// each operation decodes AWS's JSON, calls one service method, and encodes
// AWS's answer; every rule (states, policies, limits, audit) is the
// service's. Requests are authenticated with AWS Signature Version 4
// (package sigv4) under a principal's access key, and then act as that
// principal exactly as its bearer tokens do.
package awsapi

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/awsapi/sigv4"
	"github.com/labstack/echo/v4"
)

// Defaults of Config, and of kmsd's KMS_AWS_REGION and KMS_AWS_ACCOUNT_ID.
const (
	DefaultRegion  = "us-east-1"
	DefaultAccount = "000000000000"
)

// targetPrefix starts every X-Amz-Target of AWS KMS.
const targetPrefix = "TrentService."

// Content types of the AWS JSON protocol; 1.1 is what AWS KMS speaks.
const (
	contentJSON11 = "application/x-amz-json-1.1"
	contentJSON10 = "application/x-amz-json-1.0"
)

// Config configures the protocol.
type Config struct {
	Service Service
	// Region and Account appear in ARNs and in the credential scope a
	// signature must have (defaults DefaultRegion, DefaultAccount).
	Region  string
	Account string
	// Now is the clock of the signature's time check (default time.Now).
	Now func() time.Time
}

// server is the protocol's state.
type server struct {
	svc      Service
	region   string
	account  string
	verifier *sigv4.Verifier
}

// New returns the protocol for api.Config.Protocols: POST / with
// X-Amz-Target TrentService.<Operation>.
func New(cfg Config) api.Protocol {
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.Account == "" {
		cfg.Account = DefaultAccount
	}
	s := &server{svc: cfg.Service, region: cfg.Region, account: cfg.Account,
		verifier: &sigv4.Verifier{Region: cfg.Region, Service: "kms", Now: cfg.Now,
			Required: []string{"x-amz-target"}}}
	return api.Protocol{Method: http.MethodPost, Path: "/", Action: action, Handler: s.serve, Error: errorResponse}
}

// operationOf is the operation an X-Amz-Target names, or "".
func operationOf(r *http.Request) string {
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	if !ok {
		return ""
	}
	return op
}

// action is the audit action of a request: the one the service authorises
// for its operation, or api.ActionUnknown.
func action(r *http.Request) string {
	if op, ok := operations[operationOf(r)]; ok {
		return op.action
	}
	return api.ActionUnknown
}

// serve authenticates a request, runs its operation and answers in JSON.
func (s *server) serve(c echo.Context) error {
	c.Response().Header().Set("X-Amzn-RequestId", api.RequestID(c))
	r := c.Request()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) || errors.Is(err, echo.ErrStatusRequestEntityTooLarge) {
			return echo.ErrStatusRequestEntityTooLarge
		}
		return validationf("cannot read the request body")
	}
	signed, err := s.verifier.Parse(r, body)
	if err != nil {
		return unauthenticated(err)
	}
	caller, err := s.svc.Access.AuthenticateAccessKey(r.Context(), signed.AccessKeyID, signed.Check)
	if err != nil {
		return err
	}
	api.SetCaller(c, caller)

	name := operationOf(r)
	op, ok := operations[name]
	if !ok {
		if name == "" {
			return unsupportedf("the request names no operation: X-Amz-Target must be %s<Operation>", targetPrefix)
		}
		return unsupportedf("operation %s is not supported by hsmkms (docs/aws-compat.md lists those that are)", clip(name))
	}
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (ct != contentJSON11 && ct != contentJSON10) {
		return validationf("Content-Type must be %s (or %s)", contentJSON11, contentJSON10)
	}
	out, err := op.run(s, c, body)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, ct, out)
}

// clip keeps client-supplied text in messages short.
func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
