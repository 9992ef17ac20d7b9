package service_test

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

// Two replicas on one store whose first seals run at the same instant make
// one seal key between them: the second to take the lock finds the first
// one's claim (kms:CreateAuditSealKey). Every seal names that key, and the
// trail verifies on both. Before the claim, each made a key of its own
// (two keys in the token; and seals under one that the other replica's
// view of the token might not show).
func TestReplicasSealWithOneKey(t *testing.T) {
	for round := 0; round < 10; round++ {
		st := kmstest.Store(t)
		a := kmstest.Start(t, kmstest.Options{Store: st})
		b := kmstest.Start(t, kmstest.Options{Store: st})
		ctx := kmstest.Ctx(t)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, s := range []*service.Service{a.Service, b.Service} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if err := s.Audit.SealAudit(ctx); err != nil {
					t.Errorf("round %d: seal: %v", round, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		// Each seals again after the other, so that both seal with the
		// key they chose.
		for _, s := range []*service.Service{a.Service, b.Service, a.Service, b.Service} {
			_, act := service.StartActivity(ctx, "sealkey-test", "", "kms:DescribeKey")
			if err := s.Audit.Record(ctx, act, service.OutcomeAllowed, ""); err != nil {
				t.Fatal(err)
			}
			if err := s.Audit.SealAudit(ctx); err != nil {
				t.Fatalf("round %d: seal: %v", round, err)
			}
		}
		rows, err := st.ListAudit(ctx, service.AuditFilter{Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		keys, claims, seals := map[string]bool{}, 0, 0
		for _, r := range rows {
			if r.Action != service.ActAuditSeal && r.Action != service.ActAuditSealKey {
				continue
			}
			var d struct {
				Key string `json:"key"`
			}
			if err := json.Unmarshal([]byte(r.Detail), &d); err != nil {
				t.Fatal(err)
			}
			keys[d.Key] = true
			if r.Action == service.ActAuditSealKey {
				claims++
			} else {
				seals++
			}
		}
		if len(keys) != 1 || claims > 1 || seals < 4 {
			t.Fatalf("round %d: %d seal keys named (%v), %d claims, %d seals; want one key, at most one claim, seals", round, len(keys), keys, claims, seals)
		}
		for name, s := range map[string]*service.Service{"A": a.Service, "B": b.Service} {
			v, err := s.Audit.VerifyAudit(ctx)
			if err != nil || !v.Intact {
				t.Fatalf("round %d: verify on %s: %+v, %v", round, name, v, err)
			}
		}
	}
}
