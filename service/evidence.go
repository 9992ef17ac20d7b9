package service

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Evidence for destruction. The database says which key is PendingDeletion
// and when its window ends; whoever can write the database could say so of
// any key, with a date already past. So a token object is destroyed only on
// evidence that writer cannot forge: the sealed audit record of the request
// that scheduled it (ScheduleKeyDeletion, or ScheduleVersionDestruction),
// which carries the window that applied, and whose window has passed by the
// service's clock. Sealed means that a seal made in the token covers the
// record: its hash chains to a hash the seal key encrypted, which nobody
// without the token can make. The latest such request for the key (or the
// version) must be the schedule, not a cancellation.

// Detail fields of the records that schedule or cancel a destruction.
const (
	detailWindow        = "window"         // the pending window, a Go duration
	detailDestroyAt     = "destroy_at"     // when it ends, RFC 3339
	detailVersionAction = "version_action" // of kms:UpdateKeyVersion
	versionScheduleDest = "schedule-destruction"
	versionCancelDest   = "cancel-destruction"
)

// errNoEvidence is a destruction the sealed audit trail does not support.
var errNoEvidence = errors.New("no sealed audit record of a destruction request whose window has passed")

// noteSchedule adds what the evidence check reads to a schedule's record.
func noteSchedule(ctx context.Context, window time.Duration, at time.Time) {
	noteDetail(ctx, detailWindow, window.String())
	noteDetail(ctx, detailDestroyAt, at.UTC().Format(time.RFC3339Nano))
}

// withRecord gives a request that carries no activity (the system's own
// calls) one, so that a schedule is always on the record: without its
// record it would never be carried out.
func (s *Keys) withRecord(ctx context.Context, action string) context.Context {
	if !s.audit.AuditEnabled() || activityFrom(ctx) != nil {
		return ctx
	}
	return withActivity(ctx, systemActivity(action, ""))
}

// destructionEvidence checks that the sealed audit trail holds the request
// that scheduled the destruction of key id (version 0: the whole key, by
// ScheduleKeyDeletion; else that version, by ScheduleVersionDestruction or
// by the deletion of the key) and that its window has passed at now.
func (s *Audit) destructionEvidence(ctx context.Context, id string, version int, now time.Time) error {
	if s.w == nil {
		return fmt.Errorf("%w: auditing is off", errNoEvidence)
	}
	recs, err := s.listAll(ctx, AuditFilter{KeyID: id, Actions: []string{ActScheduleDeletion, ActCancelDeletion, ActUpdateKeyVersion}})
	if err != nil {
		return err
	}
	// The latest request about the key's deletion, and about the version's
	// destruction.
	var keyReq, verReq *AuditEvent
	for i := range recs {
		e := &recs[i]
		if e.Outcome != OutcomeAllowed {
			continue
		}
		switch e.Action {
		case ActScheduleDeletion, ActCancelDeletion:
			keyReq = e
		case ActUpdateKeyVersion:
			if version != 0 && e.KeyVersion == version {
				if va := detailOf(e)[detailVersionAction]; va == versionScheduleDest || va == versionCancelDest {
					verReq = e
				}
			}
		}
	}
	why := ""
	for _, e := range []*AuditEvent{verReq, keyReq} {
		if e == nil || (e == keyReq && e.Action != ActScheduleDeletion) ||
			(e == verReq && detailOf(e)[detailVersionAction] != versionScheduleDest) {
			continue
		}
		w, err := time.ParseDuration(detailOf(e)[detailWindow])
		if err != nil || w <= 0 {
			why = fmt.Sprintf("record %d names no window", e.Seq)
			continue
		}
		if e.At.Add(w).After(now) {
			why = fmt.Sprintf("the window of record %d ends at %s", e.Seq, e.At.Add(w).Format(time.RFC3339))
			continue
		}
		ok, err := s.sealed(ctx, e)
		if err != nil {
			return err
		}
		if !ok {
			why = fmt.Sprintf("record %d is not covered by a seal that verifies", e.Seq)
			continue
		}
		return nil
	}
	if why == "" {
		return errNoEvidence
	}
	return fmt.Errorf("%w (%s)", errNoEvidence, why)
}

// listAll is every audit record matching f, oldest first.
func (s *Audit) listAll(ctx context.Context, f AuditFilter) ([]AuditEvent, error) {
	const page = 1000
	var out []AuditEvent
	for {
		f.Limit = page
		rows, err := s.store.ListAudit(ctx, f)
		if err != nil {
			return nil, s.storeErr(err)
		}
		out = append(out, rows...)
		if len(rows) < page {
			return out, nil
		}
		f.AfterSeq = rows[len(rows)-1].Seq
	}
}

func detailOf(e *AuditEvent) map[string]string {
	var d map[string]string
	_ = json.Unmarshal([]byte(e.Detail), &d)
	return d
}

// sealed reports whether the record e, as read, is covered by a seal: the
// records from e to the first seal after it must chain (each record's hash
// is its contents', each prev_hash its predecessor's hash), and the seal
// must decrypt, in the token, to the hash of the record it names. That is
// about a second's worth of records.
func (s *Audit) sealed(ctx context.Context, e *AuditEvent) (bool, error) {
	if HashAuditEvent(e) != e.Hash {
		return false, nil
	}
	hashes := map[int64]string{e.Seq: e.Hash}
	prevSeq, prevHash := e.Seq, e.Hash
	for {
		rows, err := s.store.ListAudit(ctx, AuditFilter{AfterSeq: prevSeq, Limit: 1000})
		if err != nil {
			return false, s.storeErr(err)
		}
		if len(rows) == 0 {
			return false, nil // no seal yet
		}
		for i := range rows {
			r := &rows[i]
			if r.Seq != prevSeq+1 || r.PrevHash != prevHash || HashAuditEvent(r) != r.Hash {
				return false, nil
			}
			if r.Action == ActAuditSeal && r.Principal == "system" {
				var d sealDetail
				if err := json.Unmarshal([]byte(r.Detail), &d); err != nil {
					return false, nil
				}
				want, ok := hashes[d.SealedSeq]
				if !ok {
					// A seal of a head before e (a replica's, late): the
					// next seal covers e.
					if d.SealedSeq < e.Seq {
						prevSeq, prevHash = r.Seq, r.Hash
						hashes[r.Seq] = r.Hash
						continue
					}
					return false, nil
				}
				return s.sealOpens(ctx, d, want)
			}
			hashes[r.Seq] = r.Hash
			prevSeq, prevHash = r.Seq, r.Hash
		}
	}
}

// sealOpens decrypts the seal d in the token and compares it with want.
func (s *Audit) sealOpens(ctx context.Context, d sealDetail, want string) (bool, error) {
	iv, err1 := base64.StdEncoding.DecodeString(d.IV)
	sealed, err2 := base64.StdEncoding.DecodeString(d.Seal)
	key, ok := sealKeyOf(d)
	if err1 != nil || err2 != nil || !ok {
		return false, nil
	}
	got, err := s.token.Decrypt(ctx, key, iv, sealed, sealAAD(d.SealedSeq, d.PrevSealSeq))
	if err != nil {
		if errors.Is(s.tokenErr(err), ErrUnavailable) {
			return false, s.tokenErr(err)
		}
		return false, nil
	}
	return hex.EncodeToString(got) == want, nil
}

// refusals remembers the destructions refused, so that each is reported
// once per process (log and audit record), not at every pass; the count
// is a metric.
type refusals struct {
	mu   sync.Mutex
	seen map[string]bool
}

// refuse reports a destruction the evidence does not support, or an
// object without a version row (what: "destroy", "orphan").
func (s *Worker) refuse(ctx context.Context, action, id string, version int, label string, why error) {
	k := action + "|" + id + "|" + itoa(version) + "|" + label
	s.refused.mu.Lock()
	if s.refused.seen == nil {
		s.refused.seen = map[string]bool{}
	}
	first := !s.refused.seen[k]
	s.refused.seen[k] = true
	n := len(s.refused.seen)
	s.refused.mu.Unlock()
	s.stats.destructionsRefused.Store(int64(n))
	if !first {
		return
	}
	s.log.Error("token object kept: the database asks for its destruction without evidence",
		"action", action, "key_id", id, "version", version, "label", label, "reason", why.Error())
	if !s.audit.AuditEnabled() {
		return
	}
	a := systemActivity(action, id, "refused", why.Error())
	if label != "" {
		a.detail["object"] = label
	}
	a.keyVersion = version
	if err := s.audit.w.append(context.WithoutCancel(ctx), a.event(s.clock.Now(), OutcomeDenied, "")); err != nil {
		s.log.Error("audit record of a refused destruction not written", "err", err)
	}
}

// auditDestroyed records a token object destroyed outside a transaction
// (the reconciler's).
func (s *Worker) auditDestroyed(ctx context.Context, action, id string, version int, label, why string) {
	s.log.Warn("token object destroyed", "action", action, "key_id", id, "version", version, "label", label, "reason", why)
	if !s.audit.AuditEnabled() {
		return
	}
	a := systemActivity(action, id, "object", label, "reason", why)
	a.keyVersion = version
	if err := s.audit.w.append(context.WithoutCancel(ctx), a.event(s.clock.Now(), OutcomeAllowed, "")); err != nil {
		s.log.Error("audit record of a destruction not written", "err", err)
	}
}
