package service

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
)

// Bearer token MACs. The store keeps, for each token, HMAC-SHA256 under a
// key in the token (sensitive, non-extractable, sign only) of the token's
// id, principal, expiry and the SHA-256 of the bearer string, written
// "hmac:<hex>". Whoever can write the database but cannot use the token
// cannot compute one: a row they insert, or a row they move to another
// principal or whose expiry they extend, does not authenticate.
//
// The key (tokenMACRef) is used for nothing else. Its existence in the
// token is also the record, which the database cannot forge, that the
// rows of an older release (plain SHA-256 of the bearer string) have been
// converted: the service converts them exactly once, in the call that
// makes the key, by computing the MAC over the stored SHA-256 (the
// plaintext is not needed). After that a SHA-256 row is never accepted nor
// converted: it was written by someone other than the service.

// tokenMACRef names the bearer-token MAC key: version 2 of the service's
// MAC key id (version 1 derives AWS access-key secrets).
var tokenMACRef = hsm.ObjectRef{KeyID: MACKeyID, Version: 2}

const (
	tokenMACData   = "hsmkms-bearer-token-v1|"
	tokenMACPrefix = "hmac:"
	// tokenTouchEvery bounds how often a token in use writes last_used_at.
	tokenTouchEvery = time.Minute
)

// tokenMACState says whether the bearer-token MAC key is known to exist
// (and the rows of an older release were converted).
type tokenMACState struct {
	mu    sync.Mutex  // held while the key is made and rows converted
	ready atomic.Bool // read on every authentication
}

// tokenMACInput is what a token's MAC covers. Ids are 16 hex digits or
// "bootstrap" and principal names exclude '|' (namePattern), so the fields
// cannot run into each other.
func tokenMACInput(t *BearerToken, digest [sha256.Size]byte) []byte {
	exp := "-"
	if t.ExpiresAt != nil {
		exp = strconv.FormatInt(t.ExpiresAt.UnixMicro(), 10)
	}
	return []byte(tokenMACData + t.ID + "|" + t.Principal + "|" + exp + "|" + hex.EncodeToString(digest[:]))
}

// tokenMAC computes the stored form of t's hash for a bearer string whose
// SHA-256 is digest.
func (s *Access) tokenMAC(ctx context.Context, m hsm.MAC, t *BearerToken, digest [sha256.Size]byte) ([]byte, error) {
	mac, err := m.HMACSHA256(ctx, tokenMACRef, tokenMACInput(t, digest))
	if err != nil {
		return nil, s.tokenErr(err)
	}
	return mac, nil
}

// sealToken sets t.Hash for bearer; call it before the transaction that
// inserts t (token calls stay outside transactions).
func (s *Access) sealToken(ctx context.Context, t *BearerToken, bearer string) error {
	m, err := s.ensureTokenMAC(ctx)
	if err != nil {
		return err
	}
	mac, err := s.tokenMAC(ctx, m, t, sha256.Sum256([]byte(bearer)))
	if err != nil {
		return err
	}
	t.Hash = tokenMACPrefix + hex.EncodeToString(mac)
	return nil
}

// storedMAC decodes a stored hash of the MAC form; ok is false for
// anything else (a SHA-256 row, or garbage).
func storedMAC(hash string) (mac []byte, ok bool) {
	h, found := strings.CutPrefix(hash, tokenMACPrefix)
	if !found {
		return nil, false
	}
	mac, err := hex.DecodeString(h)
	return mac, err == nil && len(mac) == sha256.Size
}

// PrepareBearerTokens makes sure the bearer-token MAC key exists, making
// it and converting an older release's rows if not (kmsd calls it at start,
// so that this happens, or fails, before it serves; Authenticate would do
// it on the first request otherwise).
func (s *Access) PrepareBearerTokens(ctx context.Context) error {
	_, err := s.ensureTokenMAC(ctx)
	return err
}

// ensureTokenMAC returns the token's MAC capability once the bearer-token
// key exists. The first call on a token that lacks it makes it, under a
// lock every replica respects, and converts the SHA-256 rows of an older
// release in the same step.
func (s *Access) ensureTokenMAC(ctx context.Context) (hsm.MAC, error) {
	m, ok := s.token.(hsm.MAC)
	if !ok {
		return nil, errorf(ErrUnavailable, "the token offers no HMAC capability: bearer tokens cannot be checked")
	}
	st := &s.tokenMACs
	if st.ready.Load() {
		return m, nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ready.Load() {
		return m, nil
	}
	err := s.store.WithLock(ctx, "bearer-token-mac", func() error {
		_, err := m.HMACSHA256(ctx, tokenMACRef, []byte(tokenMACData+"probe"))
		if !errors.Is(err, hsm.ErrObjectNotFound) {
			return err // nil: made before, nothing is ever converted again
		}
		return s.convertTokens(ctx, m)
	})
	if err != nil {
		return nil, s.tokenErr(err)
	}
	st.ready.Store(true)
	return m, nil
}

// convertTokens makes the bearer-token key and rewrites every SHA-256 row
// as the MAC of its SHA-256. It runs once per token: if it stops between
// making the key and committing, the rows stay SHA-256 and are refused
// (logged on use); reissue those tokens.
func (s *Access) convertTokens(ctx context.Context, m hsm.MAC) error {
	var legacy []BearerToken
	page := Page{Limit: 100}
	for {
		ps, err := s.store.ListPrincipals(ctx, page)
		if err != nil {
			return err
		}
		for _, p := range ps {
			toks, err := s.store.ListTokens(ctx, p.Name)
			if err != nil {
				return err
			}
			for _, t := range toks {
				if raw, err := hex.DecodeString(t.Hash); err == nil && len(raw) == sha256.Size {
					legacy = append(legacy, t)
				}
			}
		}
		if len(ps) < page.Limit {
			break
		}
		page.After = ps[len(ps)-1].Name
	}
	if err := m.GenerateMACKey(ctx, tokenMACRef); err != nil {
		return err
	}
	newHash := make([]string, len(legacy))
	for i := range legacy {
		var digest [sha256.Size]byte
		raw, _ := hex.DecodeString(legacy[i].Hash)
		copy(digest[:], raw)
		mac, err := m.HMACSHA256(ctx, tokenMACRef, tokenMACInput(&legacy[i], digest))
		if err != nil {
			return err
		}
		newHash[i] = tokenMACPrefix + hex.EncodeToString(mac)
	}
	err := s.tx(ctx, func(q AccessTx) error {
		for i, t := range legacy {
			if err := q.RekeyToken(ctx, t.ID, t.Hash, newHash[i]); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		return nil
	})
	if err == nil && len(legacy) > 0 {
		s.log.Info("bearer tokens of an older release are now stored as MACs made in the token", "tokens", len(legacy))
	}
	return err
}

// verifyToken checks bearer against e's stored MAC in the token (one HMAC;
// a cache hit never gets here) in constant time.
func (s *Access) verifyToken(ctx context.Context, e *authEntry, digest [sha256.Size]byte) (bool, error) {
	if e.mac == nil {
		s.log.Warn("a bearer token row is not a MAC made in the token: refused (written outside the service, "+
			"or left by an interrupted upgrade: reissue it)", "token_id", e.tok.ID, "principal", e.tok.Principal)
		return false, nil
	}
	m, err := s.ensureTokenMAC(ctx)
	if err != nil {
		return false, err
	}
	mac, err := s.tokenMAC(ctx, m, &e.tok, digest)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(mac, e.mac) == 1, nil
}
