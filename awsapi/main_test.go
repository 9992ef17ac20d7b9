package awsapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/awsapi"
	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
	"github.com/hsmkms/hsmkms/service"
)

// TestMain runs the suite on a throwaway token, then scans every log line
// for plaintexts, secrets and the PIN.
func TestMain(m *testing.M) {
	code := softhsmtest.Run(m)
	if code == 0 && kmstest.LogBytes() > 0 {
		if err := kmstest.CheckLogs(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// A region and account other than the defaults, so that ARNs prove they
// come from the configuration.
const (
	region  = "eu-central-1"
	account = "111122223333"
)

// stack is kmsd's HTTP server with the AWS protocol, on the real token and
// a real database (PostgreSQL with KMS_TEST_STORE=postgres).
type stack struct {
	svc   *service.Service
	url   string
	admin *client.Client
}

func start(t testing.TB) *stack {
	t.Helper()
	return startOn(t, kmstest.Token(t))
}

// startOn is start on tok (a fault injector around the real token).
func startOn(t testing.TB, tok hsm.Token) *stack {
	t.Helper()
	log := kmstest.Logger()
	svc := service.New(kmstest.Store(t), tok, service.Config{Logger: log})
	t.Cleanup(svc.Close)
	kmstest.Secret(kmstest.AdminToken)
	if _, err := svc.Access.Bootstrap(context.Background(), kmstest.AdminToken); err != nil {
		t.Fatal(err)
	}
	aws := awsapi.New(awsapi.Config{Service: awsapi.Parts(svc), Region: region, Account: account})
	srv := httptest.NewServer(api.New(api.Config{Service: svc, Logger: log, Protocols: []api.Protocol{aws}}))
	t.Cleanup(srv.Close)
	return &stack{svc: svc, url: srv.URL, admin: client.New(srv.URL, kmstest.AdminToken, nil)}
}

// accessKey makes an access key for principal.
func (s *stack) accessKey(t testing.TB, principal string) *client.NewAccessKey {
	t.Helper()
	k, err := s.admin.CreateAccessKey(kmstest.Ctx(t), principal)
	if err != nil {
		t.Fatal(err)
	}
	kmstest.Secret(k.SecretAccessKey)
	return k
}

// kmsClient is the real AWS SDK client for id and secret, against the
// stack (BaseEndpoint), without retries.
func (s *stack) kmsClient(id, secret string) *kms.Client {
	return kms.New(kms.Options{Region: region, BaseEndpoint: aws.String(s.url),
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""),
		Retryer:     aws.NopRetryer{}})
}

// kmsFor is kmsClient with a new access key of principal.
func (s *stack) kmsFor(t testing.TB, principal string) *kms.Client {
	t.Helper()
	k := s.accessKey(t, principal)
	return s.kmsClient(k.AccessKeyID, k.SecretAccessKey)
}

// code is the AWS error code (exception name) of err, or "".
func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func keyARN(id string) string     { return "arn:aws:kms:" + region + ":" + account + ":key/" + id }
func aliasARN(name string) string { return "arn:aws:kms:" + region + ":" + account + ":" + name }
