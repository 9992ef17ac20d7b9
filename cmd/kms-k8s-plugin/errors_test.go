package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hsmkms/hsmkms/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Each answer of kmsd becomes the gRPC code the apiserver can act on, with
// kmsd's code and message (never more).
func TestGRPCErrors(t *testing.T) {
	cases := []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{&client.Error{Status: 401, Code: "UnauthenticatedException", Message: "no"}, codes.Unauthenticated, "kmsd: UnauthenticatedException: no"},
		{&client.Error{Status: 403, Code: "AccessDeniedException", Message: "no"}, codes.PermissionDenied, "kmsd: AccessDeniedException: no"},
		{&client.Error{Status: 404, Code: "NotFoundException", Message: "no"}, codes.NotFound, "kmsd: NotFoundException: no"},
		{&client.Error{Status: 400, Code: "InvalidCiphertextException", Message: "bad"}, codes.InvalidArgument, "kmsd: InvalidCiphertextException: bad"},
		{&client.Error{Status: 400, Code: "ValidationException", Message: "bad"}, codes.InvalidArgument, "kmsd: ValidationException: bad"},
		{&client.Error{Status: 409, Code: "ConflictException", Message: "busy"}, codes.Aborted, "kmsd: ConflictException: busy"},
		{&client.Error{Status: 409, Code: "DisabledException", Message: "off"}, codes.FailedPrecondition, "kmsd: DisabledException: off"},
		{&client.Error{Status: 409, Code: "KMSInvalidStateException", Message: "gone"}, codes.FailedPrecondition, "kmsd: KMSInvalidStateException: gone"},
		{&client.Error{Status: 429, Code: "LimitExceededException", Message: "slow"}, codes.ResourceExhausted, "kmsd: LimitExceededException: slow"},
		{&client.Error{Status: 503, Code: "KeyUnavailableException", Message: "token"}, codes.Unavailable, "kmsd: KeyUnavailableException: token"},
		{&client.Error{Status: 500, Code: "KMSInternalException", Message: "?"}, codes.Internal, "kmsd: KMSInternalException: ?"},
		{fmt.Errorf("post: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "kmsd did not answer in time"},
		{fmt.Errorf("post: %w", context.Canceled), codes.Canceled, "canceled"},
		{errors.New("dial tcp: connection refused"), codes.Unavailable, "kmsd unreachable: dial tcp: connection refused"},
	}
	for _, c := range cases {
		got := status.Convert(grpcError(c.err))
		if got.Code() != c.code || got.Message() != c.msg {
			t.Errorf("%v: %v %q, want %v %q", c.err, got.Code(), got.Message(), c.code, c.msg)
		}
	}
}
