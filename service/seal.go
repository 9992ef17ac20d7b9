package service

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/hsm"
)

// Audit seals. The hash chain shows any edit of a record to someone who
// trusts the hashes that follow it; but whoever can write the database can
// recompute every later hash. A seal closes that gap with the token: every
// second the service encrypts the chain's head hash with AES-GCM under a
// key that lives in the token (sensitive, non-extractable), and appends the
// result to the chain as a record of its own. Nobody without the token can
// make a seal, so rewriting a sealed record, or the chain around it, is
// detected by verify even if every hash was recomputed. Each seal also names
// the previous seal, so dropping a seal breaks the seal chain. Only the
// records appended since the last seal (about a second's worth) are
// protected by the hash chain alone.

// AuditSealKeyID names the token object of the audit seal key. It is not a
// key of the API: the store has no row for it, and the reconciler leaves it.
var AuditSealKeyID = uuid.MustParse("5ea1a0d1-0000-4000-8000-000000000001")

// legacySealRef is the seal key's name before names had a nonce: seals
// that name no key were made under it.
var legacySealRef = hsm.ObjectRef{KeyID: AuditSealKeyID, Version: 1}

// ActAuditSeal is the action of seal records.
const ActAuditSeal = "kms:AuditSeal"

// sealDetail is the detail of a seal record.
type sealDetail struct {
	SealedSeq   int64  `json:"sealed_seq"`
	PrevSealSeq int64  `json:"prev_seal_seq"` // 0 for the first seal
	IV          string `json:"iv"`
	Seal        string `json:"seal"` // AES-GCM of the sealed hash, base64
	// Key is the token label of the seal key, with its nonce; absent in
	// seals made under legacySealRef.
	Key string `json:"key,omitempty"`
}

// sealKeyOf is the seal key a seal record names.
func sealKeyOf(d sealDetail) (hsm.ObjectRef, bool) {
	if d.Key == "" {
		return legacySealRef, true
	}
	ref, err := hsm.ParseLabel(d.Key)
	if err != nil || ref.KeyID != AuditSealKeyID || ref.Version != 1 || ref.Legacy() {
		return hsm.ObjectRef{}, false
	}
	return ref, true
}

func sealAAD(sealedSeq, prevSealSeq int64) []byte {
	return []byte("hsmkms-audit-seal-v1|" + strconv.FormatInt(sealedSeq, 10) + "|" + strconv.FormatInt(prevSealSeq, 10))
}

// sealer remembers the newest seal record this process made or saw, so
// that it notices when that record disappears or changes (someone cutting
// seals off the end to rewrite what they covered) instead of sealing over
// the rewrite.
type sealer struct {
	mu       sync.Mutex
	key      *hsm.ObjectRef // the seal key this process seals with, once known
	lastSeq  int64
	lastHash string
	// anchored: the token's anchor was read (anchor.go); anchoredSeq is
	// the newest seal anchored there.
	anchored    bool
	anchoredSeq int64
	anchorLabel string
}

// errSealGone is the alarm of a seal record that vanished or changed.
var errSealGone = errors.New("the audit chain lost a seal record this service made or saw, or that the token anchors; it will not seal over a rewritten chain")

// checkRemembered proves the remembered seal record is still in the chain.
func (a *Audit) checkRemembered(ctx context.Context) error {
	if a.sealer.lastSeq == 0 {
		return nil
	}
	rows, err := a.store.ListAudit(ctx, AuditFilter{AfterSeq: a.sealer.lastSeq - 1, Limit: 1})
	if err != nil {
		return a.storeErr(err)
	}
	if len(rows) == 0 || rows[0].Seq != a.sealer.lastSeq || rows[0].Hash != a.sealer.lastHash {
		return fmt.Errorf("%w (record %d)", errSealGone, a.sealer.lastSeq)
	}
	return nil
}

// ActAuditSealKey is the action of the record that claims a new seal key:
// it names the key, so that no replica makes another one.
const ActAuditSealKey = "kms:CreateAuditSealKey"

// ensureSealKey finds the seal key this process seals with, under a lock
// every replica respects: the key the newest seal names; before the first
// seal, the key the claim record names; and when neither is there, a new
// one under a name with a fresh nonce, whose claim is appended before the
// lock is released. So replicas started together seal with one key: the
// second to take the lock finds the first one's claim (before the claim,
// each made a key of its own, and one replica's view of the token could
// lack the other's). A key someone with the PIN prepared under the seal
// key's name is never taken (issue 16). An installation whose seals were
// made before nonces keeps its key, taken only if the token attests that
// it generated it.
func (a *Audit) ensureSealKey(ctx context.Context) error {
	if a.sealer.key != nil {
		return nil
	}
	var key hsm.ObjectRef
	err := a.store.WithLock(ctx, "audit-seal-key", func() error {
		prev, err := a.lastSeal(ctx)
		if err != nil {
			return err
		}
		if prev == nil {
			if prev, err = a.lastAudit(ctx, ActAuditSealKey); err != nil {
				return err
			}
		}
		if prev == nil {
			if key, err = hsm.NewRef(AuditSealKeyID, 1); err != nil {
				return err
			}
			if err := a.token.GenerateKey(ctx, key); err != nil {
				return a.tokenErr(err)
			}
			detail, _ := json.Marshal(map[string]string{"key": key.Label()})
			claim := &AuditEvent{At: a.clock.Now(), Principal: "system", Action: ActAuditSealKey,
				Outcome: OutcomeAllowed, Detail: string(detail)}
			return a.storeErr(a.store.AppendAudit(ctx, []*AuditEvent{claim}, HashAuditEvent))
		}
		var d sealDetail
		if err := json.Unmarshal([]byte(prev.Detail), &d); err != nil {
			return fmt.Errorf("record %d naming the seal key is malformed: %w", prev.Seq, err)
		}
		var ok bool
		if key, ok = sealKeyOf(d); !ok || (prev.Action == ActAuditSealKey && key.Legacy()) {
			return fmt.Errorf("record %d names no valid seal key", prev.Seq)
		}
		if !key.Legacy() {
			return nil // made by this service for the seals that name it
		}
		return a.tokenErr(a.token.GenerateKey(ctx, key))
	})
	if err != nil {
		return err
	}
	a.sealer.key = &key
	return nil
}

// lastAudit is the newest record of action, or nil.
func (a *Audit) lastAudit(ctx context.Context, action string) (*AuditEvent, error) {
	e, err := a.store.LastAudit(ctx, action)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return e, a.storeErr(err)
}

// SealAudit seals the chain's current head, if it moved since the last
// seal. The worker calls it every second; it is exported for tests and
// for operators who want a seal now.
func (a *Audit) SealAudit(ctx context.Context) error {
	if a.w == nil {
		return nil
	}
	a.sealer.mu.Lock()
	defer a.sealer.mu.Unlock()
	if err := a.ensureSealKey(ctx); err != nil {
		return fmt.Errorf("audit seal key: %w", a.storeErr(err))
	}
	if !a.sealer.anchored {
		if err := a.loadAnchor(ctx); err != nil {
			return err
		}
		a.sealer.anchored = true
	}
	headSeq, headHash, err := a.store.AuditHead(ctx)
	if err != nil || headSeq == 0 {
		return a.storeErr(err)
	}
	if err := a.checkRemembered(ctx); err != nil {
		return err
	}
	prev, err := a.lastSeal(ctx)
	if err != nil {
		return err
	}
	if prev != nil && prev.Seq > a.sealer.lastSeq {
		a.sealer.lastSeq, a.sealer.lastHash = prev.Seq, prev.Hash
	}
	if prev != nil && prev.Seq >= headSeq {
		// Nothing new since the last seal; or (>) another replica sealed
		// after this one read the head: a seal of an older head would
		// follow it.
		return nil
	}
	prevSeq := int64(0)
	if prev != nil {
		prevSeq = prev.Seq
	}
	raw, err := hex.DecodeString(headHash)
	if err != nil {
		return fmt.Errorf("audit head hash is malformed: %w", err)
	}
	key := *a.sealer.key
	iv, sealed, err := a.token.Encrypt(ctx, key, raw, sealAAD(headSeq, prevSeq))
	if err != nil {
		return fmt.Errorf("audit seal: %w", a.tokenErr(err))
	}
	d := sealDetail{SealedSeq: headSeq, PrevSealSeq: prevSeq,
		IV: base64.StdEncoding.EncodeToString(iv), Seal: base64.StdEncoding.EncodeToString(sealed)}
	if !key.Legacy() {
		d.Key = key.Label()
	}
	detail, _ := json.Marshal(d)
	ev := &AuditEvent{At: a.clock.Now(), Principal: "system", Action: ActAuditSeal,
		Outcome: OutcomeAllowed, Detail: string(detail)}
	err = a.tx(ctx, func(q AuditQueries) error {
		// Another replica may have sealed meanwhile: then this seal's
		// prev_seal_seq is stale, and the next round seals again. The
		// head is locked first, so that no seal is appended between this
		// check and the append (on PostgreSQL a read before the lock could
		// miss a seal committed while it waited).
		if err := q.LockAuditHead(ctx); err != nil {
			return err
		}
		last, err := q.LastAudit(ctx, ActAuditSeal)
		switch {
		case errors.Is(err, ErrNotFound):
			if prevSeq != 0 {
				return errSealRace
			}
		case err != nil:
			return err
		case last.Seq != prevSeq:
			return errSealRace
		}
		return q.AppendAudit(ctx, []*AuditEvent{ev}, HashAuditEvent)
	})
	if errors.Is(err, errSealRace) {
		return nil
	}
	if err != nil {
		return a.storeErr(err)
	}
	a.sealer.lastSeq, a.sealer.lastHash = ev.Seq, ev.Hash
	return a.anchor(ctx, ev.Seq, ev.Hash)
}

var errSealRace = errors.New("another replica sealed the audit chain first")

// lastSeal is the newest seal record, or nil.
func (a *Audit) lastSeal(ctx context.Context) (*AuditEvent, error) {
	return a.lastAudit(ctx, ActAuditSeal)
}

// sealCheck verifies one seal record against the chain's hash at the seq it
// seals, in the token. It returns the first broken record and why, or an
// error when the token cannot answer (which says nothing about the log).
func (a *Audit) sealCheck(ctx context.Context, e *AuditEvent, hashAt func(int64) (string, bool), prevSealSeq, sealedBefore int64) (int64, string, error) {
	var d sealDetail
	if err := json.Unmarshal([]byte(e.Detail), &d); err != nil {
		return e.Seq, fmt.Sprintf("seal record %d is malformed", e.Seq), nil
	}
	if d.PrevSealSeq != prevSealSeq {
		return e.Seq, fmt.Sprintf("seal record %d names seal %d as its predecessor, but the previous seal is record %d (a seal was removed or added)", e.Seq, d.PrevSealSeq, prevSealSeq), nil
	}
	want, ok := hashAt(d.SealedSeq)
	if !ok || d.SealedSeq >= e.Seq {
		return e.Seq, fmt.Sprintf("seal record %d seals record %d, which is not before it in the chain", e.Seq, d.SealedSeq), nil
	}
	iv, err1 := base64.StdEncoding.DecodeString(d.IV)
	sealed, err2 := base64.StdEncoding.DecodeString(d.Seal)
	key, ok := sealKeyOf(d)
	if err1 != nil || err2 != nil || !ok {
		return e.Seq, fmt.Sprintf("seal record %d is malformed", e.Seq), nil
	}
	got, err := a.token.Decrypt(ctx, key, iv, sealed, sealAAD(d.SealedSeq, d.PrevSealSeq))
	switch {
	case errors.Is(err, hsm.ErrDecryptFailed):
		return e.Seq, fmt.Sprintf("seal record %d was not made by this service's audit seal key", e.Seq), nil
	case errors.Is(err, hsm.ErrObjectNotFound):
		return e.Seq, fmt.Sprintf("the audit seal key is not in the token: seal record %d cannot be verified", e.Seq), nil
	case err != nil:
		return 0, "", a.tokenErr(err)
	}
	if hex.EncodeToString(got) != want {
		return sealedBefore + 1, fmt.Sprintf("a record from %d to %d was rewritten (with the hashes after it recomputed): the chain no longer matches the seal in record %d", sealedBefore+1, d.SealedSeq, e.Seq), nil
	}
	return 0, "", nil
}
