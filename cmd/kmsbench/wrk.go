package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The REST rows' load generator. wrk (C, one thread, an event loop) costs
// a fraction of this process's Go HTTP client per request, so on a 2-core
// machine it leaves kmsd the CPU that kmsbench's own client would take.
// It is used whenever it is on PATH (-load auto); the Go client is the
// fallback, and both check every answer (status 200 and, for batches, no
// item error).

// loadGen is -load: "wrk", "go", or "auto" (wrk when on PATH).
var loadGen string

// checkLoadGen refuses a -load that names no load generator, and -load wrk
// without wrk on PATH (auto would fall back to the Go client).
func checkLoadGen() error {
	switch loadGen {
	case "go", "auto":
		return nil
	case "wrk":
		if _, err := exec.LookPath("wrk"); err != nil {
			return fmt.Errorf("-load wrk: %v (scripts/ensure-wrk.sh installs it)", err)
		}
		return nil
	}
	return fmt.Errorf("-load %q: want wrk, go or auto", loadGen)
}

// useWrk says whether the REST rows use wrk.
func useWrk() bool {
	if loadGen == "go" {
		return false
	}
	_, err := exec.LookPath("wrk")
	return err == nil
}

// restReq is one REST request for wrk: a POST of body to path of addr.
type restReq struct {
	addr, path string
	body       []byte
}

func encryptReq(addr, keyID string, plaintext []byte) restReq {
	b, _ := json.Marshal(map[string]string{"key_id": keyID, "plaintext": base64.StdEncoding.EncodeToString(plaintext)})
	return restReq{addr, "/v1/encrypt", b}
}

func decryptReq(addr string, blob []byte) restReq {
	b, _ := json.Marshal(map[string]string{"ciphertext_blob": base64.StdEncoding.EncodeToString(blob)})
	return restReq{addr, "/v1/decrypt", b}
}

func batchReq(addr, path string, items []map[string]string) restReq {
	b, _ := json.Marshal(map[string]any{"items": items})
	return restReq{addr, path, b}
}

// wrkScript makes wrk POST the body with the bearer token, count every
// answer that is not a 200 or carries an item error, and print what
// kmsbench reads in one line at the end.
const wrkScript = `
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KMS_TOKEN")
local f = assert(io.open(os.getenv("KMSBENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
local threads = {}
function setup(thread) table.insert(threads, thread) end
bad = 0
function response(status, headers, body)
  if status ~= 200 or string.find(body, '"error"', 1, true) then bad = bad + 1 end
end
function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format("KMSBENCH requests=%d duration_us=%d p50_us=%d p99_us=%d bad=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), b,
    e.connect + e.read + e.write + e.timeout))
end
`

// measureWrk runs wrk with n connections for d against r and reads kmsd's
// (pid) CPU over the run; the load generator's CPU is wrk's own. ops are
// the answers that were a 200 without an item error.
func measureWrk(name string, pid, n int, d time.Duration, r restReq) (result, error) {
	dir, err := os.MkdirTemp("", "kmsbench-wrk-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	script, body := filepath.Join(dir, "req.lua"), filepath.Join(dir, "body.json")
	if err := os.WriteFile(script, []byte(wrkScript), 0o600); err != nil {
		return result{}, err
	}
	if err := os.WriteFile(body, r.body, 0o600); err != nil {
		return result{}, err
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.CommandContext(context.Background(), "wrk", "-t1", fmt.Sprintf("-c%d", n), fmt.Sprintf("-d%ds", secs),
		"--timeout", "10s", "-s", script, r.addr+r.path)
	cmd.Env = append(os.Environ(), "KMSBENCH_BODY="+body)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cpu := startCPU(pid)
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("wrk: %v: %s", err, strings.TrimSpace(errOut.String()))
	}
	_, server := cpu.stop()
	var reqs, durUS, p50, p99, bad, sockErrs int64
	i := strings.LastIndex(out.String(), "KMSBENCH ")
	if i < 0 {
		return result{}, fmt.Errorf("wrk printed no summary: %s", strings.TrimSpace(errOut.String()))
	}
	line := out.String()[i:]
	if _, err := fmt.Sscanf(line, "KMSBENCH requests=%d duration_us=%d p50_us=%d p99_us=%d bad=%d socket_errors=%d",
		&reqs, &durUS, &p50, &p99, &bad, &sockErrs); err != nil {
		return result{}, fmt.Errorf("wrk's summary %q: %v", strings.TrimSpace(line), err)
	}
	return result{name: name, concurrency: n, ops: reqs - bad, elapsed: time.Duration(durUS) * time.Microsecond,
		p50: time.Duration(p50) * time.Microsecond, p99: time.Duration(p99) * time.Microsecond,
		errors: bad + sockErrs, selfCPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), serverCPU: server}, nil
}

// measureREST is one REST row: wrk when it is used, else op from this
// process's client.
func measureREST(name string, pid, n int, d time.Duration, r restReq, op func(ctx context.Context) error) result {
	if useWrk() {
		res, err := measureWrk(name, pid, n, d, r)
		if err == nil {
			return res
		}
		fmt.Fprintln(os.Stderr, "kmsbench:", err, "(this row uses kmsbench's own client)")
	}
	return measurePID(name, pid, n, d, op)
}
