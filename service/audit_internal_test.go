package service

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDetailJSONIsJSONMarshal: the hand-written encoder of a record's
// detail writes what json.Marshal writes, byte for byte, escapes included.
func TestDetailJSONIsJSONMarshal(t *testing.T) {
	for _, d := range []map[string]string{
		{"batch_item": "0"},
		{"batch_item": "31", "object": "hsmkms/5ea1a0d1-0000-4000-8000-000000000002/v1", "a": ""},
		{"quote\"": "back\\slash", "html": "<a href='x'>&</a>"},
		{"ctl": "tab\tnew\nline\x00\x1f", "del": "\x7f"},
		{"unicode": "grüße, 鍵, \u2028\u2029", "bad utf-8": "\xff\xfe", "": "empty key"},
	} {
		want, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if got := detailJSON(d); got != string(want) {
			t.Errorf("detailJSON(%q) = %s, want %s", d, got, want)
		}
	}
	if got := detailJSON(nil); got != "" {
		t.Errorf("detailJSON(nil) = %q, want empty", got)
	}
}

// hashFieldByField is the chain's hash (v1, and v2 with a credential) as
// first written: each field written to the hash in turn. HashAuditEvent
// must give the same hash for every record, or the chains written before
// would no longer verify.
func hashFieldByField(e *AuditEvent) string {
	h := sha256.New()
	var n [8]byte
	field := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	if e.Credential == "" {
		field("hsmkms-audit-v1")
	} else {
		field("hsmkms-audit-v2")
	}
	field(e.PrevHash)
	field(strconv.FormatInt(e.Seq, 10))
	field(strconv.FormatInt(e.At.UTC().Truncate(time.Microsecond).UnixMicro(), 10))
	field(e.RequestID)
	field(e.Principal)
	if e.Credential != "" {
		field(e.Credential)
	}
	field(e.Action)
	field(e.KeyID)
	field(strconv.Itoa(e.KeyVersion))
	field(e.Outcome)
	field(e.ErrorCode)
	field(e.Source)
	field(e.Detail)
	return hex.EncodeToString(h.Sum(nil))
}

func TestHashAuditEventIsFieldByField(t *testing.T) {
	at := time.Date(2026, 12, 2, 1, 2, 3, 456789123, time.FixedZone("x", 3600))
	for _, e := range []*AuditEvent{
		{},
		{Seq: 1, PrevHash: AuditGenesisHash, At: at, RequestID: "r", Principal: "app", Action: ActEncrypt,
			KeyID: "5ea1a0d1-0000-4000-8000-00000000000a", KeyVersion: 3, Outcome: OutcomeAllowed, Source: "127.0.0.1",
			Detail: `{"batch_item":"7"}`},
		{Seq: -5, At: at.Add(-100 * 365 * 24 * time.Hour), KeyVersion: -1, Outcome: OutcomeFailed, ErrorCode: "ValidationException"},
		{Seq: 1 << 62, Detail: strings.Repeat("long detail past the stack buffer ", 40), Principal: "grüße"},
		{Seq: 2, PrevHash: AuditGenesisHash, At: at, Principal: "app", Credential: "token:5ea1a0d1", Action: ActDecrypt, Outcome: OutcomeDenied},
	} {
		if got, want := HashAuditEvent(e), hashFieldByField(e); got != want {
			t.Errorf("HashAuditEvent(%+v) = %s, want %s", e, got, want)
		}
	}
}
