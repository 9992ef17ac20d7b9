package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
	"github.com/hsmkms/hsmkms/service"
)

// TestTwoInstallationsStartTogetherOnOneToken: two kmsd with two SQLite
// databases (two installations: no database lock spans them, one with
// auditing off as the benchmark runs it) started at the same instant on
// one fresh token, a few times. Both make the service's fixed-name MAC
// keys at once (the bearer-token key at start, the access-key key on the
// first access key, asked of both together); each name ends as one object
// in the token, and both, restarted, serve access keys, encrypt and
// decrypt. Before the token-level check (hsm generateFixed) about a third
// of these rounds left two access-key MAC keys (and the benchmark's starts
// about half the time two bearer-token keys), and every lookup of the name
// failed from then on.
func TestTwoInstallationsStartTogetherOnOneToken(t *testing.T) {
	const rounds = 8
	for round := 1; round <= rounds; round++ {
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			tok := softhsmtest.ExtraToken(t, "two-installs")
			dir := t.TempDir()
			envs := make([][]string, 2)
			for i := range envs {
				envs[i] = append(kmsdEnv(t, "sqlite:"+filepath.Join(dir, fmt.Sprintf("kms%d.db", i))), tok.Environ()...)
				if i == 1 {
					envs[i] = append(envs[i], "KMS_AUDIT=off")
				}
			}
			ps := startTogether(t, envs...)
			var wg sync.WaitGroup
			errs := make([]error, len(ps))
			for i, p := range ps {
				wg.Go(func() {
					_, errs[i] = client.New(p.url, adminToken, nil).CreateAccessKey(ctx, "admin")
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("access key on installation %d: %v\n%s", i, err, ps[i].log())
				}
			}
			// Restarted, each finds its keys afresh (no handle made by this
			// process): a second object under a name would fail every lookup.
			for i, p := range ps {
				p.stop(t)
				ps[i] = startKmsd(t, envs[i])
				if _, err := client.New(ps[i].url, adminToken, nil).CreateAccessKey(ctx, "admin"); err != nil {
					t.Fatalf("access key on installation %d after a restart: %v\n%s", i, err, ps[i].log())
				}
			}
			for i, p := range ps {
				c := client.New(p.url, adminToken, nil)
				k, err := c.CreateKey(ctx, client.CreateKeyRequest{})
				if err != nil {
					t.Fatalf("create key on installation %d: %v\n%s", i, err, p.log())
				}
				enc, err := c.Encrypt(ctx, k.KeyID, []byte("on a shared token"), nil)
				if err != nil {
					t.Fatalf("encrypt on installation %d: %v\n%s", i, err, p.log())
				}
				if d, err := c.Decrypt(ctx, enc.CiphertextBlob, nil, ""); err != nil || string(d.Plaintext) != "on a shared token" {
					t.Fatalf("decrypt on installation %d: %v\n%s", i, err, p.log())
				}
			}
			for _, p := range ps {
				p.stop(t)
			}
			for v, n := range macKeys(t, tok) {
				if n != 1 {
					t.Errorf("%d objects of MAC key version %d in the token, want 1\n%s\n%s", n, v, ps[0].log(), ps[1].log())
				}
			}
		})
	}
}

// macKeys counts the objects of each version of the service's MAC key in
// tok's token (1: access keys, 2: bearer tokens).
func macKeys(t *testing.T, tok *softhsmtest.Env) map[int]int {
	n := map[int]int{1: 0, 2: 0}
	for _, o := range inventory(t, tok) {
		if o.Ref.KeyID == service.MACKeyID {
			n[o.Ref.Version]++
		}
	}
	return n
}
