package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// batchResults decodes a 200 batch answer.
func batchResults(t *testing.T, r reply) []map[string]any {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("batch: status %d: %s", r.status, r.body)
	}
	var out struct {
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	return out.Results
}

func errCode(res map[string]any) string {
	e, _ := res["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// recordsOf returns the audit records of one request id, oldest first.
func recordsOf(t *testing.T, admin caller, requestID string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range listAudit(t, admin, "") {
		if r["request_id"] == requestID {
			out = append(out, r)
		}
	}
	return out
}

// A batch of good and bad items: each item gets what the single call gets
// (its response or its error, in its place), is authorised on its own key,
// and has its own audit record with the same key, outcome and code as the
// single call's; the batch has one record of its own.
func TestBatchMixedItems(t *testing.T) {
	f := newAccessFixture(t)
	mine := f.admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/app-batch"})
	theirs := f.admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/theirs"})
	encItems := []map[string]any{
		{"key_id": "alias/app-batch", "plaintext": b64("batch one")},
		{"key_id": "alias/app-batch", "plaintext": "not base64!"},
		{"key_id": "alias/theirs", "plaintext": b64("denied")},
		{"key_id": "alias/app-none", "plaintext": b64("no such key")},
		{"key_id": "alias/app-batch", "plaintext": b64("batch two"), "encryption_context": map[string]string{"app": "x"}},
		{"key_id": "alias/app-batch"},
	}
	wantEnc := []string{"", "ValidationException", "AccessDeniedException", "NotFoundException", "", "ValidationException"}

	r := f.app.do("POST", "/v1/batch/encrypt", map[string]any{"items": encItems})
	res := batchResults(t, r)
	if len(res) != len(encItems) {
		t.Fatalf("%d results for %d items", len(res), len(encItems))
	}
	for i, want := range wantEnc {
		if got := errCode(res[i]); got != want {
			t.Errorf("encrypt item %d: code %q, want %q (%v)", i, got, want, res[i])
		}
		if want == "" && (res[i]["key_id"] != mine["key_id"] || res[i]["ciphertext_blob"] == nil) {
			t.Errorf("encrypt item %d: %v, want a blob of %v", i, res[i], mine["key_id"])
		}
	}

	// The single calls, for comparison of answers and records.
	var singles []reply
	for _, it := range encItems {
		singles = append(singles, f.app.do("POST", "/v1/encrypt", it))
	}
	for i, s := range singles {
		if s.code() != errCode(res[i]) {
			t.Errorf("item %d: batch code %q, single call %q", i, errCode(res[i]), s.code())
		}
	}

	// Decrypt: the two blobs, one with the wrong context, a blob of a key
	// app may not use (made by admin), garbage.
	theirsBlob := f.admin.must(200, "POST", "/v1/encrypt", map[string]any{"key_id": "alias/theirs", "plaintext": b64("theirs")})
	decItems := []map[string]any{
		{"ciphertext_blob": res[0]["ciphertext_blob"]},
		{"ciphertext_blob": res[4]["ciphertext_blob"], "encryption_context": map[string]string{"app": "x"}},
		{"ciphertext_blob": res[4]["ciphertext_blob"], "encryption_context": map[string]string{"app": "y"}},
		{"ciphertext_blob": theirsBlob["ciphertext_blob"]},
		{"ciphertext_blob": base64.StdEncoding.EncodeToString([]byte("garbage garbage garbage garbage garbage"))},
		{"ciphertext_blob": res[0]["ciphertext_blob"], "key_id": theirs["key_id"]},
	}
	wantDec := []string{"", "", "InvalidCiphertextException", "AccessDeniedException", "InvalidCiphertextException", ""}
	dr := f.app.do("POST", "/v1/batch/decrypt", map[string]any{"items": decItems})
	dres := batchResults(t, dr)
	for i, it := range decItems {
		single := f.app.do("POST", "/v1/decrypt", it)
		if got := errCode(dres[i]); got != single.code() || (wantDec[i] != "" && got != wantDec[i]) {
			t.Errorf("decrypt item %d: batch %q, single call %q, want %q", i, got, single.code(), wantDec[i])
		}
	}
	if dres[5]["error"] == nil {
		t.Errorf("decrypt naming another key than the blob's succeeded: %v", dres[5])
	}
	for i, want := range []string{"batch one", "batch two"} {
		if dres[i]["plaintext"] != base64.StdEncoding.EncodeToString([]byte(want)) || dres[i]["key_id"] != mine["key_id"] {
			t.Errorf("decrypt item %d: %v", i, dres[i])
		}
	}

	// Records: one per item, in order, like the single call's, plus the
	// batch's own.
	for _, c := range []struct {
		batch   reply
		action  string
		singles func(i int) reply
		n       int
	}{
		{r, "kms:Encrypt", func(i int) reply { return singles[i] }, len(encItems)},
	} {
		recs := recordsOf(t, f.admin, c.batch.requestID)
		if len(recs) != c.n+1 {
			t.Fatalf("%d records for a batch of %d, want %d", len(recs), c.n, c.n+1)
		}
		items, own := recs[:c.n], recs[c.n]
		if own["action"] != "kms:BatchEncrypt" || own["outcome"] != "allowed" || own["principal"] != "app" {
			t.Errorf("the batch's own record: %v", own)
		}
		byItem := map[string]map[string]any{}
		for _, rec := range items {
			var d map[string]string
			_ = json.Unmarshal([]byte(rec["detail"].(string)), &d)
			byItem[d["batch_item"]] = rec
		}
		for i := range c.n {
			rec := byItem[fmt.Sprint(i)]
			single := recordsOf(t, f.admin, c.singles(i).requestID)
			if rec == nil || len(single) != 1 {
				t.Fatalf("item %d: record %v, single call's records %v", i, rec, single)
			}
			for _, field := range []string{"action", "principal", "key_id", "key_version", "outcome", "error_code", "source"} {
				if rec[field] != single[0][field] {
					t.Errorf("item %d: record %s = %v, the single call's %v", i, field, rec[field], single[0][field])
				}
			}
			if rec["action"] != c.action {
				t.Errorf("item %d: action %v", i, rec["action"])
			}
		}
		if recs := byItem["2"]; recs["key_id"] != theirs["key_id"] || recs["outcome"] != "denied" {
			t.Errorf("the denied item's record names %v, outcome %v; want %v, denied", recs["key_id"], recs["outcome"], theirs["key_id"])
		}
	}
	decRecs := recordsOf(t, f.admin, dr.requestID)
	if len(decRecs) != len(decItems)+1 || decRecs[len(decItems)]["action"] != "kms:BatchDecrypt" {
		t.Errorf("decrypt batch: %d records, last %v", len(decRecs), decRecs[len(decRecs)-1])
	}
	if v := verify(t, f.admin); v["intact"] != true {
		t.Errorf("chain after batches: %v", v)
	}
}

// Bad batches are refused whole, with a clear error and no item done or
// audited: 0 and 101 items, no items, not an array, unknown fields, a body
// over the limit. 100 items of the largest plaintext fit.
func TestBatchLimits(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	k := admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/limits"})
	item := map[string]any{"key_id": "alias/limits", "plaintext": b64("x")}
	items := func(n int) []map[string]any {
		out := make([]map[string]any, n)
		for i := range out {
			out[i] = item
		}
		return out
	}
	countEncrypts := func() int {
		n := 0
		for _, r := range listAudit(t, admin, "&key_id="+k["key_id"].(string)) {
			if r["action"] == "kms:Encrypt" {
				n++
			}
		}
		return n
	}
	before := countEncrypts()
	for _, c := range []struct {
		name   string
		path   string
		body   any
		status int
		code   string
		msg    string
	}{
		{"no items", "/v1/batch/encrypt", map[string]any{"items": []any{}}, 400, "ValidationException", "1 to 100 items"},
		{"101 items", "/v1/batch/encrypt", map[string]any{"items": items(101)}, 400, "ValidationException", "1 to 100 items"},
		{"101 decrypt items", "/v1/batch/decrypt", map[string]any{"items": make([]map[string]any, 101)}, 400, "ValidationException", "1 to 100 items"},
		{"items missing", "/v1/batch/encrypt", map[string]any{}, 400, "ValidationException", "1 to 100 items"},
		{"items not an array", "/v1/batch/encrypt", map[string]any{"items": item}, 400, "ValidationException", "items"},
		{"unknown field in an item", "/v1/batch/encrypt", map[string]any{"items": []any{map[string]any{"key_id": "alias/limits", "plaintext": b64("x"), "extra": 1}}}, 400, "ValidationException", "extra"},
		{"unknown top-level field", "/v1/batch/decrypt", map[string]any{"items": []any{}, "more": true}, 400, "ValidationException", "more"},
	} {
		r := admin.do("POST", c.path, c.body)
		if r.status != c.status || r.code() != c.code || !strings.Contains(string(r.body), c.msg) {
			t.Errorf("%s: %d %s, want %d %s naming %q", c.name, r.status, r.body, c.status, c.code, c.msg)
		}
	}

	// Over the body limit (1 MiB): 413, whatever the item count.
	big := bytes.Repeat([]byte("a"), 3000)
	bigItem := map[string]any{"key_id": "alias/limits", "plaintext": base64.StdEncoding.EncodeToString(big)}
	many := make([]map[string]any, 0, 400)
	for range 400 {
		many = append(many, bigItem)
	}
	if r := admin.do("POST", "/v1/batch/encrypt", map[string]any{"items": many}); r.status != http.StatusRequestEntityTooLarge || r.code() != "ValidationException" {
		t.Errorf("a body over 1 MiB: %d %s", r.status, r.body)
	}
	if n := countEncrypts(); n != before {
		t.Fatalf("refused batches left %d item records", n-before)
	}

	// 100 items of 4096 bytes: over the single calls' 64 KiB, within the
	// batch limit.
	full := map[string]any{"key_id": "alias/limits", "plaintext": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 4096))}
	hundred := make([]map[string]any, 100)
	for i := range hundred {
		hundred[i] = full
	}
	res := batchResults(t, admin.do("POST", "/v1/batch/encrypt", map[string]any{"items": hundred}))
	for i, r := range res {
		if r["error"] != nil {
			t.Fatalf("item %d of a full batch: %v", i, r)
		}
	}
	if n := countEncrypts(); n != before+100 {
		t.Errorf("a batch of 100: %d item records, want 100", n-before)
	}
	// A plaintext over 4096 bytes is the item's error, as for the single call.
	over := map[string]any{"key_id": "alias/limits", "plaintext": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 4097))}
	res = batchResults(t, admin.do("POST", "/v1/batch/encrypt", map[string]any{"items": []any{over, item}}))
	if errCode(res[0]) != "ValidationException" || res[1]["error"] != nil {
		t.Errorf("an oversized plaintext in a batch: %v", res)
	}
}

// A batch whose item record cannot be written is answered 503 without
// any result: no item's answer leaves without its record.
func TestBatchFailsClosedWithoutItsRecords(t *testing.T) {
	fs := kmstest.NewFaultStore(kmstest.Store(t))
	s := kmstest.Start(t, kmstest.Options{Store: fs})
	admin := newCaller(t, s.URL, kmstest.AdminToken)
	admin.must(201, "POST", "/v1/keys", map[string]any{"alias": "alias/closed"})
	fs.FailNextAppend(errors.New("injected: audit append fails"))
	r := admin.do("POST", "/v1/batch/encrypt", map[string]any{"items": []any{map[string]any{"key_id": "alias/closed", "plaintext": b64("unanswered")}}})
	if r.status != 503 || r.code() != "KeyUnavailableException" || strings.Contains(string(r.body), "ciphertext_blob") {
		t.Errorf("batch whose item record failed: %d %s, want 503 without a result", r.status, r.body)
	}
	if v := verify(t, admin); v["intact"] != true {
		t.Errorf("chain broken after a failed append: %v", v)
	}
}
