package service

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/policy"
)

// Bring your own key (origin EXTERNAL). A key created with origin EXTERNAL
// is PendingImport and has no version. GetParametersForImport makes an
// RSA-3072 wrapping key pair in the token and an import token (kept as a
// hash, good once, for 24 hours); ImportKeyMaterial has the token unwrap
// the customer's wrapped material straight into version 1's object; the
// material never exists in this process. DeleteImportedKeyMaterial destroys
// the object (the key is PendingImport again, its blobs wait for the same
// material). A key check value computed in the token recognises the same
// material: different material is refused.

// Import is bring your own key, over the key ring.
type Import struct {
	base
	store  ImportStore
	tx     Tx[ImportTx]
	keys   *Keys
	token  hsm.Token
	audit  *Audit
	leases *leases
}

// ImportStore is what Import reads outside transactions.
type ImportStore interface {
	KeyQueries
	ImportQueries
}

// ImportTx is what Import's transactions read and write.
type ImportTx interface {
	ImportStore
	AuditAppender
}

// commit runs fn in a transaction that also appends the request's record.
func (s *Import) commit(ctx context.Context, fn func(q ImportTx) error) error {
	return commit(ctx, s.audit, s.tx, fn)
}

// ImportParamsLifetime is how long import parameters can be used.
const ImportParamsLifetime = 24 * time.Hour

// WrappingKeySpec is the only wrapping key spec.
const WrappingKeySpec = "RSA_3072"

const importTokenPrefix = "kmsimp_"

// ImportParameters are the answer of GetParametersForImport.
type ImportParameters struct {
	KeyID       string
	PublicKey   []byte // DER SubjectPublicKeyInfo
	ImportToken string // shown once
	ValidTo     time.Time
}

// GetParametersForImport returns a wrapping public key generated in the
// token and an import token bound to this key and that wrapping key.
func (s *Import) GetParametersForImport(ctx context.Context, ref, algorithm, keySpec string) (*ImportParameters, error) {
	v, err := s.keys.access(ctx, ActGetParametersForImport, ref)
	if err != nil {
		return nil, err
	}
	k := v.key
	if err := checkImport(&k); err != nil {
		return nil, err
	}
	if keySpec != "" && keySpec != WrappingKeySpec {
		return nil, Validationf("wrapping_key_spec must be %s", WrappingKeySpec)
	}
	offered := s.token.WrappingAlgorithms()
	if !slices.Contains(offered, algorithm) {
		return nil, Validationf("wrapping_algorithm %q is not one this token can unwrap; it offers %s",
			truncate(algorithm, 40), strings.Join(offered, ", "))
	}
	wrapID := uuid.NewString()
	pub, err := s.token.GenerateWrappingKey(ctx, wrapID)
	if err != nil {
		return nil, s.tokenErr(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, err
	}
	token := importTokenPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	now := s.now()
	p := &ImportParams{TokenHash: hashToken(token), KeyID: k.ID, WrappingID: wrapID, Algorithm: algorithm,
		CreatedAt: now, ExpiresAt: now.Add(ImportParamsLifetime)}
	noteDetail(ctx, "wrapping_algorithm", algorithm)
	if err := commit(ctx, s.audit, s.tx, func(q ImportTx) error { return q.InsertImportParams(ctx, p) }); err != nil {
		s.dropWrappingKey(wrapID)
		return nil, s.storeErr(err)
	}
	return &ImportParameters{KeyID: k.ID, PublicKey: der, ImportToken: token, ValidTo: p.ExpiresAt}, nil
}

// checkImport: EXTERNAL, PendingImport, not service-managed.
func checkImport(k *Key) error {
	if k.Origin != OriginExternal {
		return errorf(ErrInvalidState, "key %s was generated in the token (origin HSM); only EXTERNAL keys take imported material", k.ID)
	}
	if k.State != KeyPendingImport && k.State != KeyDeleted && k.State != KeyPendingDeletion {
		return errorf(ErrInvalidState, "key %s has its key material already; delete it first to import again", k.ID)
	}
	return checkKey(k, policy.OpImport)
}

// ImportKeyMaterial has the token unwrap the material into version 1.
func (s *Import) ImportKeyMaterial(ctx context.Context, ref, importToken string, wrapped []byte, validTo *time.Time) (*Key, error) {
	v, err := s.keys.access(ctx, ActImportKeyMaterial, ref)
	if err != nil {
		return nil, err
	}
	k := v.key
	if err := checkImport(&k); err != nil {
		return nil, err
	}
	switch {
	case importToken == "":
		return nil, Validationf("import_token is required")
	case len(wrapped) == 0:
		return nil, Validationf("encrypted_key_material is required")
	case validTo != nil && !validTo.After(s.now()):
		return nil, Validationf("valid_to must be in the future")
	}
	p, err := s.store.GetImportParams(ctx, hashToken(importToken))
	now := s.now()
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, Validationf("import_token is not a token this service issued, or its parameters expired and were removed; get new import parameters")
	case err != nil:
		return nil, s.storeErr(err)
	case p.KeyID != k.ID:
		return nil, Validationf("import_token was issued for another key")
	case p.UsedAt != nil:
		return nil, Validationf("import_token was used already; get new import parameters")
	case !now.Before(p.ExpiresAt):
		return nil, Validationf("import_token expired at %s; get new import parameters", p.ExpiresAt.Format(time.RFC3339))
	}

	// The key's lease keeps the reconciler and other imports away.
	release, err := s.leases.hold(ctx, k.ID)
	if err != nil {
		return nil, err
	}
	defer release()

	// Step 1: version 1 Pending (new, or back from Destroyed after its
	// material was deleted), so that a crash leaves a row to reconcile.
	// A first import names version 1 with a fresh nonce; an import of
	// the same material again keeps the name its row records (the object
	// was destroyed with the material, and Import never adopts one).
	objRef, err := hsm.NewImportRef(uuid.MustParse(k.ID), 1)
	if err != nil {
		return nil, err
	}
	var prior *Version
	err = s.tx(ctx, func(q ImportTx) error {
		cur, err := q.LockKey(ctx, k.ID)
		if err != nil {
			return err
		}
		if err := checkImport(cur); err != nil {
			return err
		}
		old, err := q.GetVersion(ctx, k.ID, 1)
		if errors.Is(err, ErrNotFound) {
			return q.InsertVersion(ctx, &Version{KeyID: k.ID, Version: 1, State: VersionPending, Origin: OriginExternal,
				CreatedAt: now, UpdatedAt: now, TokenLabel: objRef.Label()})
		}
		if err != nil {
			return err
		}
		prior, objRef = old, refOf(old)
		pending := *old
		pending.State, pending.UpdatedAt, pending.DestroyAt = VersionPending, now, nil
		return q.UpdateVersion(ctx, &pending)
	})
	if err != nil {
		return nil, s.storeErr(err)
	}
	undo := func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := s.token.Destroy(uctx, objRef); err != nil {
			s.log.Error("roll back import: destroy object; the reconciler retries", "key_id", k.ID, "err", err)
		}
		err := s.tx(uctx, func(q ImportTx) error {
			if prior == nil {
				return q.DeleteVersion(uctx, k.ID, 1)
			}
			return q.UpdateVersion(uctx, prior)
		})
		if err != nil {
			s.log.Error("roll back import: restore version row; the reconciler retries", "key_id", k.ID, "err", err)
		}
	}

	// Step 2: the token unwraps into the object (a leftover of a crashed
	// import goes first).
	if err := s.token.Destroy(ctx, objRef); err != nil {
		undo()
		return nil, s.tokenErr(err)
	}
	if err := s.token.Import(ctx, p.WrappingID, p.Algorithm, wrapped, objRef); err != nil {
		undo()
		if errors.Is(err, hsm.ErrUnwrapFailed) {
			return nil, Validationf("encrypted_key_material does not unwrap with these import parameters: " +
				"it was wrapped with another public key or algorithm, is damaged, or is not 32 bytes of AES-256 material")
		}
		if errors.Is(err, hsm.ErrObjectNotFound) {
			return nil, Validationf("the wrapping key of this import_token is gone; get new import parameters")
		}
		return nil, s.tokenErr(err)
	}
	kcvBytes, err := s.token.KeyCheckValue(ctx, objRef)
	if err != nil {
		undo()
		return nil, s.tokenErr(err)
	}
	kcv := hex.EncodeToString(kcvBytes)

	// Step 3: one transaction: the token is spent, the material record
	// written (or checked: only the same material comes back), version 1
	// Primary, the key Enabled.
	note(ctx, k.ID, 1)
	noteDetail(ctx, "key_check_value", kcv)
	err = commit(ctx, s.audit, s.tx, func(q ImportTx) error {
		if old, err := q.GetKeyMaterial(ctx, k.ID); err == nil && old.KCV != kcv {
			return Validationf("this is not the material key %s had: only the same key material can be imported again", k.ID)
		} else if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := q.UseImportParams(ctx, p.TokenHash, now); err != nil {
			if errors.Is(err, ErrInvalidState) {
				return Validationf("import_token was used already; get new import parameters")
			}
			return err
		}
		cur, err := q.LockKey(ctx, k.ID)
		if err != nil {
			return err
		}
		ver, err := q.GetVersion(ctx, k.ID, 1)
		if err != nil {
			return err
		}
		if ver.State != VersionPending {
			return fmt.Errorf("version 1 of key %s is %s, not Pending", k.ID, ver.State)
		}
		ver.State, ver.UpdatedAt = VersionPrimary, now
		if err := q.UpdateVersion(ctx, ver); err != nil {
			return err
		}
		cur.State, cur.PrimaryVersion, cur.UpdatedAt = KeyEnabled, 1, now
		if err := q.UpdateKey(ctx, cur); err != nil {
			return err
		}
		return q.PutKeyMaterial(ctx, &KeyMaterial{KeyID: k.ID, KCV: kcv, ImportedAt: now, ValidTo: validTo})
	})
	if err != nil {
		undo()
		return nil, s.storeErr(err)
	}
	s.keys.cache.invalidateKey(k.ID)
	s.dropWrappingKey(p.WrappingID) // single use; the sweep retries if this fails
	return s.keys.describe(ctx, k.ID)
}

// DeleteImportedKeyMaterial destroys the key's material in the token: the
// key is PendingImport again and its blobs fail until the same material is
// imported again.
func (s *Import) DeleteImportedKeyMaterial(ctx context.Context, ref string) (*Key, error) {
	v, err := s.keys.access(ctx, ActDeleteImportedKeyMaterial, ref)
	if err != nil {
		return nil, err
	}
	// Under the key's lease: an import running meanwhile would make a new
	// version 1 object that the destroy below would take with the old one.
	release, err := s.leases.hold(ctx, v.key.ID)
	if err != nil {
		return nil, err
	}
	err = s.deleteMaterial(ctx, v.key.ID, s.commit)
	release()
	if err != nil {
		return nil, err
	}
	return s.keys.describe(ctx, v.key.ID)
}

// deleteMaterial: rows first (versions Destroyed, key PendingImport), then
// the objects; a crash in between leaves Destroyed versions with objects,
// which the reconciler destroys.
func (s *Import) deleteMaterial(ctx context.Context, keyID string, tx Tx[ImportTx]) error {
	var versions []Version
	err := tx(ctx, func(q ImportTx) error {
		k, err := s.keys.lockKey(ctx, q, keyID)
		if err != nil {
			return err
		}
		if err := checkKey(k, policy.OpDeleteMaterial); err != nil {
			return err
		}
		now := s.now()
		k.State, k.UpdatedAt = KeyPendingImport, now
		if err := q.UpdateKey(ctx, k); err != nil {
			return err
		}
		vs, err := q.ListVersions(ctx, keyID)
		if err != nil {
			return err
		}
		for i := range vs {
			if vs[i].State == VersionDestroyed {
				continue
			}
			vs[i].State, vs[i].UpdatedAt = VersionDestroyed, now
			if err := q.UpdateVersion(ctx, &vs[i]); err != nil {
				return err
			}
			versions = append(versions, vs[i])
		}
		return nil
	})
	if err != nil {
		return s.storeErr(err)
	}
	s.keys.cache.invalidateKey(keyID)
	for _, v := range versions {
		if err := s.token.Destroy(ctx, refOf(&v)); err != nil {
			return s.tokenErr(err)
		}
	}
	return nil
}

// dropWrappingKey destroys a wrapping key pair, best effort.
func (s *Import) dropWrappingKey(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.token.DestroyWrappingKey(ctx, id); err != nil {
		s.log.Warn("destroy wrapping key; the worker retries", "wrapping_id", id, "err", err)
	}
}

// expireImports is the worker's part of bring your own key: material past
// its valid_to is deleted (the key returns to PendingImport), and expired
// import parameters go with their wrapping keys.
func (s *Import) expireImports(ctx context.Context) error {
	now := s.now()
	ids, err := s.store.ExpiredMaterial(ctx, now, batch)
	if err != nil {
		return s.storeErr(err)
	}
	for _, id := range ids {
		err := s.leases.with(ctx, id, func(time.Time) error {
			return s.deleteMaterial(ctx, id, func(ctx context.Context, fn func(ImportTx) error) error {
				return s.tx(ctx, func(q ImportTx) error {
					if err := fn(q); err != nil {
						return err
					}
					a := systemActivity("kms:ExpireImportedKeyMaterial", id)
					return s.audit.system(ctx, q, a)
				})
			})
		})
		if err != nil {
			s.log.Error("expire imported key material", "key_id", id, "err", err)
		}
	}
	expired, err := s.store.ExpiredImportParams(ctx, now, batch)
	if err != nil {
		return s.storeErr(err)
	}
	for _, p := range expired {
		if err := s.token.DestroyWrappingKey(ctx, p.WrappingID); err != nil {
			s.log.Warn("destroy expired wrapping key; retried next pass", "wrapping_id", p.WrappingID, "err", err)
			continue
		}
		if err := s.store.DeleteImportParams(ctx, p.TokenHash); err != nil {
			return s.storeErr(err)
		}
	}
	return nil
}
