package awsapi_test

import (
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// BenchmarkAWSEncrypt is Encrypt through the AWS SDK in one process (SDK,
// SigV4 signing and verification, server, token): beside
// api.BenchmarkRESTEncrypt, what the AWS protocol costs on the request path.
func BenchmarkAWSEncrypt(b *testing.B) {
	s := start(b)
	ctx := kmstest.Ctx(b)
	k := s.accessKey(b, "admin")
	c := kms.New(s.kmsClient(k.AccessKeyID, k.SecretAccessKey).Options(), func(o *kms.Options) {
		o.HTTPClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	})
	key, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		b.Fatal(err)
	}
	pt := make([]byte, 64)
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: pt}); err != nil {
				b.Error(err)
				return
			}
		}
	})

}
