package service_test

import (
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

// BenchmarkVerifyAudit verifies a chain of BENCH_AUDIT_RECORDS records
// (default 100,000; docs/benchmarks.md reports 1,000,000) made by the real
// code: the store's append, in group commits of 512 as the audit writer
// makes them, sealed in the token every 10,000 records as the worker seals
// the head every second. It reports the peak of the live heap during
// verify beside the time.
func BenchmarkVerifyAudit(b *testing.B) {
	n := 100_000
	if s := os.Getenv("BENCH_AUDIT_RECORDS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n <= 0 {
			b.Fatalf("BENCH_AUDIT_RECORDS=%q", s)
		}
	}
	ctx := kmstest.Ctx(b)
	st := kmstest.Store(b)
	svc := service.New(st, kmstest.Token(b), service.Config{Logger: kmstest.Logger()})
	b.Cleanup(svc.Close)
	const group, sealEvery = 512, 10_000
	t0 := time.Now()
	for made := 0; made < n; {
		events := make([]*service.AuditEvent, min(group, n-made))
		for i := range events {
			events[i] = &service.AuditEvent{At: time.Now(), RequestID: "req-" + strconv.Itoa(made+i), Principal: "app",
				Action: service.ActEncrypt, KeyID: "5ea1a0d1-0000-4000-8000-00000000000a", KeyVersion: 1,
				Outcome: service.OutcomeAllowed, Source: "127.0.0.1"}
		}
		if err := st.AppendAudit(ctx, events, service.HashAuditEvent); err != nil {
			b.Fatal(err)
		}
		if made/sealEvery != (made+len(events))/sealEvery {
			if err := svc.Audit.SealAudit(ctx); err != nil {
				b.Fatal(err)
			}
		}
		made += len(events)
	}
	b.Logf("%d records appended in %v", n, time.Since(t0))
	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	b.ResetTimer()
	for range b.N {
		v, err := svc.Audit.VerifyAudit(ctx)
		if err != nil || !v.Intact || v.RecordsChecked < int64(n) {
			b.Fatalf("verify: %v %+v", err, v)
		}
	}
	b.StopTimer()
	close(stop)
	<-sampled
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/record")
}
