package sigv4_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/hsmkms/hsmkms/awsapi/sigv4"
)

const (
	region = "eu-west-3"
	keyID  = "AKIAEXAMPLE0000001"
	secret = "correct-horse-battery-staple-0123456789"
)

// server verifies every request it receives with v and the one secret,
// answering the outcome: "ok", or the error.
func server(t *testing.T, v *sigv4.Verifier) (*httptest.Server, *error) {
	t.Helper()
	var got error
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s, err := v.Parse(r, body)
		if err == nil {
			if s.AccessKeyID != keyID {
				err = errors.New("unknown access key " + s.AccessKeyID)
			} else {
				err = s.Check([]byte(secret))
			}
		}
		got = err
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

func TestVerifyRequestsOfTheRealSigner(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	v := &sigv4.Verifier{Region: region, Service: "kms", Now: func() time.Time { return now },
		Required: []string{"x-amz-target"}}
	srv, got := server(t, v)

	body := []byte(`{"KeyId":"alias/app","Plaintext":"aGVsbG8="}`)
	cases := []struct {
		name string
		// signAt, secret, region and service of the signature
		signAt  time.Time
		secret  string
		region  string
		service string
		// sdkHeaders adds the headers aws-sdk-go-v2 signs besides the CLI's.
		sdkHeaders bool
		// before and after change the request before and after signing.
		before, after func(r *http.Request)
		sendBody      []byte
		want          error
	}{
		{name: "CLI header set", want: nil},
		{name: "Go SDK header set", sdkHeaders: true, want: nil},
		{name: "4 minutes behind", signAt: now.Add(-4 * time.Minute), want: nil},
		{name: "4 minutes ahead", signAt: now.Add(4 * time.Minute), want: nil},
		{name: "6 minutes behind", signAt: now.Add(-6 * time.Minute), want: sigv4.ErrInvalidSignature},
		{name: "6 minutes ahead", signAt: now.Add(6 * time.Minute), want: sigv4.ErrInvalidSignature},
		{name: "wrong secret", secret: "not-the-secret", want: sigv4.ErrInvalidSignature},
		{name: "other region", region: "us-east-1", want: sigv4.ErrInvalidSignature},
		{name: "other service", service: "s3", want: sigv4.ErrInvalidSignature},
		{name: "changed body", sendBody: []byte(`{"KeyId":"alias/ap0","Plaintext":"aGVsbG8="}`) /* same length */, want: sigv4.ErrInvalidSignature},
		{name: "changed signed header", after: func(r *http.Request) { r.Header.Set("Content-Type", "application/x-amz-json-1.0") },
			want: sigv4.ErrInvalidSignature},
		{name: "replayed with another target", after: func(r *http.Request) { r.Header.Set("X-Amz-Target", "TrentService.Decrypt") },
			want: sigv4.ErrInvalidSignature},
		{name: "unsigned target", before: func(r *http.Request) { r.Header.Del("X-Amz-Target") },
			after: func(r *http.Request) { r.Header.Set("X-Amz-Target", "TrentService.Encrypt") }, want: sigv4.ErrIncompleteSignature},
		{name: "no Authorization", after: func(r *http.Request) { r.Header.Del("Authorization") }, want: sigv4.ErrMissingAuthentication},
		{name: "other algorithm", after: func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), sigv4.Algorithm, "AWS4-HMAC-SHA512", 1))
		}, want: sigv4.ErrIncompleteSignature},
		{name: "signature cut", after: func(r *http.Request) {
			a := r.Header.Get("Authorization")
			r.Header.Set("Authorization", a[:len(a)-2])
		}, want: sigv4.ErrIncompleteSignature},
		{name: "no date", after: func(r *http.Request) { r.Header.Del("X-Amz-Date") }, want: sigv4.ErrIncompleteSignature},
		{name: "payload hash header lies", after: func(r *http.Request) { r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD") },
			want: sigv4.ErrInvalidSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-amz-json-1.1")
			req.Header.Set("X-Amz-Target", "TrentService.Encrypt")
			if tc.sdkHeaders {
				req.Header.Set("Amz-Sdk-Invocation-Id", "6a3c1d8e-0000-4000-8000-000000000001")
				req.Header.Set("Amz-Sdk-Request", "attempt=1; max=3")
			}
			if tc.before != nil {
				tc.before(req)
			}
			at, sec, reg, svc := now, secret, region, "kms"
			if !tc.signAt.IsZero() {
				at = tc.signAt
			}
			if tc.secret != "" {
				sec = tc.secret
			}
			if tc.region != "" {
				reg = tc.region
			}
			if tc.service != "" {
				svc = tc.service
			}
			sum := sha256.Sum256(body)
			creds := aws.Credentials{AccessKeyID: keyID, SecretAccessKey: sec}
			if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), svc, reg, at); err != nil {
				t.Fatal(err)
			}
			if tc.after != nil {
				tc.after(req)
			}
			if tc.sendBody != nil {
				req.Body = io.NopCloser(bytes.NewReader(tc.sendBody))
				req.ContentLength = int64(len(tc.sendBody))
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if tc.want == nil && *got != nil {
				t.Fatalf("refused a valid request: %v", *got)
			}
			if tc.want != nil && !errors.Is(*got, tc.want) {
				t.Fatalf("got %v, want %v", *got, tc.want)
			}
		})
	}
}
