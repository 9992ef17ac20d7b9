package awsapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/awsapi/sigv4"
	"github.com/hsmkms/hsmkms/service"
	"github.com/labstack/echo/v4"
)

// TestErrorTable: every kind becomes one AWS exception and status; client
// errors are 400 (SDKs do not retry them), retryable ones 5xx; internal
// errors never show their text.
func TestErrorTable(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		name   string
	}{
		{sigv4.ErrMissingAuthentication, 400, "MissingAuthenticationTokenException"},
		{unauthenticated(fmt.Errorf("%w: x", sigv4.ErrIncompleteSignature)), 400, "IncompleteSignatureException"},
		{unauthenticated(fmt.Errorf("%w: x", sigv4.ErrInvalidSignature)), 400, "InvalidSignatureException"},
		{fmt.Errorf("%w: %w", service.ErrUnauthenticated, service.ErrUnknownAccessKey), 400, "UnrecognizedClientException"},
		{unsupportedf("operation Sign"), 400, "UnsupportedOperationException"},
		{checkAlgorithm("EncryptionAlgorithm", "RSAES_OAEP_SHA_1"), 400, "InvalidKeyUsageException"},
		{service.Validationf("bad"), 400, "ValidationException"},
		{service.ErrInvalidCiphertext, 400, "InvalidCiphertextException"},
		{&service.Error{Kind: service.ErrIncorrectKey, Message: "m"}, 400, "IncorrectKeyException"},
		{&service.Error{Kind: service.ErrAccessDenied, Message: "m"}, 400, "AccessDeniedException"},
		{&service.Error{Kind: service.ErrNotFound, Message: "m"}, 400, "NotFoundException"},
		{&service.Error{Kind: service.ErrAlreadyExists, Message: "m"}, 400, "AlreadyExistsException"},
		{&service.Error{Kind: service.ErrDisabled, Message: "m"}, 400, "DisabledException"},
		{&service.Error{Kind: service.ErrInvalidState, Message: "m"}, 400, "KMSInvalidStateException"},
		{&service.Error{Kind: service.ErrLimitExceeded, Message: "m"}, 400, "LimitExceededException"},
		{service.ErrUnavailable, 503, "DependencyTimeoutException"},
		{echo.ErrStatusRequestEntityTooLarge, 400, "ValidationException"},
		{echo.ErrServiceUnavailable, 503, "DependencyTimeoutException"},
		{errors.New("pq: relation does not exist"), 500, "KMSInternalException"},
	} {
		r := errorResponse(tc.err)
		var body struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatal(err)
		}
		if r.Status != tc.status || r.Code != tc.name || body.Type != tc.name || r.Header["X-Amzn-ErrorType"] != tc.name ||
			r.ContentType != contentJSON11 || body.Message == "" {
			t.Errorf("%v: %d %s %+v, want %d %s", tc.err, r.Status, r.Code, body, tc.status, tc.name)
		}
		if strings.Contains(body.Message, "pq:") || strings.HasPrefix(body.Message, service.ErrUnauthenticated.Error()) {
			t.Errorf("%v: message %q shows internals or a wrapping prefix", tc.err, body.Message)
		}
		if tc.status < 500 && tc.status != http.StatusBadRequest {
			t.Errorf("%v: a client error must be 400", tc.err)
		}
	}
}
