package service

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/hsm"
	"golang.org/x/sync/singleflight"
)

// AWS access keys (Signature Version 4). SigV4 makes the server recompute
// the signing key from the secret, so the secret cannot be kept as a plain
// hash. It is not kept at all: it is HMAC-SHA256, under the service's MAC
// key in the token (sensitive, non-extractable, sign only), of the access
// key id and a random nonce that the store keeps. Whoever reads or copies
// the database learns the id and nonce, not the secret.

// MACKeyID names the token object of the service's HMAC key. Like the audit
// seal key it is a key of no API: no row, created once, left alone by the
// reconciler. Each use puts its own prefix before the data it keys.
var MACKeyID = uuid.MustParse("5ea1a0d1-0000-4000-8000-000000000002")

var macRef = hsm.ObjectRef{KeyID: MACKeyID, Version: 1}

const (
	accessKeyPrefix  = "AKIA"
	accessKeyMACData = "hsmkms-aws-access-key-v1|"
	// accessKeySecretLength is AWS's length for secret access keys.
	accessKeySecretLength = 40
	// accessKeyTouchEvery bounds how often a key in use writes last_used_at.
	accessKeyTouchEvery = time.Minute
)

var accessKeyPattern = regexp.MustCompile(`^AKIA[A-Z2-7]{16}$`)

// NewAccessKey is an access key just made: the only time its secret is
// shown.
type NewAccessKey struct {
	ID        string
	Secret    string
	Principal string
	CreatedAt time.Time
}

// accessKeyState is the service's state for access keys: whether the MAC
// key is known to be in the token, and a short-lived cache of derived
// secrets and callers. A cache entry is valid only while the bearer-token
// cache's generation is unchanged, so every access change that clears
// that cache (a deleted key, a changed policy) drops these entries too.
type accessKeyState struct {
	macMu    sync.Mutex // held while the MAC key is made
	macReady bool
	mu       sync.Mutex
	entries  map[string]accessKeyEntry
	loads    singleflight.Group
}

type accessKeyEntry struct {
	secret   []byte
	caller   *Caller
	loadedAt time.Time
	gen      uint64
	lastUsed time.Time
}

// ensureMACKey creates the MAC key in the token once, under a lock every
// replica respects (two replicas creating it at once would make two
// objects with one CKA_ID).
func (s *Access) ensureMACKey(ctx context.Context) (hsm.MAC, error) {
	m, ok := s.token.(hsm.MAC)
	if !ok {
		return nil, errorf(ErrUnavailable, "the token offers no HMAC capability: access keys cannot be used")
	}
	st := &s.accessKeys
	st.macMu.Lock()
	defer st.macMu.Unlock()
	if st.macReady {
		return m, nil
	}
	err := s.store.WithLock(ctx, "mac-key", func() error { return m.GenerateMACKey(ctx, macRef) })
	if err != nil {
		return nil, s.tokenErr(err)
	}
	st.macReady = true
	return m, nil
}

// accessKeySecret derives a key's secret in the token.
func (s *Access) accessKeySecret(ctx context.Context, k *AccessKey) (string, error) {
	m, err := s.ensureMACKey(ctx)
	if err != nil {
		return "", err
	}
	mac, err := m.HMACSHA256(ctx, macRef, []byte(accessKeyMACData+k.ID+"|"+k.Nonce))
	if err != nil {
		return "", s.tokenErr(err)
	}
	return base64.StdEncoding.EncodeToString(mac)[:accessKeySecretLength], nil
}

func newAccessKeyID() (id, nonce string, err error) {
	var idb [10]byte
	var nb [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", err
	}
	if _, err := rand.Read(nb[:]); err != nil {
		return "", "", err
	}
	return accessKeyPrefix + base32.StdEncoding.EncodeToString(idb[:]), hex.EncodeToString(nb[:]), nil
}

// CreateAccessKey makes an access key for a principal (kms:ManageAccess).
// The secret is returned once and can never be read again.
func (s *Access) CreateAccessKey(ctx context.Context, principal string) (*NewAccessKey, error) {
	if err := s.manage(ctx, "principal", principal); err != nil {
		return nil, err
	}
	id, nonce, err := newAccessKeyID()
	if err != nil {
		return nil, err
	}
	k := &AccessKey{ID: id, Principal: principal, Nonce: nonce, CreatedAt: s.now()}
	// The secret is derived before the row exists: a token that cannot
	// answer leaves no key behind that nobody ever saw the secret of.
	secret, err := s.accessKeySecret(ctx, k)
	if err != nil {
		return nil, err
	}
	noteDetail(ctx, "access_key_id", id)
	err = commit(ctx, s.audit, s.tx, func(q AccessTx) error {
		err := q.InsertAccessKey(ctx, k)
		if errors.Is(err, ErrNotFound) {
			return errorf(ErrNotFound, "principal %q not found", truncate(principal, 140))
		}
		return err
	})
	if err != nil {
		return nil, s.storeErr(err)
	}
	return &NewAccessKey{ID: id, Secret: secret, Principal: principal, CreatedAt: k.CreatedAt}, nil
}

// ListAccessKeys lists a principal's access keys (ids, dates; never
// secrets).
func (s *Access) ListAccessKeys(ctx context.Context, principal string) ([]AccessKey, error) {
	if err := s.manage(ctx, "principal", principal); err != nil {
		return nil, err
	}
	if _, err := s.store.GetPrincipal(ctx, principal); errors.Is(err, ErrNotFound) {
		return nil, errorf(ErrNotFound, "principal %q not found", truncate(principal, 140))
	} else if err != nil {
		return nil, s.storeErr(err)
	}
	keys, err := s.store.ListAccessKeys(ctx, principal)
	if err != nil {
		return nil, s.storeErr(err)
	}
	for i := range keys {
		keys[i].Nonce = ""
	}
	return keys, nil
}

// DeleteAccessKey removes one of a principal's access keys; it stops
// working at once in this process, on other replicas within AuthCacheTTL.
func (s *Access) DeleteAccessKey(ctx context.Context, principal, id string) error {
	if err := s.manage(ctx, "principal", principal); err != nil {
		return err
	}
	if !accessKeyPattern.MatchString(id) {
		// Never echo it: it may be a secret pasted by mistake.
		return Validationf("access_key_id must be an access key id (AKIA and 16 characters of A-Z 2-7)")
	}
	noteDetail(ctx, "access_key_id", id)
	err := commit(ctx, s.audit, s.tx, func(q AccessTx) error {
		k, err := q.GetAccessKey(ctx, id)
		if errors.Is(err, ErrNotFound) || (err == nil && k.Principal != principal) {
			return errorf(ErrNotFound, "principal %q has no access key %q", truncate(principal, 140), id)
		}
		if err != nil {
			return err
		}
		return q.DeleteAccessKey(ctx, id)
	})
	if err != nil {
		return s.storeErr(err)
	}
	s.auth.clear()
	return nil
}

// ErrUnknownAccessKey is the authentication error of an access key id that
// names no key (AWS's UnrecognizedClientException).
var ErrUnknownAccessKey = errors.New("the security token included in the request is invalid")

// AuthenticateAccessKey turns a signed request's access key id into its
// caller, the key's principal with its policies, once check accepts the
// key's secret (check verifies the signature, in constant time). An
// unknown id is ErrUnauthenticated wrapping ErrUnknownAccessKey; check's
// error is returned wrapped in ErrUnauthenticated. A warm request makes no
// database round trip: the key is cached with the bearer tokens, and
// cleared with them on every access change.
func (s *Access) AuthenticateAccessKey(ctx context.Context, id string, check func(secret []byte) error) (*Caller, error) {
	if !accessKeyPattern.MatchString(id) {
		return nil, fmt.Errorf("%w: %w", ErrUnauthenticated, ErrUnknownAccessKey)
	}
	e, err := s.accessKeyEntry(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", ErrUnauthenticated, ErrUnknownAccessKey)
	}
	if err != nil {
		return nil, err
	}
	if err := check(e.secret); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	now := s.clock.Now()
	if now.Sub(e.lastUsed) >= accessKeyTouchEvery {
		if err := s.store.TouchAccessKey(ctx, id, now, now.Add(-accessKeyTouchEvery)); err != nil {
			s.log.Warn("last use of an access key not recorded", "access_key_id", id, "err", err)
		}
		st := &s.accessKeys
		st.mu.Lock()
		if c, ok := st.entries[id]; ok {
			c.lastUsed = now
			st.entries[id] = c
		}
		st.mu.Unlock()
	}
	return e.caller, nil
}

// accessKeyEntry returns a key's derived secret and caller, from the cache
// when it is fresh (AuthCacheTTL, and no access change since it was
// loaded), otherwise from the store and the token, one load per key at a
// time.
func (s *Access) accessKeyEntry(ctx context.Context, id string) (accessKeyEntry, error) {
	now := s.clock.Now()
	s.auth.mu.RLock()
	gen := s.auth.gen
	s.auth.mu.RUnlock()
	st := &s.accessKeys
	st.mu.Lock()
	e, ok := st.entries[id]
	st.mu.Unlock()
	if ok && e.gen == gen && now.Sub(e.loadedAt) < s.auth.ttl {
		return e, nil
	}
	r, err := sharedLoad(ctx, &st.loads, strconv.FormatUint(gen, 10)+"/"+id, s.dbTimeout, func(ctx context.Context) (any, error) {
		k, err := s.store.GetAccessKey(ctx, id)
		if err != nil {
			return nil, err
		}
		secret, err := s.accessKeySecret(ctx, k)
		if err != nil {
			return nil, err
		}
		caller, err := s.loadCaller(ctx, k.Principal)
		if err != nil {
			return nil, err
		}
		caller.Credential = "access_key:" + k.ID
		e := accessKeyEntry{secret: []byte(secret), caller: caller, loadedAt: now, gen: gen}
		if k.LastUsedAt != nil {
			e.lastUsed = *k.LastUsedAt
		}
		st.mu.Lock()
		if st.entries == nil {
			st.entries = map[string]accessKeyEntry{}
		}
		if len(st.entries) > 10000 {
			clear(st.entries) // a bound, not a policy: entries live for a second
		}
		st.entries[id] = e
		st.mu.Unlock()
		return e, nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return accessKeyEntry{}, err
		}
		return accessKeyEntry{}, s.storeErr(err)
	}
	return r.(accessKeyEntry), nil
}
