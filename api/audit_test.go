package api_test

import (
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

// auditStack is a server on a SQLite file the test can also open directly,
// as someone with access to the database would.
func auditStack(t *testing.T) (*kmstest.Stack, caller, *sql.DB) {
	path := filepath.Join(t.TempDir(), "kms.db")
	s := kmstest.Start(t, kmstest.Options{Store: kmstest.StoreAt(t, "sqlite:"+path)})
	raw, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	k := admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/audited"})
	for i := 0; i < 4; i++ {
		enc := admin.must(200, "POST", "/v1/encrypt", map[string]any{"key_id": "alias/audited", "plaintext": b64("audited secret")})
		admin.must(200, "POST", "/v1/decrypt", map[string]any{"ciphertext_blob": enc["ciphertext_blob"]})
	}
	admin.must(200, "POST", "/v1/keys/"+k["key_id"].(string)+"/rotate", nil)
	admin.do("POST", "/v1/encrypt", map[string]any{"key_id": "alias/none", "plaintext": b64("x")}) // a failure
	newCaller(t, s.URL, "wrong-token-0123456789").do("GET", "/v1/keys", nil)                       // a refusal
	return s, admin, raw
}

func verify(t *testing.T, admin caller) map[string]any {
	t.Helper()
	return admin.must(200, "GET", "/v1/audit/verify", nil)
}

func exec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// Editing, deleting or reordering one audit row, even with its hash
// recomputed, is detected by verify, which names the first broken record.
func TestAuditVerifyDetectsTampering(t *testing.T) {
	cases := []struct {
		name       string
		tamper     func(t *testing.T, db *sql.DB)
		firstBroke int64
	}{
		{"edit a field", func(t *testing.T, db *sql.DB) {
			exec(t, db, `UPDATE audit_events SET principal = 'mallory' WHERE seq = 5`)
		}, 5},
		{"edit the outcome", func(t *testing.T, db *sql.DB) {
			exec(t, db, `UPDATE audit_events SET outcome = CASE outcome WHEN 'allowed' THEN 'denied' ELSE 'allowed' END WHERE seq = 10`)
		}, 10},
		{"edit a field and replace its hash", func(t *testing.T, db *sql.DB) {
			exec(t, db, `UPDATE audit_events SET action = 'kms:Nothing', hash = '`+strings.Repeat("ab", 32)+`' WHERE seq = 6`)
		}, 6},
		{"delete a row", func(t *testing.T, db *sql.DB) {
			exec(t, db, `DELETE FROM audit_events WHERE seq = 7`)
		}, 7},
		{"delete the last row", func(t *testing.T, db *sql.DB) {
			exec(t, db, `DELETE FROM audit_events WHERE seq = (SELECT MAX(seq) FROM audit_events)`)
		}, 0},
		{"reorder two rows", func(t *testing.T, db *sql.DB) {
			exec(t, db, `UPDATE audit_events SET seq = -1 WHERE seq = 8`)
			exec(t, db, `UPDATE audit_events SET seq = 8 WHERE seq = 9`)
			exec(t, db, `UPDATE audit_events SET seq = 9 WHERE seq = -1`)
		}, 8},
		{"insert a forged row", func(t *testing.T, db *sql.DB) {
			exec(t, db, `UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 4`)
			exec(t, db, `INSERT INTO audit_events (seq, at, request_id, principal, action, key_id, key_version, outcome, error_code, source, detail, prev_hash, hash)
				SELECT 4, at, 'forged', principal, action, key_id, key_version, outcome, error_code, source, detail, hash, hash FROM audit_events WHERE seq = 3`)
			exec(t, db, `UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1004`)
			// Hide the insertion: as many rows as before, the last one dropped.
			exec(t, db, `DELETE FROM audit_events WHERE seq = (SELECT MAX(seq) FROM audit_events)`)
		}, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, admin, db := auditStack(t)
			if v := verify(t, admin); v["intact"] != true || v["first_broken_seq"].(float64) != 0 {
				t.Fatalf("untouched chain: %v", v)
			}
			var head int64
			if err := db.QueryRow(`SELECT MAX(seq) FROM audit_events`).Scan(&head); err != nil {
				t.Fatal(err)
			}
			tc.tamper(t, db)
			want := tc.firstBroke
			if want == 0 {
				want = head // the missing last record
			}
			v := verify(t, admin)
			if v["intact"] != false {
				t.Fatalf("tampered chain verified intact: %v", v)
			}
			if got := int64(v["first_broken_seq"].(float64)); got != want {
				t.Errorf("first broken record %d, want %d (%v)", got, want, v["reason"])
			}
			if v["reason"] == "" {
				t.Error("no reason given")
			}
		})
	}
}

// The records say who did what to which key and version, with what outcome,
// and carry no plaintext or token.
func TestAuditRecordsContent(t *testing.T) {
	s, admin, _ := auditStack(t)
	recs := listAudit(t, admin, "")
	var sawEncrypt, sawDenied, sawFailed, sawRotate bool
	for _, r := range recs {
		switch {
		case r["action"] == "kms:Encrypt" && r["outcome"] == "allowed":
			sawEncrypt = true
			if r["principal"] != "admin" || r["credential"] != "token:bootstrap" || r["key_id"] == "" || r["key_version"].(float64) < 1 || r["source"] == "" || r["request_id"] == "" {
				t.Errorf("encrypt record lacks who/with what/what/where: %v", r)
			}
		case r["outcome"] == "denied":
			sawDenied = r["error_code"] == "UnauthenticatedException" && r["principal"] == "" && r["credential"] == nil
		case r["outcome"] == "failed":
			sawFailed = r["error_code"] == "NotFoundException"
		case r["action"] == "kms:RotateKey":
			sawRotate = r["key_version"].(float64) == 2
		}
	}
	if !sawEncrypt || !sawDenied || !sawFailed || !sawRotate {
		t.Errorf("records missing: encrypt %v, denied %v, failed %v, rotate %v", sawEncrypt, sawDenied, sawFailed, sawRotate)
	}
	raw, _ := json.Marshal(recs)
	for _, secret := range []string{"audited secret", b64("audited secret"), kmstest.AdminToken, "wrong-token-0123456789"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("audit records contain a secret: %.8s...", secret)
		}
	}
	// Filters.
	k := recs[0]
	for _, r := range listAudit(t, admin, "&principal=admin") {
		if r["principal"] != "admin" {
			t.Errorf("principal filter returned %v", r["principal"])
		}
	}
	var keyID string
	for _, r := range recs {
		if r["key_id"] != "" {
			keyID = r["key_id"].(string)
		}
	}
	for _, r := range listAudit(t, admin, "&key_id="+keyID) {
		if r["key_id"] != keyID {
			t.Errorf("key filter returned %v", r["key_id"])
		}
	}
	if got := listAudit(t, admin, "&from=2999-01-01T00:00:00Z"); len(got) != 0 {
		t.Errorf("from in the future returned %d records", len(got))
	}
	if got := listAudit(t, admin, "&to="+k["time"].(string)); len(got) != 0 {
		t.Errorf("to = the first record's time returned %d records (to is exclusive)", len(got))
	}
	page := admin.must(200, "GET", "/v1/audit?limit=2", nil)
	if len(page["records"].([]any)) != 2 || page["next_token"] == "" {
		t.Errorf("limit=2: %v", page)
	}
	_ = s
}

// A record names the bearer token used by its id, never by its secret, and
// the credential is covered by the hash: changed or removed (to pass for a
// record of before credentials were kept), verify names the record.
func TestAuditRecordsTheTokenIDUsed(t *testing.T) {
	for _, tc := range []struct{ name, set string }{
		{"changed", "'token:0000000000000000'"},
		{"removed", "''"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, admin, db := auditStack(t)
			admin.must(200, "PUT", "/v1/policies/app", map[string]any{"document": map[string]any{"statements": []map[string]any{
				{"effect": "allow", "resources": []string{"*"}, "actions": []string{"kms:Encrypt"}}}}})
			admin.must(201, "POST", "/v1/principals", map[string]any{"name": "app", "policies": []string{"app"}})
			tok := admin.must(201, "POST", "/v1/principals/app/tokens", map[string]any{"description": "audit"})
			bearer, id := tok["token"].(string), tok["token_id"].(string)
			kmstest.Secret(bearer)
			app := newCaller(t, s.URL, bearer)
			app.must(200, "POST", "/v1/encrypt", map[string]any{"key_id": "alias/audited", "plaintext": b64("x")})
			var seq int64
			for _, r := range listAudit(t, admin, "&principal=app") {
				if r["action"] == "kms:Encrypt" {
					if r["credential"] != "token:"+id {
						t.Errorf("credential %v, want token:%s", r["credential"], id)
					}
					seq = int64(r["seq"].(float64))
				}
			}
			if seq == 0 {
				t.Fatal("no record of app's encrypt")
			}
			raw, _ := json.Marshal(listAudit(t, admin, ""))
			if secret := strings.TrimPrefix(bearer, "kms_"+id+"_"); secret == bearer || strings.Contains(string(raw), secret) {
				t.Error("the audit records contain the token's secret (or the token has an unexpected form)")
			}
			if v := verify(t, admin); v["intact"] != true {
				t.Fatalf("untouched chain: %v", v)
			}
			exec(t, db, `UPDATE audit_events SET credential = `+tc.set+` WHERE seq = ?`, seq)
			v := verify(t, admin)
			if v["intact"] != false || int64(v["first_broken_seq"].(float64)) != seq {
				t.Errorf("credential %s: verify %v, want record %d broken", tc.name, v, seq)
			}
		})
	}
}

// A management change and its audit record commit together: if the record
// cannot be written, the change does not happen and the client is told.
// A cryptographic request whose record cannot be written is not answered
// with its result.
func TestAuditFailureMeansNoChangeAndNoAnswer(t *testing.T) {
	fs := kmstest.NewFaultStore(kmstest.Store(t))
	s := kmstest.Start(t, kmstest.Options{Store: fs})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	k := admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/tx"})
	id := k["key_id"].(string)

	fs.FailNextAppend(errors.New("injected: audit append fails"))
	r := admin.do("POST", "/v1/keys/"+id+"/disable", nil)
	if r.status != 500 && r.status != 503 {
		t.Fatalf("disable with a failing audit append: %d %s", r.status, r.body)
	}
	if d := admin.must(200, "GET", "/v1/keys/"+id, nil); d["key_state"] != "Enabled" {
		t.Errorf("the change committed without its audit record: state %v", d["key_state"])
	}

	fs.FailNextAppend(errors.New("injected: audit append fails"))
	r = admin.do("POST", "/v1/encrypt", map[string]any{"key_id": id, "plaintext": b64("unanswered")})
	if r.status != 503 || strings.Contains(string(r.body), "ciphertext_blob") {
		t.Errorf("encrypt whose record failed: %d %s, want 503 without a result", r.status, r.body)
	}
	if v := verify(t, admin); v["intact"] != true {
		t.Errorf("chain broken after failed appends: %v", v)
	}
}

// One record the store refuses fails only its own request: the others of
// its group commit are written one by one and answered.
func TestAuditGroupCommitSurvivesOneRefusedRecord(t *testing.T) {
	fs := kmstest.NewFaultStore(kmstest.Store(t))
	s := kmstest.Start(t, kmstest.Options{Store: fs})
	ctx := kmstest.Ctx(t)
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	poisoned := admin.must(201, "POST", "/v1/keys", nil)["key_id"].(string)
	fs.RefuseAudit(func(e *service.AuditEvent) bool { return e.KeyID == poisoned })
	before := len(admin.must(200, "GET", "/v1/audit?limit=1000", nil)["records"].([]any))

	// A first request's commit is held, so the next ones queue up as one batch.
	c := client.New(s.URL, kmstest.AdminToken, nil)
	entered, release := fs.HoldNextGroupCommit()
	errs := make(chan error, 6)
	go func() { _, err := c.GenerateRandom(ctx, 8); errs <- err }()
	<-entered
	const good = 4
	for i := 0; i < good; i++ {
		go func() { _, err := c.GenerateRandom(ctx, 8); errs <- err }()
	}
	go func() { _, err := c.DescribeKey(ctx, poisoned); errs <- err }()
	for s.Service.Audit.AuditQueueDepth() < good+2 {
		if ctx.Err() != nil {
			t.Fatalf("only %d records queued", s.Service.Audit.AuditQueueDepth())
		}
		time.Sleep(time.Millisecond)
	}
	release()

	var ok, unavailable int
	for i := 0; i < good+2; i++ {
		switch err := <-errs; {
		case err == nil:
			ok++
		case client.Code(err) == api.CodeUnavailable:
			unavailable++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != good+1 || unavailable != 1 {
		t.Fatalf("%d answered, %d unavailable; want %d and 1", ok, unavailable, good+1)
	}
	after := admin.must(200, "GET", "/v1/audit?limit=1000", nil)["records"].([]any)
	// +1: the audit read above is itself a record.
	if got := len(after) - before; got != good+1+1 {
		t.Errorf("%d new records, want %d", got, good+2)
	}
	if v := verify(t, admin); v["intact"] != true {
		t.Errorf("chain broken: %v", v)
	}
}

// rechain recomputes every hash from the first record on, and the head, as
// an attacker with write access to the database and the source code would.
func rechain(t *testing.T, db *sql.DB) {
	t.Helper()
	rows, err := db.Query(`SELECT seq, at, request_id, principal, action, key_id, key_version, outcome, error_code, source, detail FROM audit_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var events []service.AuditEvent
	for rows.Next() {
		var e service.AuditEvent
		var at int64
		if err := rows.Scan(&e.Seq, &at, &e.RequestID, &e.Principal, &e.Action, &e.KeyID, &e.KeyVersion, &e.Outcome, &e.ErrorCode, &e.Source, &e.Detail); err != nil {
			t.Fatal(err)
		}
		e.At = time.UnixMicro(at).UTC()
		events = append(events, e)
	}
	rows.Close()
	prev := service.AuditGenesisHash
	for i := range events {
		e := &events[i]
		e.PrevHash = prev
		e.Hash = service.HashAuditEvent(e)
		exec(t, db, `UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?`, e.PrevHash, e.Hash, e.Seq)
		prev = e.Hash
	}
	exec(t, db, `UPDATE audit_head SET seq = ?, hash = ?`, events[len(events)-1].Seq, prev)
}

// Seals made in the token catch what the hash chain alone cannot: a record
// rewritten with every later hash recomputed, and a seal cut off the end.
func TestAuditSealsCatchARecomputedChain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, db *sql.DB)
	}{
		{"rewrite a sealed record and recompute the chain", func(t *testing.T, db *sql.DB) {
			exec(t, db, `UPDATE audit_events SET principal = 'mallory' WHERE seq = 5`)
			rechain(t, db)
		}},
		{"drop the last seal and recompute the chain", func(t *testing.T, db *sql.DB) {
			var last int64
			if err := db.QueryRow(`SELECT MAX(seq) FROM audit_events WHERE action = 'kms:AuditSeal'`).Scan(&last); err != nil {
				t.Fatal(err)
			}
			exec(t, db, `DELETE FROM audit_events WHERE seq = ?`, last)
			exec(t, db, `UPDATE audit_events SET seq = seq + 1000000 WHERE seq > ?`, last)
			exec(t, db, `UPDATE audit_events SET seq = seq - 1000001 WHERE seq > 1000000`)
			rechain(t, db)
		}},
		{"forge a seal", func(t *testing.T, db *sql.DB) {
			exec(t, db, `UPDATE audit_events SET detail = replace(detail, '"seal":"', '"seal":"AAAA') WHERE action = 'kms:AuditSeal'`)
			rechain(t, db)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, admin, db := auditStack(t)
			ctx := kmstest.Ctx(t)
			if err := s.Service.Audit.SealAudit(ctx); err != nil {
				t.Fatal(err)
			}
			admin.must(200, "GET", "/v1/keys", nil)
			if err := s.Service.Audit.SealAudit(ctx); err != nil {
				t.Fatal(err)
			}
			admin.must(200, "GET", "/v1/keys", nil)
			v := verify(t, admin)
			if v["intact"] != true || v["seals"].(float64) != 2 || v["sealed_seq"].(float64) < 10 {
				t.Fatalf("sealed, untouched chain: %v", v)
			}
			tc.tamper(t, db)
			v = verify(t, admin)
			if v["intact"] != false || v["reason"] == "" {
				t.Fatalf("tampered chain with recomputed hashes verified: %v", v)
			}
			if err := s.Service.Audit.SealAudit(ctx); err == nil && tc.name != "forge a seal" {
				t.Error("the service sealed over a rewritten chain")
			}
			t.Logf("verify: %v", v["reason"])
		})
	}
}

// The reconciler leaves the seal key alone even when it may destroy
// objects it does not know.
func TestReconcilerKeepsTheSealKey(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{Config: service.Config{DestroyUnknownObjects: true}})
	ctx := kmstest.Ctx(t)
	newCaller(t, s.URL, kmstest.AdminToken).must(200, "GET", "/v1/keys", nil)
	if err := s.Service.Audit.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Service.Worker.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	newCaller(t, s.URL, kmstest.AdminToken).must(200, "GET", "/v1/keys", nil)
	if err := s.Service.Audit.SealAudit(ctx); err != nil {
		t.Fatalf("seal after the reconciler ran: %v", err)
	}
	if v, err := s.Service.Audit.VerifyAudit(ctx); err != nil || !v.Intact || v.Seals != 2 {
		t.Fatalf("verify: %v %+v", err, v)
	}
}

// A panic below a handler is a 500 KMSInternalException that says nothing
// of the panic, it has its audit record, and the process keeps serving.
func TestPanicIsAnAudited500(t *testing.T) {
	ft := kmstest.NewFaultToken(kmstest.Token(t))
	s := kmstest.Start(t, kmstest.Options{Token: ft})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	id := admin.must(201, "POST", "/v1/keys", nil)["key_id"].(string)

	ft.FailNext("Encrypt", kmstest.Panic("injected bug 7f3a"))
	r := admin.do("POST", "/v1/encrypt", map[string]any{"key_id": id, "plaintext": b64("x")})
	var body struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &body)
	if r.status != 500 || body.Error.Code != api.CodeInternal || strings.Contains(string(r.body), "7f3a") {
		t.Fatalf("panicking encrypt: %d %s", r.status, r.body)
	}
	recs := admin.must(200, "GET", "/v1/audit?key_id="+id, nil)["records"].([]any)
	last := recs[len(recs)-1].(map[string]any)
	if last["request_id"] != r.requestID || last["outcome"] != "failed" || last["error_code"] != api.CodeInternal {
		t.Errorf("audit record of the panicking request: %v (request id %s)", last, r.requestID)
	}
	admin.must(200, "POST", "/v1/encrypt", map[string]any{"key_id": id, "plaintext": b64("x")})
}

// A token that cannot answer while the seals are checked is a 503, not a
// verdict: the log was not found broken, it was not checked.
func TestAuditVerifyWithTheTokenDownIsUnavailable(t *testing.T) {
	ft := kmstest.NewFaultToken(kmstest.Token(t))
	s := kmstest.Start(t, kmstest.Options{Token: ft})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	admin.must(201, "POST", "/v1/keys", nil)
	if err := s.Service.Audit.SealAudit(kmstest.Ctx(t)); err != nil {
		t.Fatal(err)
	}
	ft.FailNext("Decrypt", hsm.ErrUnavailable)
	if r := admin.do("GET", "/v1/audit/verify", nil); r.status != 503 || r.code() != api.CodeUnavailable {
		t.Fatalf("verify with the token down: %d %s, want 503", r.status, r.body)
	}
	if v := verify(t, admin); v["intact"] != true || v["seals"] != float64(1) {
		t.Fatalf("verify once the token is back: %v", v)
	}
}

// Requests under /v1 that match no route (an unknown path, a method the
// path does not take) have their record too; paths outside /v1 do not.
func TestUnroutedRequestsAreAudited(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	count := func() int { return len(listAudit(t, admin, "")) }
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/nothing", 404, "NotFoundException"},
		{"DELETE", "/v1/encrypt", 405, "ValidationException"},
		{"GET", "/v1/keys/alias/team/app", 404, "NotFoundException"},
	} {
		before := count()
		r := admin.do(tc.method, tc.path, nil)
		if r.status != tc.status || r.code() != tc.code {
			t.Fatalf("%s %s: %d %s", tc.method, tc.path, r.status, r.body)
		}
		recs := listAudit(t, admin, "")
		// +1 for the listing in count(), +1 for this request.
		if len(recs) != before+2 {
			t.Fatalf("%s %s: %d new records, want 2", tc.method, tc.path, len(recs)-before)
		}
		var found bool
		for _, rec := range recs {
			if rec["request_id"] == r.requestID {
				found = rec["action"] == api.ActionUnknown && rec["outcome"] == "failed" && rec["error_code"] == tc.code &&
					rec["principal"] == "admin"
			}
		}
		if !found {
			t.Errorf("%s %s: no record %s/failed/%s of principal admin with its request id", tc.method, tc.path, api.ActionUnknown, tc.code)
		}
		// Without a valid token the same request is refused before routing
		// says anything about the path, and the refusal is recorded.
		for _, token := range []string{"", "not-a-token-of-anyone-at-all"} {
			anon := newCaller(t, s.URL, token)
			r := anon.do(tc.method, tc.path, nil)
			if r.status != 401 || r.code() != "UnauthenticatedException" {
				t.Errorf("%s %s with token %q: %d %s, want 401", tc.method, tc.path, token, r.status, r.body)
			}
			found = false
			for _, rec := range listAudit(t, admin, "") {
				if rec["request_id"] == r.requestID {
					found = rec["action"] == api.ActionUnknown && rec["outcome"] == "denied"
				}
			}
			if !found {
				t.Errorf("%s %s with token %q: no denied record", tc.method, tc.path, token)
			}
		}
	}
	before := count()
	if r := admin.do("GET", "/nothing", nil); r.status != 404 {
		t.Fatalf("GET /nothing: %d", r.status)
	}
	if got := count() - before; got != 1 { // the listing only
		t.Errorf("a path outside /v1 made %d records", got-1)
	}
}
