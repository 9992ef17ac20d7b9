package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	wrapping "github.com/hashicorp/go-kms-wrapping/v2"
	"github.com/hashicorp/go-kms-wrapping/wrappers/awskms/v2"
	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

func TestAWSConfig(t *testing.T) {
	c, err := loadConfig(nil, envOf())
	if err != nil || c.AWSRegion != "us-east-1" || c.AWSAccount != "000000000000" {
		t.Fatalf("defaults: %v %+v", err, c)
	}
	c, err = loadConfig(nil, envOf("KMS_AWS_REGION", "eu-west-3", "KMS_AWS_ACCOUNT_ID", "123456789012"))
	if err != nil || c.AWSRegion != "eu-west-3" || c.AWSAccount != "123456789012" {
		t.Fatalf("from the environment: %v %+v", err, c)
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"KMS_AWS_REGION", "Frankfurt"}, "aws-region"},
		{[]string{"KMS_AWS_REGION", "eu-west"}, "aws-region"},
		{[]string{"KMS_AWS_ACCOUNT_ID", "12345"}, "aws-account-id"},
		{[]string{"KMS_AWS_ACCOUNT_ID", "12345678901a"}, "aws-account-id"},
	} {
		if _, err := loadConfig(nil, envOf(tc.env...)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %s", tc.env, err, tc.want)
		}
	}
}

// TestAWSClientsThroughKmsd: kmsd itself serves the AWS protocol on its
// listener, with its configured region and account, to the AWS SDK set up
// the standard way (AWS_ENDPOINT_URL_KMS and the usual variables) and to
// the awskms wrapper of go-kms-wrapping (OpenBao's and Vault's seal).
func TestAWSClientsThroughKmsd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := startKmsd(t, kmsdEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "kms.db"),
		"KMS_AWS_REGION=ap-south-1", "KMS_AWS_ACCOUNT_ID=123456789012"))
	admin := client.New(p.url, adminToken, nil)
	ak, err := admin.CreateAccessKey(ctx, "admin")
	if err != nil {
		t.Fatal(err)
	}
	kmstest.Secret(ak.SecretAccessKey)

	// The SDK's own configuration chain; no file of this machine's.
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_KMS": p.url, "AWS_ACCESS_KEY_ID": ak.AccessKeyID, "AWS_SECRET_ACCESS_KEY": ak.SecretAccessKey,
		"AWS_REGION": "ap-south-1", "AWS_CONFIG_FILE": filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"), "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_PROFILE": "", "AWS_SESSION_TOKEN": "",
	} {
		t.Setenv(k, v)
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := kms.NewFromConfig(cfg)
	k, err := c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("seal")})
	if err != nil {
		t.Fatalf("CreateKey through AWS_ENDPOINT_URL_KMS: %v", err)
	}
	arn := aws.ToString(k.KeyMetadata.Arn)
	if want := "arn:aws:kms:ap-south-1:123456789012:key/" + aws.ToString(k.KeyMetadata.KeyId); arn != want {
		t.Fatalf("ARN %s, want %s", arn, want)
	}
	enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("through kmsd")})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "through kmsd" || aws.ToString(dec.KeyId) != arn {
		t.Fatalf("Decrypt: %v %q %s", err, dec.Plaintext, aws.ToString(dec.KeyId))
	}

	// The awskms seal: its own SDK (aws-sdk-go v1) and signer.
	w := awskms.NewWrapper()
	if _, err := w.SetConfig(ctx, wrapping.WithKeyId(arn), wrapping.WithDisallowEnvVars(true), wrapping.WithConfigMap(map[string]string{
		"region": "ap-south-1", "endpoint": p.url, "access_key": ak.AccessKeyID, "secret_key": ak.SecretAccessKey,
	})); err != nil {
		t.Fatalf("awskms SetConfig (DescribeKey through kmsd): %v", err)
	}
	root := []byte("the barrier's root key, 32 bytes")
	blob, err := w.Encrypt(ctx, root)
	if err != nil {
		t.Fatalf("awskms Encrypt: %v", err)
	}
	if blob.KeyInfo == nil || blob.KeyInfo.KeyId != arn {
		t.Errorf("awskms blob names key %+v, want %s", blob.KeyInfo, arn)
	}
	back, err := w.Decrypt(ctx, blob)
	if err != nil || !bytes.Equal(back, root) {
		t.Fatalf("awskms Decrypt: %v", err)
	}
	// A tampered wrapped key is refused by kmsd, not accepted.
	blob.KeyInfo.WrappedKey[len(blob.KeyInfo.WrappedKey)-1] ^= 1
	if _, err := w.Decrypt(ctx, blob); err == nil || !strings.Contains(err.Error(), "InvalidCiphertextException") {
		t.Errorf("awskms Decrypt of a tampered blob: %v", err)
	}
}
