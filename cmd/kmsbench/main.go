// Command kmsbench measures hsmkms throughput in one run: the raw token
// ceiling (AES-GCM through the hsm package alone) and REST encrypt/decrypt
// against a running kmsd, at concurrency 1 and 32, and prints the ratios as
// a Markdown table (docs/benchmarks.md). It is a benchmark, not a test.
//
//	kmsbench -addr http://127.0.0.1:8080 -duration 10s
//
// The bearer token comes from KMS_TOKEN; the token for the raw ceiling from
// KMS_PKCS11_MODULE, KMS_TOKEN_LABEL and KMS_PIN (as kmsd reads them).
package main

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/hsm"
)

func main() {
	addr := flag.String("addr", "http://127.0.0.1:8080", "kmsd base URL")
	dur := flag.Duration("duration", 10*time.Second, "length of each measurement")
	size := flag.Int("size", 64, "plaintext bytes")
	levels := flag.String("concurrency", "1,32", "comma-separated concurrency levels")
	auditOff := flag.String("audit-off-addr", "", "a second kmsd with KMS_AUDIT=off: REST encrypt is measured on both, for the cost of auditing")
	replicas := flag.String("replica-addrs", "", "two kmsd on one PostgreSQL (a,b): REST encrypt at the highest concurrency on one versus both")
	flag.IntVar(&kmsdPID, "kmsd-pid", 0, "process id of the kmsd at -addr: its CPU per request is reported (from /proc/<pid>/stat)")
	flag.StringVar(&baseAddr, "base-addr", "", "a kmsd built from another commit: REST encrypt and decrypt at the highest concurrency on it and on -addr, interleaved, for an A/B ratio in one run")
	flag.IntVar(&basePID, "base-pid", 0, "process id of the kmsd at -base-addr")
	flag.IntVar(&batchItems, "batch", 32, "items per batch request for the batch rows (0: none)")
	flag.IntVar(&createKeys, "create-keys", 0, "scale: create this many keys through REST (8 parallel clients), compare with the token's own generation rate, write their ids to -key-file, and stop")
	flag.StringVar(&keyFile, "key-file", "", "scale: the file of key ids of -create-keys; without -create-keys, measure encrypt cycling over those keys against one key, and stop")
	flag.StringVar(&loadGen, "load", "auto", "load generator of the REST rows: wrk, go (this process's client) or auto (wrk when on PATH)")
	flag.Parse()
	if err := checkLoadGen(); err != nil {
		fmt.Fprintln(os.Stderr, "kmsbench:", err)
		os.Exit(2)
	}
	compareAddr, addrFlag = *auditOff, *addr
	replicaAddrs = *replicas
	if err := run(*addr, *dur, *size, *levels); err != nil {
		fmt.Fprintln(os.Stderr, "kmsbench:", err)
		os.Exit(1)
	}
}

// result is one measurement.
type result struct {
	name        string
	concurrency int
	ops         int64
	elapsed     time.Duration
	p50, p99    time.Duration
	errors      int64
	// CPU used during the measurement by kmsbench itself (the load
	// generator; for raw token runs the token, in process) and by kmsd
	// (-1: not measured).
	selfCPU, serverCPU time.Duration
}

// perOp is d per operation, in microseconds ("" when not measured).
func (r result) perOp(d time.Duration) string {
	if d < 0 || r.ops == 0 {
		return ""
	}
	return fmt.Sprintf("%.0fµs", float64(d.Microseconds())/float64(r.ops))
}

func (r result) opsPerSec() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// measure runs op from n goroutines for d and records latencies.
func measure(name string, n int, d time.Duration, op func(ctx context.Context) error) result {
	return measurePID(name, 0, n, d, op)
}

// measurePID is measure that also records the CPU process pid used.
func measurePID(name string, pid, n int, d time.Duration, op func(ctx context.Context) error) result {
	cpu := startCPU(pid)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var ops, errs atomic.Int64
	lat := make([][]time.Duration, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := op(context.Background()); err != nil {
					errs.Add(1)
					continue
				}
				lat[i] = append(lat[i], time.Since(t0))
				ops.Add(1)
			}
		}(i)
	}
	wg.Wait()
	self, server := cpu.stop()
	all := slices.Concat(lat...)
	slices.Sort(all)
	r := result{name: name, concurrency: n, ops: ops.Load(), elapsed: time.Since(start), errors: errs.Load(),
		selfCPU: self, serverCPU: server}
	if len(all) > 0 {
		r.p50, r.p99 = all[len(all)/2], all[len(all)*99/100]
	}
	return r
}

func run(addr string, d time.Duration, size int, levelList string) error {
	var levels []int
	for _, s := range strings.Split(levelList, ",") {
		var n int
		if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 1 {
			return fmt.Errorf("bad concurrency %q", s)
		}
		levels = append(levels, n)
	}
	ctx := context.Background()
	plaintext := make([]byte, size)
	aad := make([]byte, 25)
	if createKeys > 0 || keyFile != "" {
		return scaleRun(ctx, addr, d, levels[len(levels)-1], plaintext)
	}

	// Raw token ceiling: the hsm package alone, on a key of its own.
	module := env("KMS_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
	prof, err := hsm.SelectProfile(env("KMS_HSM_PROFILE", "auto"), module)
	if err != nil {
		return err
	}
	tok, err := hsm.Open(ctx, hsm.Config{Module: module, InitArgs: os.Getenv("KMS_PKCS11_INIT_ARGS"),
		TokenLabel: env("KMS_TOKEN_LABEL", "hsmkms"), PIN: os.Getenv("KMS_PIN"), MaxSessions: 32, Profile: prof})
	if err != nil {
		return err
	}
	ref, err := hsm.NewRef(uuid.New(), 1)
	if err != nil {
		return err
	}
	if err := tok.GenerateKey(ctx, ref); err != nil {
		return err
	}
	defer tok.Destroy(ctx, ref)
	iv, ct, err := tok.Encrypt(ctx, ref, plaintext, aad)
	if err != nil {
		return err
	}

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	c := client.New(addr, os.Getenv("KMS_TOKEN"), hc)
	k, err := c.CreateKey(ctx, client.CreateKeyRequest{Description: "kmsbench"})
	if err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	enc, err := c.Encrypt(ctx, k.KeyID, plaintext, nil)
	if err != nil {
		return err
	}

	var rows []result
	for _, n := range levels {
		rawEnc := measure("token encrypt", n, d, func(ctx context.Context) error {
			_, _, err := tok.Encrypt(ctx, ref, plaintext, aad)
			return err
		})
		rawDec := measure("token decrypt", n, d, func(ctx context.Context) error {
			_, err := tok.Decrypt(ctx, ref, iv, ct, aad)
			return err
		})
		restEnc := measureREST("REST encrypt", kmsdPID, n, d, encryptReq(addr, k.KeyID, plaintext), func(ctx context.Context) error {
			_, err := c.Encrypt(ctx, k.KeyID, plaintext, nil)
			return err
		})
		restDec := measureREST("REST decrypt", kmsdPID, n, d, decryptReq(addr, enc.CiphertextBlob), func(ctx context.Context) error {
			_, err := c.Decrypt(ctx, enc.CiphertextBlob, nil, "")
			return err
		})
		rows = append(rows, rawEnc, rawDec, restEnc, restDec)
		if batchItems > 0 && n == levels[len(levels)-1] {
			rows = append(rows, batchRows(ctx, c, addr, k.KeyID, n, d, plaintext)...)
		}
	}
	var audit [][2]result
	if compareAddr != "" {
		off := client.New(compareAddr, os.Getenv("KMS_TOKEN"), hc)
		k2, err := off.CreateKey(ctx, client.CreateKeyRequest{Description: "kmsbench, audit off"})
		if err != nil {
			return fmt.Errorf("create key on %s: %w", compareAddr, err)
		}
		for _, n := range levels {
			on := measureREST("REST encrypt, audit on", 0, n, d, encryptReq(addr, k.KeyID, plaintext), func(ctx context.Context) error {
				_, err := c.Encrypt(ctx, k.KeyID, plaintext, nil)
				return err
			})
			offR := measureREST("REST encrypt, audit off", 0, n, d, encryptReq(compareAddr, k2.KeyID, plaintext), func(ctx context.Context) error {
				_, err := off.Encrypt(ctx, k2.KeyID, plaintext, nil)
				return err
			})
			audit = append(audit, [2]result{on, offR})
		}
		off.ScheduleKeyDeletion(ctx, k2.KeyID, 7)
	}
	c.ScheduleKeyDeletion(ctx, k.KeyID, 7)

	fmt.Printf("Machine: %s/%s, %d CPUs (GOMAXPROCS %d), %s; plaintext %d bytes; %s per measurement.\n\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), size, d)
	gen := "kmsbench's own Go client"
	if useWrk() {
		gen = "wrk (one thread)"
	}
	fmt.Printf("Load generator of the REST rows: %s. CPU/op: CPU time per operation of the load generator (for token rows:\n", gen)
	fmt.Println("kmsbench, that is the token itself, in process) and of kmsd (utime+stime from /proc/<pid>/stat);")
	fmt.Println("\"kmsd − token\" is kmsd's CPU per request less the token's per operation.")
	fmt.Println()
	fmt.Println("| operation | concurrency | ops/s | p50 | p99 | errors | REST / token | load CPU/op | kmsd CPU/op | kmsd − token |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for i, r := range rows {
		ratio, own := "", ""
		if tok, ok := tokenRow(rows[:i], r); ok {
			ratio = fmt.Sprintf("%.2f", r.opsPerSec()/tok.opsPerSec())
			if r.serverCPU >= 0 && r.ops > 0 && tok.ops > 0 {
				own = fmt.Sprintf("%.0fµs", float64(r.serverCPU.Microseconds())/float64(r.ops)-
					float64(tok.selfCPU.Microseconds())/float64(tok.ops))
			}
		}
		fmt.Printf("| %s | %d | %.0f | %s | %s | %d | %s | %s | %s | %s |\n", r.name, r.concurrency, r.opsPerSec(),
			r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.errors, ratio,
			r.perOp(r.selfCPU), r.perOp(r.serverCPU), own)
	}
	if baseAddr != "" {
		if err := baseRun(ctx, hc, levels[len(levels)-1], d, plaintext); err != nil {
			return err
		}
	}
	if len(audit) > 0 {
		fmt.Print("\nAuditing on versus off (REST encrypt, same run):\n\n")
		fmt.Println("| concurrency | audit on ops/s | p50 | audit off ops/s | p50 | on / off |")
		fmt.Println("|---|---|---|---|---|---|")
		for _, a := range audit {
			fmt.Printf("| %d | %.0f | %s | %.0f | %s | %.2f |\n", a[0].concurrency, a[0].opsPerSec(),
				a[0].p50.Round(time.Microsecond), a[1].opsPerSec(), a[1].p50.Round(time.Microsecond),
				a[0].opsPerSec()/a[1].opsPerSec())
		}
	}
	if replicaAddrs != "" {
		return replicaRun(ctx, hc, levels[len(levels)-1], d, plaintext)
	}
	return nil
}

// kmsdPID is the process of -addr; baseAddr and basePID the kmsd of
// another commit for an A/B comparison.
var (
	kmsdPID, basePID int
	baseAddr         string
)

// baseRun measures REST encrypt and decrypt at concurrency n on the base
// kmsd and on this one, alternating in four rounds of d/4 each so that
// both see the same machine (its load changes by the second), and prints
// the sums and the ratio new / base.
func baseRun(ctx context.Context, hc *http.Client, n int, d time.Duration, plaintext []byte) error {
	type side struct {
		name string
		addr string
		c    *client.Client
		pid  int
		blob []byte
		key  string
	}
	sides := []*side{{name: "base", addr: baseAddr, c: client.New(baseAddr, os.Getenv("KMS_TOKEN"), hc), pid: basePID},
		{name: "this", addr: addrFlag, c: client.New(addrFlag, os.Getenv("KMS_TOKEN"), hc), pid: kmsdPID}}
	for _, s := range sides {
		k, err := s.c.CreateKey(ctx, client.CreateKeyRequest{Description: "kmsbench A/B"})
		if err != nil {
			return fmt.Errorf("create key on %s: %w", s.name, err)
		}
		defer s.c.ScheduleKeyDeletion(ctx, k.KeyID, 7)
		enc, err := s.c.Encrypt(ctx, k.KeyID, plaintext, nil)
		if err != nil {
			return err
		}
		s.key, s.blob = k.KeyID, enc.CiphertextBlob
	}
	var total [2][2]result // [op][side]
	const rounds = 4
	for range rounds {
		for j, s := range sides {
			total[0][j] = sum(total[0][j], measureREST("REST encrypt", s.pid, n, d/rounds, encryptReq(s.addr, s.key, plaintext), func(ctx context.Context) error {
				_, err := s.c.Encrypt(ctx, s.key, plaintext, nil)
				return err
			}))
			total[1][j] = sum(total[1][j], measureREST("REST decrypt", s.pid, n, d/rounds, decryptReq(s.addr, s.blob), func(ctx context.Context) error {
				_, err := s.c.Decrypt(ctx, s.blob, nil, "")
				return err
			}))
		}
	}
	fmt.Printf("\nA/B: base kmsd versus this one (concurrency %d, %d interleaved rounds; p50/p99 of the worse round):\n\n", n, rounds)
	fmt.Println("| operation | kmsd | ops/s | p50 | p99 | errors | kmsd CPU/op | this / base |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, op := range total {
		for j, r := range op {
			ratio := ""
			if j == 1 {
				ratio = fmt.Sprintf("%.2f", r.opsPerSec()/op[0].opsPerSec())
			}
			fmt.Printf("| %s | %s | %.0f | %s | %s | %d | %s | %s |\n", r.name, sides[j].name, r.opsPerSec(),
				r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.errors, r.perOp(r.serverCPU), ratio)
		}
	}
	return nil
}

// batchItems is -batch; createKeys and keyFile the scale run's flags.
var (
	batchItems, createKeys int
	keyFile                string
)

// tokenRow is the raw token row of the same operation and concurrency as
// the REST row r.
func tokenRow(rows []result, r result) (result, bool) {
	if !strings.HasPrefix(r.name, "REST") {
		return result{}, false
	}
	op := "token encrypt"
	if strings.Contains(r.name, "decrypt") {
		op = "token decrypt"
	}
	for _, t := range slices.Backward(rows) {
		if t.name == op && t.concurrency == r.concurrency {
			return t, true
		}
	}
	return result{}, false
}

// batchRows measures REST batch encrypt and decrypt of batchItems items per
// request at concurrency n; ops are items, so that the ratio to the token
// is in items/s.
func batchRows(ctx context.Context, c *client.Client, addr, keyID string, n int, d time.Duration, plaintext []byte) []result {
	items := make([]client.BatchEncryptItem, batchItems)
	encItems := make([]map[string]string, batchItems)
	for i := range items {
		items[i] = client.BatchEncryptItem{KeyID: keyID, Plaintext: plaintext}
		encItems[i] = map[string]string{"key_id": keyID, "plaintext": base64.StdEncoding.EncodeToString(plaintext)}
	}
	res, err := c.BatchEncrypt(ctx, items)
	if err != nil || len(res) != len(items) || res[0].Error != nil {
		fmt.Fprintln(os.Stderr, "kmsbench: batch encrypt:", err)
		return nil
	}
	dec := make([]client.BatchDecryptItem, len(res))
	decItems := make([]map[string]string, len(res))
	for i, r := range res {
		dec[i] = client.BatchDecryptItem{CiphertextBlob: r.CiphertextBlob}
		decItems[i] = map[string]string{"ciphertext_blob": base64.StdEncoding.EncodeToString(r.CiphertextBlob)}
	}
	perItem := func(r result) result {
		r.ops *= int64(batchItems)
		return r
	}
	name := fmt.Sprintf("REST batch %%s (%d items)", batchItems)
	enc := measureREST(fmt.Sprintf(name, "encrypt"), kmsdPID, n, d, batchReq(addr, "/v1/batch/encrypt", encItems), func(ctx context.Context) error {
		r, err := c.BatchEncrypt(ctx, items)
		if err == nil && r[len(r)-1].Error != nil {
			err = r[len(r)-1].Error
		}
		return err
	})
	de := measureREST(fmt.Sprintf(name, "decrypt"), kmsdPID, n, d, batchReq(addr, "/v1/batch/decrypt", decItems), func(ctx context.Context) error {
		r, err := c.BatchDecrypt(ctx, dec)
		if err == nil && r[len(r)-1].Error != nil {
			err = r[len(r)-1].Error
		}
		return err
	})
	return []result{perItem(enc), perItem(de)}
}

// addrFlag is -addr.
var addrFlag string

// compareAddr is the audit-off kmsd of -audit-off-addr.
var compareAddr string

// replicaAddrs are the PostgreSQL replicas of -replica-addrs.
var replicaAddrs string

// replicaRun measures REST encrypt at concurrency n against the first
// replica alone, then against all of them (requests spread round-robin).
func replicaRun(ctx context.Context, hc *http.Client, n int, d time.Duration, plaintext []byte) error {
	addrs := strings.Split(replicaAddrs, ",")
	var clients []*client.Client
	for _, a := range addrs {
		clients = append(clients, client.New(strings.TrimSpace(a), os.Getenv("KMS_TOKEN"), hc))
	}
	k, err := clients[0].CreateKey(ctx, client.CreateKeyRequest{Description: "kmsbench replicas"})
	if err != nil {
		return fmt.Errorf("create key on %s: %w", addrs[0], err)
	}
	defer clients[0].ScheduleKeyDeletion(ctx, k.KeyID, 7)
	var next atomic.Uint64
	one := measure("REST encrypt, 1 replica", n, d, func(ctx context.Context) error {
		_, err := clients[0].Encrypt(ctx, k.KeyID, plaintext, nil)
		return err
	})
	all := measure(fmt.Sprintf("REST encrypt, %d replicas", len(clients)), n, d, func(ctx context.Context) error {
		c := clients[next.Add(1)%uint64(len(clients))]
		_, err := c.Encrypt(ctx, k.KeyID, plaintext, nil)
		return err
	})
	fmt.Printf("\nReplicas on one PostgreSQL and one token (REST encrypt, concurrency %d, same run):\n\n", n)
	fmt.Println("| replicas | ops/s | p50 | p99 | errors | vs one |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range []result{one, all} {
		fmt.Printf("| %s | %.0f | %s | %s | %d | %.2f |\n", strings.TrimPrefix(r.name, "REST encrypt, "), r.opsPerSec(),
			r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.errors, r.opsPerSec()/one.opsPerSec())
	}
	return nil
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
