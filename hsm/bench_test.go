package hsm

import (
	"context"
	"testing"
)

// The raw token ceiling: AES-256-GCM of 64 bytes through the pool and the
// handle cache, from GOMAXPROCS goroutines. `make bench` runs these; the
// service's own numbers cannot exceed them.

func BenchmarkEncrypt(b *testing.B) {
	p := sharedToken(b)
	ref := generated(b, p)
	ctx := context.Background()
	pt, aad := make([]byte, 64), []byte("bench|key|v1")
	if _, _, err := p.Encrypt(ctx, ref, pt, aad); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(pt)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := p.Encrypt(ctx, ref, pt, aad); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkDecrypt(b *testing.B) {
	p := sharedToken(b)
	ref := generated(b, p)
	ctx := context.Background()
	aad := []byte("bench|key|v1")
	iv, ct, err := p.Encrypt(ctx, ref, make([]byte, 64), aad)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Decrypt(ctx, ref, iv, ct, aad); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
