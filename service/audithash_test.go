package service

import (
	"testing"
	"time"
)

// Known answers for the chain hash, computed outside Go from the
// documented algorithm (docs/access.md): v1 is the hash of every record
// written before credentials were kept, and must never change, or those
// records stop verifying; v2 adds the credential after the principal.
func TestHashAuditEventKnownAnswers(t *testing.T) {
	base := AuditEvent{Seq: 7, At: time.UnixMicro(1764639129123456).In(time.FixedZone("x", 3600)),
		RequestID: "req-1", Principal: "app", Action: ActEncrypt,
		KeyID: "3f1c9a52-6a3e-4b8e-9a51-1c2d3e4f5a6b", KeyVersion: 2, Outcome: OutcomeAllowed,
		Source: "10.0.0.5", Detail: `{"alias":"alias/app"}`, PrevHash: AuditGenesisHash}
	withCredential := base
	withCredential.Credential = "token:0123456789abcdef"
	otherCredential := base
	otherCredential.Credential = "token:fedcba9876543210"
	cases := []struct {
		name string
		e    AuditEvent
		want string
	}{
		{"v1, no credential", base, "f28ba5b6fb5be1b5247c2d83d63ab1116248069e5a037bfd7d8aea4f72c39113"},
		{"v2, a credential", withCredential, "dd0e54ee392e7e5875c2473a44c1047355cf71ff771320bd4fbd5f10cf382c28"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := HashAuditEvent(&tc.e); got != tc.want {
				t.Errorf("hash %s, want %s", got, tc.want)
			}
		})
	}
	if HashAuditEvent(&otherCredential) == HashAuditEvent(&withCredential) {
		t.Error("the credential is not covered by the hash")
	}
}
