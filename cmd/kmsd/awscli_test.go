package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// awsCLI is the AWS CLI to test: Debian's (v2, the CLI the issue names),
// or the first aws on PATH.
func awsCLI() string {
	if _, err := os.Stat("/usr/bin/aws"); err == nil {
		return "/usr/bin/aws"
	}
	p, _ := exec.LookPath("aws")
	return p
}

// TestAWSCLIAgainstKmsd follows docs/aws-compat.md with the real AWS CLI:
// an access key from kmsctl's API, then create-key, create-alias, encrypt
// and decrypt of a file with --endpoint-url.
func TestAWSCLIAgainstKmsd(t *testing.T) {
	cli := awsCLI()
	if cli == "" {
		t.Skip("no AWS CLI: apt-get install awscli (CI installs it) to run this test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := startKmsd(t, kmsdEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "kms.db")))
	ak, err := client.New(p.url, adminToken, nil).CreateAccessKey(ctx, "admin")
	if err != nil {
		t.Fatal(err)
	}
	kmstest.Secret(ak.SecretAccessKey)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "db-password.txt")
	if err := os.WriteFile(secretFile, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "AWS_ACCESS_KEY_ID=" + ak.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + ak.SecretAccessKey, "AWS_REGION=us-east-1", "AWS_DEFAULT_REGION=us-east-1",
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER="}
	aws := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, cli, append([]string{"--endpoint-url", p.url, "kms"}, args...)...)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s kms %s: %v\n%s", cli, strings.Join(args, " "), err, stderr.String())
		}
		return strings.TrimSpace(string(out))
	}
	id := aws("create-key", "--description", "files", "--query", "KeyMetadata.KeyId", "--output", "text")
	alias := "alias/files"
	aws("create-alias", "--alias-name", alias, "--target-key-id", id)
	blob, err := base64.StdEncoding.DecodeString(aws("encrypt", "--key-id", alias, "--plaintext", "fileb://"+secretFile,
		"--query", "CiphertextBlob", "--output", "text"))
	if err != nil {
		t.Fatal(err)
	}
	blobFile := filepath.Join(dir, "db-password.kms")
	if err := os.WriteFile(blobFile, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	plain, err := base64.StdEncoding.DecodeString(aws("decrypt", "--ciphertext-blob", "fileb://"+blobFile,
		"--query", "Plaintext", "--output", "text"))
	if err != nil || string(plain) != "hunter2\n" {
		t.Fatalf("%s: decrypt gave %q, %v", cli, plain, err)
	}
	if arn := aws("describe-key", "--key-id", alias, "--query", "KeyMetadata.Arn", "--output", "text"); arn != "arn:aws:kms:us-east-1:000000000000:key/"+id {
		t.Errorf("%s: ARN %s", cli, arn)
	}
}
