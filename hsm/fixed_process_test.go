package hsm

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
)

// racerEnv makes the test binary, started again by a test, a process that
// makes fixed-name MAC keys on command instead of running tests (TestMain).
const racerEnv = "HSMKMS_TEST_MAC_RACER"

// racerJob is the racer's token and the key id of the refs it makes.
type racerJob struct {
	Module, InitArgs, Label, PIN, Profile string
	KeyID                                 uuid.UUID
}

// racerResult is its answer to one round.
type racerResult struct {
	Round int
	MAC   string // hex HMAC-SHA256 of "probe" under the round's key
	Err   string
}

// racerMain is the other process: its own Open of the test token (its
// own C_Initialize, sessions and login: two Ctx in one process share one
// module instance, its object store and its handles, so they do not race
// as two processes do). For each round number n read from stdin it HMACs
// under version n of job.KeyID (a name without a nonce; not found, or
// found), calls GenerateMACKey for it and HMACs "probe" under it, and
// answers one JSON line.
func racerMain() int {
	var job racerJob
	if err := json.Unmarshal([]byte(os.Getenv(racerEnv)), &job); err != nil {
		fmt.Fprintln(os.Stderr, "racer:", err)
		return 2
	}
	prof, err := SelectProfile(job.Profile, job.Module)
	if err != nil {
		fmt.Fprintln(os.Stderr, "racer:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := Open(ctx, Config{Module: job.Module, InitArgs: job.InitArgs, TokenLabel: job.Label, PIN: job.PIN, Profile: prof})
	if err != nil {
		fmt.Fprintln(os.Stderr, "racer: open:", err)
		return 2
	}
	defer p.Close()
	out := json.NewEncoder(os.Stdout)
	out.Encode(racerResult{}) // ready
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, err := strconv.Atoi(in.Text())
		if err != nil {
			return 2
		}
		ref := ObjectRef{KeyID: job.KeyID, Version: n}
		res := racerResult{Round: n}
		// First a use, as the service probes for the bearer-token key: it
		// may meet the other's key while that is being made.
		if _, err := p.HMACSHA256(ctx, ref, []byte("probe")); err != nil && !errors.Is(err, ErrObjectNotFound) {
			res.Err = "probe: " + err.Error()
		} else if err := p.GenerateMACKey(ctx, ref); err != nil {
			res.Err = "generate: " + err.Error()
		} else if mac, err := p.HMACSHA256(ctx, ref, []byte("probe")); err != nil {
			res.Err = "hmac: " + err.Error()
		} else {
			res.MAC = hex.EncodeToString(mac)
		}
		out.Encode(res)
	}
	return 0
}

// racer is one running racer process.
type racer struct {
	in  io.WriteCloser
	out *json.Decoder
}

func startRacer(t *testing.T, job racerJob) *racer {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(job)
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), racerEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	r := &racer{in: in, out: json.NewDecoder(out)}
	var ready racerResult
	if err := r.out.Decode(&ready); err != nil {
		t.Fatalf("racer did not start: %v", err)
	}
	return r
}

// TestFixedNameRace: two processes with their own PKCS#11 context on one
// token make the same fixed-name (no nonce) MAC key at the same moment,
// round after round, as two installations sharing the token do at their
// first start. Each round ends with exactly one object under the name,
// and both processes, and a third that looks it up afresh, HMAC with it
// alike. (Each process made its own object and kept it before the
// token-level check in generateFixed: from then on every lookup was
// ambiguous.)
func TestFixedNameRace(t *testing.T) {
	const rounds = 16
	env := softhsmtest.Get(t)
	p := sharedToken(t)
	ctx := testCtx(t)
	job := racerJob{Module: env.Module, InitArgs: env.InitArgs, Label: env.Label, PIN: env.PIN, Profile: env.Profile, KeyID: uuid.New()}
	racers := []*racer{startRacer(t, job), startRacer(t, job)}
	r := rawSession(t, p)
	for n := 1; n <= rounds; n++ {
		ref := ObjectRef{KeyID: job.KeyID, Version: n}
		t.Cleanup(func() { p.Destroy(ctx, ref) })
		for _, rc := range racers {
			fmt.Fprintln(rc.in, n)
		}
		var macs []string
		for i, rc := range racers {
			var res racerResult
			if err := rc.out.Decode(&res); err != nil {
				t.Fatalf("round %d: racer %d: %v", n, i, err)
			}
			if res.Err != "" || res.Round != n {
				t.Fatalf("round %d: racer %d: round %d: %s", n, i, res.Round, res.Err)
			}
			macs = append(macs, res.MAC)
		}
		if hs := r.find(ref); len(hs) != 1 {
			t.Fatalf("round %d: %d objects named %s, want 1", n, len(hs), ref)
		}
		mac, err := p.HMACSHA256(ctx, ref, []byte("probe"))
		if err != nil {
			t.Fatalf("round %d: a third process's lookup: %v", n, err)
		}
		for i, m := range macs {
			if m != hex.EncodeToString(mac) {
				t.Fatalf("round %d: racer %d HMACs under another key than the token's one object", n, i)
			}
		}
	}
}
