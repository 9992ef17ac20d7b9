package service_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

var provisionSpec = []service.ProvisionKey{
	{Alias: "alias/ci-app", Description: "ci", AutomaticRotation: true, RotationInterval: 90 * 24 * time.Hour,
		Tags: map[string]string{"team": "payments"}, ExtraAliases: []string{"alias/ci-app-legacy"}},
	{Alias: "alias/ci-other"},
}

// Provisioning creates what is missing, once, and leaves what exists alone.
func TestProvisionIsIdempotent(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ctx := kmstest.Ctx(t)
	first, err := s.Service.Provision(ctx, provisionSpec)
	if err != nil {
		t.Fatal(err)
	}
	if !first[0].Created || !first[1].Created {
		t.Fatalf("first run created %+v", first)
	}
	k, err := s.Service.Keys.DescribeKey(ctx, "alias/ci-app-legacy")
	if err != nil || k.ID != first[0].KeyID || !k.RotationEnabled || k.RotationInterval != 90*24*time.Hour || k.Tags["team"] != "payments" {
		t.Fatalf("provisioned key: %v %+v", err, k)
	}
	// An operator changes the policy; provisioning again leaves it.
	if _, err := s.Service.Keys.PutRotationPolicy(ctx, "alias/ci-app", service.RotationPolicyInput{AutomaticRotation: false}); err != nil {
		t.Fatal(err)
	}
	second, err := s.Service.Provision(ctx, provisionSpec)
	if err != nil {
		t.Fatal(err)
	}
	for i := range second {
		if second[i].Created || second[i].KeyID != first[i].KeyID {
			t.Errorf("second run: %+v, want the same keys, none created", second[i])
		}
	}
	if k, _ := s.Service.Keys.DescribeKey(ctx, "alias/ci-app"); k.RotationEnabled {
		t.Error("provisioning overrode an operator's change")
	}
	keys, _, err := s.Service.Keys.ListKeys(ctx, 100, "")
	if err != nil || len(keys) != 2 {
		t.Fatalf("%d keys after two runs (%v), want 2", len(keys), err)
	}
}

// Replicas starting together on one database create each key once.
func TestProvisionConcurrently(t *testing.T) {
	st := kmstest.Store(t)
	a := kmstest.Start(t, kmstest.Options{Store: st})
	b := kmstest.Start(t, kmstest.Options{Store: st})
	ctx := kmstest.Ctx(t)
	// Rounds of fresh aliases: a provisioner checking a key's aliases
	// while another binds the key's alias and then its extra alias must
	// not take the extra alias for another key's (it did about 1 run in
	// 40 with one round).
	const rounds = 8
	for round := range rounds {
		spec := make([]service.ProvisionKey, len(provisionSpec))
		for i, k := range provisionSpec {
			k.Alias = fmt.Sprintf("%s-%d", k.Alias, round)
			k.ExtraAliases = nil
			for _, e := range provisionSpec[i].ExtraAliases {
				k.ExtraAliases = append(k.ExtraAliases, fmt.Sprintf("%s-%d", e, round))
			}
			spec[i] = k
		}
		var wg sync.WaitGroup
		for _, s := range []*kmstest.Stack{a, b, a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Service.Provision(ctx, spec); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	keys, _, err := a.Service.Keys.ListKeys(ctx, 100, "")
	if err != nil || len(keys) != rounds*len(provisionSpec) {
		t.Fatalf("%d keys after concurrent provisioning (%v), want %d", len(keys), err, rounds*len(provisionSpec))
	}
	for round := range rounds {
		for _, k := range provisionSpec {
			main, err := a.Service.Keys.DescribeKey(ctx, fmt.Sprintf("%s-%d", k.Alias, round))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range k.ExtraAliases {
				extra, err := a.Service.Keys.DescribeKey(ctx, fmt.Sprintf("%s-%d", e, round))
				if err != nil || extra.ID != main.ID {
					t.Errorf("round %d: %s names %v (%v), want %s's key %s", round, e, extra, err, k.Alias, main.ID)
				}
			}
		}
	}
}

// Bad specs are refused before anything is created; an extra alias that
// names another key is not moved.
func TestProvisionRefusals(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ctx := kmstest.Ctx(t)
	for _, spec := range [][]service.ProvisionKey{
		{{Alias: "no-prefix"}},
		{{Alias: "alias/x"}, {Alias: "alias/x"}},
		{{Alias: "alias/y", ExtraAliases: []string{"alias/y"}}},
		{{Alias: "alias/z", RotationInterval: time.Hour, AutomaticRotation: true}},
	} {
		if _, err := s.Service.Provision(ctx, spec); err == nil {
			t.Errorf("spec %+v accepted", spec)
		}
	}
	other, err := s.Service.Keys.CreateKey(ctx, service.CreateKeyInput{Alias: "alias/taken"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Service.Provision(ctx, []service.ProvisionKey{{Alias: "alias/new", ExtraAliases: []string{"alias/taken"}}})
	if !errors.Is(err, service.ErrAlreadyExists) {
		t.Errorf("extra alias of another key: %v, want AlreadyExists", err)
	}
	if k, _ := s.Service.Keys.DescribeKey(ctx, "alias/taken"); k.ID != other.ID {
		t.Error("provisioning moved an alias")
	}

	// A file whose later key is bad creates nothing at all: not the good
	// keys before it, not the bad key itself.
	before, _, err := s.Service.Keys.ListKeys(ctx, 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, spec := range map[string][]service.ProvisionKey{
		"reserved extra alias":       {{Alias: "alias/good1"}, {Alias: "alias/app", ExtraAliases: []string{"alias/managed/x"}}},
		"extra alias of another key": {{Alias: "alias/good2"}, {Alias: "alias/app2", ExtraAliases: []string{"alias/taken"}}},
		"bad tag":                    {{Alias: "alias/good3"}, {Alias: "alias/app3", Tags: map[string]string{"": "x"}}},
		"interval out of bounds":     {{Alias: "alias/good4"}, {Alias: "alias/app4", AutomaticRotation: true, RotationInterval: time.Hour}},
	} {
		if _, err := s.Service.Provision(ctx, spec); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	after, _, err := s.Service.Keys.ListKeys(ctx, 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("refused provisioning files created %d keys", len(after)-len(before))
	}
}
