package awsapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/awsapi/sigv4"
	"github.com/hsmkms/hsmkms/service"
	"github.com/labstack/echo/v4"
)

// Errors of the protocol itself, beside the service's.
var (
	// errUnsupported: an operation, or an option of one, that hsmkms does
	// not offer (UnsupportedOperationException).
	errUnsupported = errors.New("unsupported")
	// errKeyUsage: an encryption algorithm other than SYMMETRIC_DEFAULT
	// (InvalidKeyUsageException).
	errKeyUsage = errors.New("invalid key usage")
)

func unsupportedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUnsupported, fmt.Sprintf(format, args...))
}

func validationf(format string, args ...any) error { return service.Validationf(format, args...) }

// unauthenticated marks a signature's failure as an authentication
// failure, so that the audit record says "denied", as for a bad token.
func unauthenticated(err error) error { return fmt.Errorf("%w: %w", service.ErrUnauthenticated, err) }

// awsErrors maps every error kind to AWS's exception name and status: the
// one place where errors become this protocol's answers. First match wins.
// Client errors are 400 as AWS answers them (SDKs retry only 5xx and
// throttling); 5xx only for what is safe to retry.
var awsErrors = []struct {
	kind   error
	status int
	name   string
}{
	{sigv4.ErrMissingAuthentication, http.StatusBadRequest, "MissingAuthenticationTokenException"},
	{sigv4.ErrIncompleteSignature, http.StatusBadRequest, "IncompleteSignatureException"},
	{sigv4.ErrInvalidSignature, http.StatusBadRequest, "InvalidSignatureException"},
	{service.ErrUnknownAccessKey, http.StatusBadRequest, "UnrecognizedClientException"},
	{service.ErrUnauthenticated, http.StatusBadRequest, "UnrecognizedClientException"},
	{errUnsupported, http.StatusBadRequest, "UnsupportedOperationException"},
	{errKeyUsage, http.StatusBadRequest, "InvalidKeyUsageException"},
	{service.ErrValidation, http.StatusBadRequest, "ValidationException"},
	{service.ErrInvalidCiphertext, http.StatusBadRequest, "InvalidCiphertextException"},
	{service.ErrIncorrectKey, http.StatusBadRequest, "IncorrectKeyException"},
	{service.ErrAccessDenied, http.StatusBadRequest, "AccessDeniedException"},
	{service.ErrNotFound, http.StatusBadRequest, "NotFoundException"},
	{service.ErrAlreadyExists, http.StatusBadRequest, "AlreadyExistsException"},
	{service.ErrDisabled, http.StatusBadRequest, "DisabledException"},
	{service.ErrInvalidState, http.StatusBadRequest, "KMSInvalidStateException"},
	{service.ErrLimitExceeded, http.StatusBadRequest, "LimitExceededException"},
	{service.ErrUnavailable, http.StatusServiceUnavailable, "DependencyTimeoutException"},
}

// Names of the answers that are not in the table.
const (
	nameValidation = "ValidationException"
	nameTimeout    = "DependencyTimeoutException"
	nameInternal   = "KMSInternalException"
)

// classify returns the status, exception name and a client-safe message.
// Unknown errors are internal: their text goes to the log, never out.
func classify(err error) (int, string, string) {
	for _, e := range awsErrors {
		if errors.Is(err, e.kind) {
			return e.status, e.name, message(err)
		}
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch {
		case he.Code == http.StatusRequestEntityTooLarge:
			return http.StatusBadRequest, nameValidation, "request body is larger than the limit"
		case he.Code == http.StatusServiceUnavailable:
			return http.StatusServiceUnavailable, nameTimeout, "request timed out; safe to retry"
		case he.Code >= 400 && he.Code < 500:
			return http.StatusBadRequest, nameValidation, http.StatusText(he.Code)
		}
	}
	return http.StatusInternalServerError, nameInternal, "internal error; the request id identifies it in the server log"
}

// message is err's text without the wrapping kinds' prefixes that say
// nothing to an AWS client ("unauthenticated: unsupported: ...").
func message(err error) string {
	var se *service.Error
	if errors.As(err, &se) {
		return se.Message
	}
	msg := err.Error()
	for _, prefix := range []string{service.ErrUnauthenticated.Error() + ": ", errUnsupported.Error() + ": "} {
		if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
			msg = msg[len(prefix):]
		}
	}
	return msg
}

// errorResponse is the protocol's api.Protocol.Error: AWS's JSON error
// body, {"__type": name, "message": text}, and its X-Amzn-ErrorType.
func errorResponse(err error) api.ErrorResponse {
	status, name, msg := classify(err)
	body, _ := json.Marshal(struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{name, msg})
	return api.ErrorResponse{Status: status, ContentType: contentJSON11, Code: name,
		Header: map[string]string{"X-Amzn-ErrorType": name}, Body: body}
}
