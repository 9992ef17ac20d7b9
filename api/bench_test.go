package api_test

import (
	"net/http"
	"testing"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// BenchmarkRESTEncrypt is REST encrypt in one process (client, server,
// token): for profiling the request path. make bench measures the real
// thing against a kmsd process.
func BenchmarkRESTEncrypt(b *testing.B) {
	s := kmstest.Start(b, kmstest.Options{})
	ctx := kmstest.Ctx(b)
	if _, err := s.Client.CreateKey(ctx, client.CreateKeyRequest{Alias: "alias/bench"}); err != nil {
		b.Fatal(err)
	}
	// A plain client: the validating one of the tests would be profiled too.
	c := client.New(s.URL, kmstest.AdminToken, &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}})
	pt := make([]byte, 64)
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Encrypt(ctx, "alias/bench", pt, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
