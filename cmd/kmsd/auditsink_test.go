package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
	"github.com/hsmkms/hsmkms/service"
)

// parseExport reads exported JSON lines; every line must be a record.
func parseExport(t *testing.T, b []byte) []client.AuditRecord {
	t.Helper()
	// A line is exported once its newline is written: a file read while
	// kmsd writes may end in part of a line (one write(2) is not atomic
	// against a reader), whose rest comes later.
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	var out []client.AuditRecord
	for i, l := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(l) == 0 && len(b) == 0 {
			break
		}
		var r client.AuditRecord
		dec := json.NewDecoder(bytes.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("exported line %d is not a record: %v\n%s", i+1, err, l)
		}
		out = append(out, r)
	}
	return out
}

// readExport reads and concatenates the exported files, in order.
func readExport(t *testing.T, paths ...string) []client.AuditRecord {
	t.Helper()
	var out []client.AuditRecord
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, parseExport(t, b)...)
	}
	return out
}

// apiAudit is every record GET /v1/audit lists.
func apiAudit(t *testing.T, c *client.Client) []client.AuditRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var all []client.AuditRecord
	next := ""
	for {
		page, err := c.ListAudit(ctx, client.AuditFilter{}, 1000, next)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Records...)
		if next = page.NextToken; next == "" {
			return all
		}
	}
}

// checkExport wants got to be the chain from seq 1 as GET /v1/audit lists
// it, every record following its predecessor and hashing to its hash:
// nothing lost, repeated, reordered or changed.
func checkExport(t *testing.T, got []client.AuditRecord, c *client.Client) {
	t.Helper()
	if len(got) == 0 {
		t.Fatal("nothing exported")
	}
	want := apiAudit(t, c)
	if len(want) < len(got) {
		t.Fatalf("%d records exported, the API lists %d", len(got), len(want))
	}
	prev := service.AuditGenesisHash
	for i, r := range got {
		e := service.AuditEvent{Seq: r.Seq, At: r.Time, RequestID: r.RequestID, Principal: r.Principal,
			Credential: r.Credential, Action: r.Action, KeyID: r.KeyID, KeyVersion: r.KeyVersion,
			Outcome: r.Outcome, ErrorCode: r.ErrorCode, Source: r.Source, Detail: r.Detail, PrevHash: r.PrevHash}
		switch {
		case r.Seq != int64(i+1):
			t.Fatalf("exported record %d has seq %d (lost, repeated or reordered)", i+1, r.Seq)
		case r.PrevHash != prev:
			t.Fatalf("exported record %d does not follow the one before it", r.Seq)
		case service.HashAuditEvent(&e) != r.Hash:
			t.Fatalf("exported record %d does not hash to its hash", r.Seq)
		case !r.Time.Equal(want[i].Time):
			t.Fatalf("exported record %d: time %v, the API says %v", r.Seq, r.Time, want[i].Time)
		}
		r.Time = want[i].Time
		if r != want[i] {
			t.Fatalf("exported record %d differs from the API's:\n%+v\n%+v", r.Seq, r, want[i])
		}
		prev = r.Hash
	}
}

// waitExported waits until read() holds every record the API lists (and
// a seal), and returns it.
func waitExported(t *testing.T, c *client.Client, read func() []client.AuditRecord) []client.AuditRecord {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		api := apiAudit(t, c)
		got := read()
		sealed := false
		for _, r := range got {
			sealed = sealed || r.Action == service.ActAuditSeal
		}
		if len(got) > 0 && got[len(got)-1].Seq >= api[len(api)-1].Seq && sealed {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s, %d records exported, the API lists %d", len(got), len(api))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// appClient makes principal app (may encrypt), a key alias/export and a
// token for app, and returns app's client and token.
func appClient(t *testing.T, url string) (*client.Client, *client.NewToken) {
	t.Helper()
	ctx := context.Background()
	admin := client.New(url, adminToken, nil)
	if _, err := admin.PutPolicy(ctx, "app", client.PolicyDocument{Statements: []client.Statement{
		{Effect: "allow", Actions: []string{"kms:Encrypt"}, Resources: []string{"*"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreatePrincipal(ctx, client.CreatePrincipalRequest{Name: "app", Policies: []string{"app"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateKey(ctx, client.CreateKeyRequest{Alias: "alias/export"}); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.CreateToken(ctx, "app", "export test")
	if err != nil {
		t.Fatal(err)
	}
	return client.New(url, tok.Token, nil), tok
}

func encryptN(t *testing.T, c *client.Client, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := c.Encrypt(context.Background(), "alias/export", []byte("exported secret"), nil); err != nil {
			t.Fatal(err)
		}
	}
}

// The file sink: every record, in order, with hashes that chain and match
// GET /v1/audit, the token's id and never its secret, seals included;
// logrotate's move and SIGHUP split it into two files without losing or
// repeating a record; a restart resumes where the export stopped.
func TestAuditExportToAFile(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	env := kmsdEnv(t, "sqlite:"+filepath.Join(dir, "kms.db"), "KMS_AUDIT_SINK=file:"+logPath)
	p := startKmsd(t, env)
	admin := client.New(p.url, adminToken, nil)
	app, tok := appClient(t, p.url)
	encryptN(t, app, 5)

	got := waitExported(t, admin, func() []client.AuditRecord { return readExport(t, logPath) })
	checkExport(t, got, admin)
	var appRecords int
	for _, r := range got {
		switch {
		case r.Principal == "app":
			appRecords++
			if r.Credential != "token:"+tok.TokenID {
				t.Errorf("record %d of app: credential %q, want token:%s", r.Seq, r.Credential, tok.TokenID)
			}
		case r.Principal == "admin" && r.Credential != "token:bootstrap":
			t.Errorf("record %d of admin: credential %q", r.Seq, r.Credential)
		case r.Principal == "system" && r.Credential != "":
			t.Errorf("record %d of the system: credential %q", r.Seq, r.Credential)
		}
	}
	if appRecords != 5 {
		t.Errorf("%d records of app exported, want 5", appRecords)
	}
	raw, _ := os.ReadFile(logPath)
	secret := tok.Token[strings.LastIndex(tok.Token, "_")+1:]
	for _, s := range []string{secret, adminToken, "exported secret", "ZXhwb3J0ZWQgc2VjcmV0"} {
		if strings.Contains(string(raw), s) {
			t.Errorf("the export holds a secret or plaintext: %.6s...", s)
		}
	}
	if st, err := os.Stat(logPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("export file mode: %v %v, want 0600", st.Mode(), err)
	}

	// logrotate: move, then SIGHUP. Records between the two go to the
	// moved file, the later ones to the new file.
	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	encryptN(t, app, 3)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a new export file after SIGHUP", func() bool { _, err := os.Stat(logPath); return err == nil })
	encryptN(t, app, 3)
	got = waitExported(t, admin, func() []client.AuditRecord { return readExport(t, rotated, logPath) })
	checkExport(t, got, admin)
	if len(readExport(t, logPath)) == 0 {
		t.Error("nothing in the new file after SIGHUP")
	}

	// A clean stop exports to the end and remembers it; the next start
	// goes on from there.
	p.stop(t)
	if b, _ := os.ReadFile(logPath); len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("after a clean stop the export ends in part of a line: %q", b[max(0, len(b)-80):])
	}
	all := readExport(t, rotated, logPath)
	state, err := os.ReadFile(logPath + ".state")
	if err != nil || strings.TrimSpace(string(state)) != strconv.FormatInt(all[len(all)-1].Seq, 10) {
		t.Fatalf("state file %q (%v), last exported record %d", state, err, all[len(all)-1].Seq)
	}
	p = startKmsd(t, env)
	admin = client.New(p.url, adminToken, nil)
	encryptN(t, client.New(p.url, tok.Token, nil), 2)
	got = waitExported(t, admin, func() []client.AuditRecord { return readExport(t, rotated, logPath) })
	checkExport(t, got, admin)
	if len(got) <= len(all) {
		t.Errorf("nothing exported after the restart")
	}
}

// With two replicas on one PostgreSQL database, a replica's sink receives
// the whole chain, the other replica's records included, in order.
func TestAuditExportOfTwoReplicas(t *testing.T) {
	dsn := kmstest.PostgresDSN(t)
	env := append(kmsdEnv(t, dsn), softhsmtest.ExtraToken(t, "export-replicas").Environ()...)
	logA := filepath.Join(t.TempDir(), "a.log")
	a := startKmsd(t, append(env, "KMS_AUDIT_SINK=file:"+logA))
	b := startKmsd(t, env)
	appB, _ := appClient(t, b.url)
	encryptN(t, appB, 5)
	admin := client.New(a.url, adminToken, nil)
	got := waitExported(t, admin, func() []client.AuditRecord { return readExport(t, logA) })
	checkExport(t, got, admin)
	fromB := 0
	for _, r := range got {
		if r.Principal == "app" && r.Action == service.ActEncrypt {
			fromB++
		}
	}
	if fromB != 5 {
		t.Errorf("%d of B's encrypt records in A's export, want 5", fromB)
	}
}

// A kmsd killed (SIGKILL) while it exports loses no record from the
// export: the next start exports again what came after the saved state,
// so a record may appear twice (the same line: the SIEM keeps one per
// seq), never not at all.
func TestAuditExportSurvivesACrash(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	env := kmsdEnv(t, "sqlite:"+filepath.Join(dir, "kms.db"), "KMS_AUDIT_SINK=file:"+logPath)
	p := startKmsd(t, env)
	app, tok := appClient(t, p.url)
	encryptN(t, app, 20)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p.done <- nil

	p = startKmsd(t, env)
	admin := client.New(p.url, adminToken, nil)
	encryptN(t, client.New(p.url, tok.Token, nil), 3)
	read := func() []client.AuditRecord {
		b, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		// One seq per record: a repeated seq is the same line again.
		var out []client.AuditRecord
		seen := map[int64]client.AuditRecord{}
		for _, l := range bytes.Split(b, []byte("\n")) {
			var r client.AuditRecord
			if json.Unmarshal(l, &r) != nil {
				continue // empty, or a line cut by the kill
			}
			if prev, ok := seen[r.Seq]; ok {
				if prev != r {
					t.Fatalf("record %d exported twice, differently:\n%+v\n%+v", r.Seq, prev, r)
				}
				continue
			}
			seen[r.Seq] = r
			out = append(out, r)
		}
		return out
	}
	checkExport(t, waitExported(t, admin, read), admin)
}

// metric reads one unlabelled sample from /metrics.
func metric(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// unreadPipe is a pipe whose reading end nobody reads (until drain): kmsd's
// writes to it block once its buffer is full.
func unreadPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// With drop, a sink that cannot write (a full device, a pipe nobody
// reads) costs the export records, counted, never a request: every
// request succeeds and every record is in the database's intact chain.
func TestAuditExportDropsWhenTheSinkCannotWrite(t *testing.T) {
	for _, tc := range []struct {
		name, sink string
		pipe       bool
		errors     bool // write errors (not only a full queue)
	}{
		{"a full device", "file:/dev/full", false, true},
		{"standard output that nobody reads", "stdout", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := kmsdEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "kms.db"),
				"KMS_AUDIT_SINK="+tc.sink, "KMS_AUDIT_SINK_FAILURE=drop", "KMS_AUDIT_SINK_QUEUE=8",
				"KMS_AUDIT_SINK_STATE="+filepath.Join(t.TempDir(), "state")) // not /dev/full.state
			opts := &proc{}
			if tc.pipe {
				_, opts.stdout = unreadPipe(t)
			}
			p := startKmsdWith(t, opts, env)
			admin := client.New(p.url, adminToken, nil)
			app, _ := appClient(t, p.url)
			n := 0
			for ; n < 5000 && (n < 20 || metric(t, p.url, "hsmkms_audit_export_dropped_total") == 0); n += 20 {
				encryptN(t, app, 20) // fails the test if one is refused
			}
			if dropped := metric(t, p.url, "hsmkms_audit_export_dropped_total"); dropped == 0 {
				t.Fatalf("after %d requests nothing dropped", n)
			}
			if errs := metric(t, p.url, "hsmkms_audit_export_write_errors_total"); tc.errors && errs == 0 {
				t.Error("no write error counted")
			}
			if !logShows(p, "left out of the export") {
				t.Errorf("no warning of the drops:\n%s", p.log())
			}
			if strings.Count(p.log(), "left out of the export") > 1 {
				t.Errorf("the drops are warned about more than once a minute:\n%s", p.log())
			}
			recs := apiAudit(t, admin)
			encrypts := 0
			for _, r := range recs {
				if r.Principal == "app" && r.Action == service.ActEncrypt {
					encrypts++
				}
			}
			if encrypts != n {
				t.Errorf("%d encrypt records in the database, %d requests", encrypts, n)
			}
			if v, err := admin.VerifyAudit(context.Background()); err != nil || !v.Intact {
				t.Errorf("verify: %v %+v", err, v)
			}
		})
	}
}

// With block, a sink that does not take records stops requests once the
// queue is full: they fail closed (503) rather than proceed unexported;
// once the sink reads again, requests succeed and the export holds the
// whole chain, none of the records lost.
func TestAuditExportBlockFailsClosed(t *testing.T) {
	env := kmsdEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "kms.db"),
		"KMS_AUDIT_SINK=stdout", "KMS_AUDIT_SINK_FAILURE=block", "KMS_AUDIT_SINK_QUEUE=8", "KMS_DB_TIMEOUT=1s")
	r, w := unreadPipe(t)
	p := startKmsdWith(t, &proc{stdout: w}, env)
	w.Close() // kmsd has its own
	admin := client.New(p.url, adminToken, nil)
	app, _ := appClient(t, p.url)
	ctx := context.Background()
	var refused error
	n := 0
	for ; n < 5000 && refused == nil; n++ {
		if _, err := app.Encrypt(ctx, "alias/export", []byte("x"), nil); err != nil {
			refused = err
		}
	}
	var ce *client.Error
	if !errors.As(refused, &ce) || ce.Status != http.StatusServiceUnavailable {
		t.Fatalf("after %d requests into a pipe nobody reads: %v, want a 503", n, refused)
	}
	if lag := metric(t, p.url, "hsmkms_audit_export_lag_records"); lag < 8 {
		t.Errorf("lag %v when requests are refused, want the queue's 8 at least", lag)
	}

	// The sink reads again.
	var mu sync.Mutex
	var out bytes.Buffer
	go func() {
		buf := make([]byte, 64<<10)
		for {
			k, err := r.Read(buf)
			mu.Lock()
			out.Write(buf[:k])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	waitFor(t, 30*time.Second, "a successful encrypt once the sink reads", func() bool {
		_, err := app.Encrypt(ctx, "alias/export", []byte("x"), nil)
		return err == nil
	})
	read := func() []client.AuditRecord {
		mu.Lock()
		defer mu.Unlock()
		b := out.Bytes()
		return parseExport(t, b)
	}
	checkExport(t, waitExported(t, admin, read), admin)
}

// The syslog sink sends each record as one message, the JSON line as its
// text.
func TestAuditExportToSyslog(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var mu sync.Mutex
	var msgs []string
	go func() {
		buf := make([]byte, 64<<10)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			msgs = append(msgs, string(buf[:k]))
			mu.Unlock()
		}
	}()
	env := kmsdEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "kms.db"), "KMS_AUDIT_SINK=syslog:unixgram://"+sock)
	p := startKmsd(t, env)
	admin := client.New(p.url, adminToken, nil)
	app, _ := appClient(t, p.url)
	encryptN(t, app, 3)
	read := func() []client.AuditRecord {
		mu.Lock()
		defer mu.Unlock()
		var b bytes.Buffer
		for _, m := range msgs {
			// <PRI>timestamp host tag[pid]: {...}
			i := strings.Index(m, "{")
			if i < 0 || !strings.HasPrefix(m, fmt.Sprintf("<%d>", 4<<3|6)) || !strings.Contains(m[:i], "hsmkms[") {
				t.Fatalf("syslog message %q is not an auth.info message of hsmkms", m)
			}
			b.WriteString(strings.TrimSuffix(m[i:], "\n") + "\n")
		}
		return parseExport(t, b.Bytes())
	}
	checkExport(t, waitExported(t, admin, read), admin)
}
