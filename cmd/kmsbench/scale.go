package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/hsm"
)

// createParallel is the number of clients creating keys at once.
const createParallel = 8

// scaleRun is the scale measurement (issue 18, item 4), in two calls with
// a restart of kmsd between them (scripts/bench.sh, BENCH_KEYS):
// -create-keys N makes the keys and writes their ids to -key-file;
// -key-file alone then measures encrypt over many keys against one.
func scaleRun(ctx context.Context, addr string, d time.Duration, n int, plaintext []byte) error {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	c := client.New(addr, os.Getenv("KMS_TOKEN"), hc)
	if createKeys > 0 {
		return createRun(ctx, c)
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	ids := strings.Fields(string(b))
	if len(ids) == 0 {
		return fmt.Errorf("%s: no key ids", keyFile)
	}
	cycle := func(name string, keys []string, dur time.Duration) result {
		var next atomic.Uint64
		return measurePID(name, kmsdPID, n, dur, func(ctx context.Context) error {
			_, err := c.Encrypt(ctx, keys[next.Add(1)%uint64(len(keys))], plaintext, nil)
			return err
		})
	}
	// The first use of each of 100 keys after the restart: one pass.
	first := min(100, len(ids))
	var next atomic.Int64
	cpu := startCPU(kmsdPID)
	start := time.Now()
	var wg sync.WaitGroup
	var errs atomic.Int64
	for range n {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(first) {
					return
				}
				if _, err := c.Encrypt(ctx, ids[i], plaintext, nil); err != nil {
					errs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	self, server := cpu.stop()
	cold := result{name: fmt.Sprintf("first use of %d keys (one pass)", first), concurrency: n, ops: int64(first),
		elapsed: time.Since(start), errors: errs.Load(), selfCPU: self, serverCPU: server}

	// Then warm, interleaved: one key, 100 keys, all keys, in rounds.
	const rounds = 3
	var one, hundred, all result
	for range rounds {
		one = sum(one, cycle("one key", ids[:1], d/rounds))
		hundred = sum(hundred, cycle(fmt.Sprintf("cycling over %d keys", first), ids[:first], d/rounds))
		all = sum(all, cycle(fmt.Sprintf("cycling over all %d keys", len(ids)), ids, d/rounds))
	}
	fmt.Printf("Encrypt over many keys (%d keys in the token and database; concurrency %d; warm rows: %d interleaved rounds):\n\n", len(ids), n, rounds)
	fmt.Println("| keys | ops/s | p50 | p99 | errors | kmsd CPU/op | vs one key |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, r := range []result{cold, one, hundred, all} {
		fmt.Printf("| %s | %.0f | %s | %s | %d | %s | %.2f |\n", r.name, r.opsPerSec(), r.p50.Round(time.Microsecond),
			r.p99.Round(time.Microsecond), r.errors, r.perOp(r.serverCPU), r.opsPerSec()/one.opsPerSec())
	}
	return nil
}

// sum adds measurement b to a (p50/p99: the worse).
func sum(a, b result) result {
	if a.name == "" {
		return b
	}
	a.ops += b.ops
	a.errors += b.errors
	a.elapsed += b.elapsed
	a.selfCPU += b.selfCPU
	if a.serverCPU >= 0 && b.serverCPU >= 0 {
		a.serverCPU += b.serverCPU
	} else {
		a.serverCPU = -1
	}
	a.p50, a.p99 = max(a.p50, b.p50), max(a.p99, b.p99)
	return a
}

// createRun creates createKeys keys through REST with createParallel
// clients, and as many (up to 500) directly in the token with as many
// goroutines, and compares the rates.
func createRun(ctx context.Context, c *client.Client) error {
	module := env("KMS_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
	prof, err := hsm.SelectProfile(env("KMS_HSM_PROFILE", "auto"), module)
	if err != nil {
		return err
	}
	tok, err := hsm.Open(ctx, hsm.Config{Module: module, InitArgs: os.Getenv("KMS_PKCS11_INIT_ARGS"),
		TokenLabel: env("KMS_TOKEN_LABEL", "hsmkms"), PIN: os.Getenv("KMS_PIN"), MaxSessions: createParallel, Profile: prof})
	if err != nil {
		return err
	}
	defer tok.Close()
	parallel := func(total int, op func(i int) error) (time.Duration, int64) {
		var next, errs atomic.Int64
		start := time.Now()
		var wg sync.WaitGroup
		for range createParallel {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= int64(total) {
						return
					}
					if err := op(int(i)); err != nil {
						errs.Add(1)
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start), errs.Load()
	}
	raw := min(createKeys, 500)
	// Named as the service names versions (with a nonce): a name without
	// one pays generateFixed's settling time.
	refs := make([]hsm.ObjectRef, raw)
	for i := range refs {
		var err error
		if refs[i], err = hsm.NewRef(uuid.New(), 1); err != nil {
			return err
		}
	}
	tokTime, tokErrs := parallel(raw, func(i int) error { return tok.GenerateKey(ctx, refs[i]) })
	for _, r := range refs {
		_ = tok.Destroy(ctx, r)
	}

	ids := make([]string, createKeys)
	cpu := startCPU(kmsdPID)
	restTime, restErrs := parallel(createKeys, func(i int) error {
		k, err := c.CreateKey(ctx, client.CreateKeyRequest{Description: "kmsbench scale"})
		if err == nil {
			ids[i] = k.KeyID
		}
		return err
	})
	_, server := cpu.stop()
	if err := os.WriteFile(keyFile, []byte(strings.Join(ids, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	tokRate, restRate := float64(raw)/tokTime.Seconds(), float64(createKeys)/restTime.Seconds()
	fmt.Printf("Key creation (%d parallel clients):\n\n", createParallel)
	fmt.Println("| what | keys | keys/s | errors | kmsd CPU/key | REST / token |")
	fmt.Println("|---|---|---|---|---|---|")
	fmt.Printf("| token C_GenerateKey alone | %d | %.0f | %d | | |\n", raw, tokRate, tokErrs)
	perKey := ""
	if server >= 0 {
		perKey = fmt.Sprintf("%.0fµs", float64(server.Microseconds())/float64(createKeys))
	}
	fmt.Printf("| REST CreateKey | %d | %.0f | %d | %s | %.2f |\n", createKeys, restRate, restErrs, perKey, restRate/tokRate)
	return nil
}
