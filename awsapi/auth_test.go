package awsapi_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// TestSignatureFailures: what the SDK gets for a wrong secret, an unknown
// or deleted access key, and for requests that are not signed as they
// must be; every one is a 400 with AWS's exception name, and none acts.
func TestSignatureFailures(t *testing.T) {
	s := start(t)
	ctx := kmstest.Ctx(t)
	k := s.accessKey(t, "admin")

	wrong := []byte(k.SecretAccessKey)
	wrong[len(wrong)-1] ^= 1 // another character, always
	_, err := s.kmsClient(k.AccessKeyID, string(wrong)).CreateKey(ctx, &kms.CreateKeyInput{})
	wantCode(t, "a wrong secret", err, "InvalidSignatureException")
	_, err = s.kmsClient("AKIAAAAAAAAAAAAAAAAA", k.SecretAccessKey).CreateKey(ctx, &kms.CreateKeyInput{})
	wantCode(t, "an unknown access key", err, "UnrecognizedClientException")
	_, err = s.kmsClient("not-an-access-key", k.SecretAccessKey).CreateKey(ctx, &kms.CreateKeyInput{})
	wantCode(t, "a malformed access key id", err, "UnrecognizedClientException")
	_, err = kms.New(kms.Options{Region: "us-west-2", BaseEndpoint: aws.String(s.url), Retryer: aws.NopRetryer{},
		Credentials: s.kmsClient(k.AccessKeyID, k.SecretAccessKey).Options().Credentials}).CreateKey(ctx, &kms.CreateKeyInput{})
	wantCode(t, "a signature scoped to another region", err, "InvalidSignatureException")

	// Raw requests: the signer signs, then the request is changed.
	sign := func(target, body string, at time.Time, edit func(*http.Request)) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, s.url+"/", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		if target != "" {
			req.Header.Set("X-Amz-Target", target)
		}
		sum := sha256.Sum256([]byte(body))
		creds := aws.Credentials{AccessKeyID: k.AccessKeyID, SecretAccessKey: k.SecretAccessKey}
		if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "kms", region, at); err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			edit(req)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var e struct {
			Type string `json:"__type"`
		}
		b, _ := io.ReadAll(res.Body)
		_ = json.Unmarshal(b, &e)
		return res.StatusCode, e.Type
	}
	create := `{"Description":"made"}`
	for _, tc := range []struct {
		name   string
		target string
		body   string
		at     time.Time
		edit   func(*http.Request)
		want   string
	}{
		{"clock 6 minutes behind", "TrentService.CreateKey", create, time.Now().Add(-6 * time.Minute), nil, "InvalidSignatureException"},
		{"clock 6 minutes ahead", "TrentService.CreateKey", create, time.Now().Add(6 * time.Minute), nil, "InvalidSignatureException"},
		{"a changed body", "TrentService.CreateKey", create, time.Now(), func(r *http.Request) {
			b := `{"Description":"evil"}`
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader(b)), int64(len(b))
		}, "InvalidSignatureException"},
		{"a changed signed header", "TrentService.CreateKey", create, time.Now(), func(r *http.Request) {
			r.Header.Set("Content-Type", "application/x-amz-json-1.0")
		}, "InvalidSignatureException"},
		{"replayed as another operation", "TrentService.ListKeys", `{}`, time.Now(), func(r *http.Request) {
			r.Header.Set("X-Amz-Target", "TrentService.CreateKey")
		}, "InvalidSignatureException"},
		{"no signature", "TrentService.CreateKey", create, time.Now(), func(r *http.Request) { r.Header.Del("Authorization") },
			"MissingAuthenticationTokenException"},
		{"a truncated signature", "TrentService.CreateKey", create, time.Now(), func(r *http.Request) {
			r.Header.Set("Authorization", strings.TrimSuffix(r.Header.Get("Authorization"), r.Header.Get("Authorization")[len(r.Header.Get("Authorization"))-4:]))
		}, "IncompleteSignatureException"},
		{"a bearer token instead", "TrentService.CreateKey", create, time.Now(), func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer "+kmstest.AdminToken)
		}, "IncompleteSignatureException"},
	} {
		if status, name := sign(tc.target, tc.body, tc.at, tc.edit); status != http.StatusBadRequest || name != tc.want {
			t.Errorf("%s: %d %s, want 400 %s", tc.name, status, name, tc.want)
		}
	}
	// An unsigned X-Amz-Target (added after signing) cannot choose the
	// operation.
	status, name := sign("", create, time.Now(), func(r *http.Request) { r.Header.Set("X-Amz-Target", "TrentService.CreateKey") })
	if status != http.StatusBadRequest || name != "IncompleteSignatureException" {
		t.Errorf("signed without X-Amz-Target: %d %s", status, name)
	}
	if keys, err := s.admin.ListKeys(ctx, 0, ""); err != nil || len(keys.Keys) != 0 {
		t.Fatalf("refused requests made keys: %v %+v", err, keys)
	}
	// A valid signature on an unknown operation names it.
	if status, name := sign("TrentService.Frobnicate", `{}`, time.Now(), nil); status != 400 || name != "UnsupportedOperationException" {
		t.Errorf("unknown operation: %d %s", status, name)
	}

	// A deleted access key stops at once.
	c := s.kmsClient(k.AccessKeyID, k.SecretAccessKey)
	if _, err := c.ListKeys(ctx, &kms.ListKeysInput{}); err != nil {
		t.Fatal(err)
	}
	if err := s.admin.DeleteAccessKey(ctx, "admin", k.AccessKeyID); err != nil {
		t.Fatal(err)
	}
	_, err = c.ListKeys(ctx, &kms.ListKeysInput{})
	wantCode(t, "a deleted access key", err, "UnrecognizedClientException")
}

// TestSignedRequestsActAsTheirPrincipal: an access key's requests have its
// principal's policies and audit records (principal, source, request id).
func TestSignedRequestsActAsTheirPrincipal(t *testing.T) {
	s := start(t)
	ctx := kmstest.Ctx(t)
	admin := s.kmsFor(t, "admin")
	mine := aws.ToString(mustKey(t, admin, "alias/app-orders"))
	theirs := aws.ToString(mustKey(t, admin, "alias/billing"))
	doc := client.PolicyDocument{Statements: []client.Statement{{Effect: "allow",
		Actions: []string{"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"}, Resources: []string{"alias/app-*"}}}}
	if _, err := s.admin.PutPolicy(ctx, "app", doc); err != nil {
		t.Fatal(err)
	}
	if _, err := s.admin.CreatePrincipal(ctx, client.CreatePrincipalRequest{Name: "app", Policies: []string{"app"}}); err != nil {
		t.Fatal(err)
	}
	appKey := s.accessKey(t, "app")
	app := s.kmsClient(appKey.AccessKeyID, appKey.SecretAccessKey)

	enc, err := app.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/app-orders"), Plaintext: []byte("order 1")})
	if err != nil {
		t.Fatalf("app encrypts under its key: %v", err)
	}
	reqID, _ := awsmiddleware.GetRequestIDMetadata(enc.ResultMetadata)
	if _, err := app.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); err != nil {
		t.Fatalf("app decrypts its blob: %v", err)
	}
	_, err = app.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(theirs), Plaintext: []byte("x")})
	wantCode(t, "app encrypts under another key", err, "AccessDeniedException")
	other, _ := admin.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(theirs), Plaintext: []byte("bill")})
	_, err = app.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: other.CiphertextBlob})
	wantCode(t, "app decrypts another key's blob", err, "AccessDeniedException")
	_, err = app.CreateKey(ctx, &kms.CreateKeyInput{})
	wantCode(t, "app creates a key", err, "AccessDeniedException")
	_, err = app.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/app-missing")})
	wantCode(t, "app describes (not allowed) a missing key", err, "AccessDeniedException")

	recs, err := s.admin.ListAudit(ctx, client.AuditFilter{Principal: "app"}, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	var allowed, denied int
	for _, r := range recs.Records {
		if r.Source != "127.0.0.1" {
			t.Errorf("record %d: source %q", r.Seq, r.Source)
		}
		// The access key's id, never its secret.
		if r.Credential != "access_key:"+appKey.AccessKeyID || strings.Contains(r.Detail, appKey.SecretAccessKey) {
			t.Errorf("record %d: credential %q, detail %q", r.Seq, r.Credential, r.Detail)
		}
		switch {
		case r.Action == "kms:Encrypt" && r.Outcome == "allowed" && r.KeyID == mine:
			allowed++
			if r.RequestID != reqID || reqID == "" {
				t.Errorf("encrypt record's request id %q, the SDK saw %q", r.RequestID, reqID)
			}
		case r.Outcome == "denied" && r.ErrorCode == "AccessDeniedException":
			denied++
		}
	}
	if allowed != 1 || denied != 4 {
		t.Errorf("app's records: %d allowed encrypts, %d denials, want 1 and 4: %+v", allowed, denied, recs.Records)
	}
	// Refused signatures are recorded too, as denied, without a principal.
	_, _ = s.kmsClient("AKIAAAAAAAAAAAAAAAAA", "x").ListKeys(ctx, &kms.ListKeysInput{})
	all, err := s.admin.ListAudit(ctx, client.AuditFilter{}, 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	last := all.Records[len(all.Records)-1]
	if last.Action != "kms:ListKeys" || last.Outcome != "denied" || last.ErrorCode != "UnrecognizedClientException" || last.Principal != "" {
		t.Errorf("record of an unknown access key: %+v", last)
	}
	if v, err := s.admin.VerifyAudit(ctx); err != nil || !v.Intact {
		t.Errorf("audit chain: %v %+v", err, v)
	}

}

// mustKey creates a key with an alias and returns its id.
func mustKey(t *testing.T, c *kms.Client, alias string) *string {
	t.Helper()
	ctx := kmstest.Ctx(t)
	k, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: k.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	return k.KeyMetadata.KeyId
}

// TestTokenOutageIsRetryable: a token that cannot answer is a 5xx the SDKs
// retry (DependencyTimeoutException), and the next attempt succeeds.
func TestTokenOutageIsRetryable(t *testing.T) {
	tok := kmstest.NewFaultToken(kmstest.Token(t))
	s := startOn(t, tok)
	ctx := kmstest.Ctx(t)
	c := s.kmsFor(t, "admin")
	id := mustKey(t, c, "alias/k")
	tok.FailNext("Encrypt", hsm.ErrUnavailable)
	_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("x")})
	var re interface{ HTTPStatusCode() int }
	if code(err) != "DependencyTimeoutException" || !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusServiceUnavailable {
		t.Fatalf("token outage: %v", err)
	}
	// The SDK's standard retryer retries it.
	tok.FailNext("Encrypt", hsm.ErrUnavailable)
	retrying := kms.New(c.Options(), func(o *kms.Options) { o.Retryer = retry.NewStandard() })
	if _, err := retrying.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("x")}); err != nil {
		t.Fatalf("the SDK's retry after an outage: %v", err)
	}
}
