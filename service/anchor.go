package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hsmkms/hsmkms/hsm"
)

// The seal anchor. Seals prove the chain up to the newest seal, but not
// that the newest seal in the database is the newest one made: whoever can
// write the database could cut the chain back to an older seal (or empty
// it) while kmsd is stopped, and a fresh process would find an intact
// chain. So every seal's seq and hash are also kept in the token, in a
// private data object only a PIN holder can write; the sealer starts from
// it (as if it had made that seal itself) and verify reads it again: a
// chain that lost the anchored record is reported, and not sealed over.

// anchorLabel is the label of the token data object of this database's
// anchor: one per database (Store.Identity), so that installations sharing
// a token keep apart, and a database emptied by SQL still finds its own.
func (a *Audit) anchorLabel(ctx context.Context) (string, error) {
	if a.sealer.anchorLabel != "" {
		return a.sealer.anchorLabel, nil
	}
	id, err := a.store.Identity(ctx)
	if err != nil {
		return "", a.storeErr(err)
	}
	sum := sha256.Sum256([]byte(id))
	a.sealer.anchorLabel = AuditAnchorPrefix + hex.EncodeToString(sum[:8])
	return a.sealer.anchorLabel, nil
}

// AuditAnchorPrefix begins the label of every audit anchor.
const AuditAnchorPrefix = "hsmkms-audit-anchor-"

// sealAnchor is the anchor's value: the newest seal record known.
type sealAnchor struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// errAnchorMalformed is an anchor this service did not write.
var errAnchorMalformed = errors.New("the audit anchor in the token is malformed")

// readAnchor is the newest anchor in the token, or nil when there is none.
func (a *Audit) readAnchor(ctx context.Context) (*sealAnchor, error) {
	label, err := a.anchorLabel(ctx)
	if err != nil {
		return nil, err
	}
	vals, err := a.token.ReadData(ctx, label)
	if errors.Is(err, hsm.ErrObjectNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, a.tokenErr(err)
	}
	var best *sealAnchor
	for _, v := range vals {
		var an sealAnchor
		if err := json.Unmarshal(v, &an); err != nil || an.Seq <= 0 || an.Hash == "" {
			return nil, errAnchorMalformed
		}
		if best == nil || an.Seq > best.Seq {
			best = &an
		}
	}
	return best, nil
}

// loadAnchor makes the sealer remember the anchored seal when it is newer
// than what it remembers; the caller holds sealer.mu. A token without an
// anchor (the first start, or an installation from before anchors) gets
// one for the newest seal in the chain.
func (a *Audit) loadAnchor(ctx context.Context) error {
	an, err := a.readAnchor(ctx)
	if err != nil {
		return err
	}
	if an == nil {
		prev, err := a.lastSeal(ctx)
		if err != nil || prev == nil {
			return err
		}
		label, _ := a.anchorLabel(ctx)
		a.log.Warn("the token holds no audit anchor for this database; anchoring the newest seal in it", "label", label, "seq", prev.Seq)
		return a.anchor(ctx, prev.Seq, prev.Hash)
	}
	if an.Seq > a.sealer.anchoredSeq {
		a.sealer.anchoredSeq = an.Seq
	}
	if an.Seq > a.sealer.lastSeq {
		a.sealer.lastSeq, a.sealer.lastHash = an.Seq, an.Hash
	}
	return nil
}

// anchor writes the seal record seq (hash) to the token, unless a newer
// one is anchored already. The caller holds sealer.mu.
func (a *Audit) anchor(ctx context.Context, seq int64, hash string) error {
	if seq <= a.sealer.anchoredSeq {
		return nil
	}
	label, err := a.anchorLabel(ctx)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(sealAnchor{Seq: seq, Hash: hash})
	if err := a.token.WriteData(ctx, label, b); err != nil {
		return fmt.Errorf("audit anchor: %w", a.tokenErr(err))
	}
	a.sealer.anchoredSeq = seq
	return nil
}
