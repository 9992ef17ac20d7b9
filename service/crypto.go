package service

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/policy"
)

// Crypto is the cryptographic operations: it resolves and authorises
// through the key ring and calls the token; it writes nothing.
type Crypto struct {
	base
	keys  *Keys
	token hsm.Token
	// invocations counts encryptions per version until the worker flushes
	// them; no version makes more than maxEncryptions (invocations.go).
	invocations    *invocations
	maxEncryptions int64
}

// CryptoResult names the key and version that made or opened a blob.
type CryptoResult struct {
	KeyID      string
	KeyVersion int
	Ciphertext []byte // a blob (encrypt, data keys, re-encrypt)
	Plaintext  []byte // decrypt, data keys
}

// Encrypt seals plaintext (1-4096 bytes) under the key's primary version.
// On a warm cache it makes one token call and no database round trip.
func (s *Crypto) Encrypt(ctx context.Context, keyRef string, plaintext []byte, encCtx map[string]string) (*CryptoResult, error) {
	if len(plaintext) < 1 || len(plaintext) > MaxPlaintextLen {
		return nil, Validationf("plaintext must be 1 to %d bytes", MaxPlaintextLen)
	}
	if err := validateContext(encCtx); err != nil {
		return nil, err
	}
	v, err := s.keys.access(ctx, ActEncrypt, keyRef)
	if err != nil {
		return nil, err
	}
	return s.seal(ctx, v, plaintext, encCtx)
}

// seal encrypts under v's primary version and builds the blob.
func (s *Crypto) seal(ctx context.Context, v *keyView, plaintext []byte, encCtx map[string]string) (*CryptoResult, error) {
	return s.sealOnce(ctx, v, plaintext, encCtx, false)
}

// sealOnce is seal; stale says the view was already refreshed once.
func (s *Crypto) sealOnce(ctx context.Context, v *keyView, plaintext []byte, encCtx map[string]string, stale bool) (*CryptoResult, error) {
	if err := checkKey(&v.key, policy.OpEncrypt); err != nil {
		return nil, err
	}
	version := v.key.PrimaryVersion
	if version == 0 || v.versions[version] != VersionPrimary {
		return nil, errorf(ErrInvalidState, "key %s has no usable primary version", v.key.ID)
	}
	if err := s.checkInvocations(v, version); err != nil {
		return nil, err
	}
	header := blobHeader(uuid.MustParse(v.key.ID), version)
	var iv, ct []byte
	count := s.invocations.counter(v.key.ID, version)
	err := tokenRetry(ctx, func() (err error) {
		count.Add(1) // every IV the token may have used, a failed call's too
		iv, ct, err = s.token.Encrypt(ctx, v.refs[version], plaintext, additionalData(header, encCtx))
		return err
	})
	if errors.Is(err, hsm.ErrNotPermitted) && !stale {
		// Another replica rotated the key after this one cached it: the
		// cached primary is decrypt-only now. Read the key afresh, once.
		s.keys.cache.invalidateKey(v.key.ID)
		fresh, ferr := s.keys.viewByID(ctx, v.key.ID)
		if ferr != nil {
			return nil, ferr
		}
		if fresh.key.PrimaryVersion != version {
			return s.sealOnce(ctx, fresh, plaintext, encCtx, true)
		}
	}
	if err != nil {
		if errors.Is(err, hsm.ErrNotPermitted) {
			// The store says primary, the token says decrypt-only: someone
			// changed the object. Refuse; the reconciler reports it.
			s.log.Error("primary version refuses to encrypt in the token", "key_id", v.key.ID, "version", version)
		}
		return nil, s.tokenErr(err)
	}
	note(ctx, v.key.ID, version)
	return &CryptoResult{KeyID: v.key.ID, KeyVersion: version, Ciphertext: marshalBlob(header, iv, ct)}, nil
}

// Decrypt opens a blob. The blob names its key and version; keyRef is
// optional and, when given, must name the blob's key (IncorrectKeyException).
func (s *Crypto) Decrypt(ctx context.Context, ciphertext []byte, encCtx map[string]string, keyRef string) (*CryptoResult, error) {
	if err := validateContext(encCtx); err != nil {
		return nil, err
	}
	b, v, err := s.openTarget(ctx, ActDecrypt, ciphertext, keyRef)
	if err != nil {
		return nil, err
	}
	return s.open(ctx, b, v, encCtx)
}

// openTarget parses the blob, finds its key and authorises action against
// that key: the one inside the blob, whatever key the caller names. Unknown
// keys and versions are InvalidCiphertext: a blob this service made always
// names a real one.
func (s *Crypto) openTarget(ctx context.Context, action string, ciphertext []byte, keyRef string) (*blob, *keyView, error) {
	if len(ciphertext) > maxCiphertextBytes {
		return nil, nil, ErrInvalidCiphertext
	}
	b, err := parseBlob(ciphertext)
	if err != nil {
		return nil, nil, err
	}
	keyID := b.keyID.String()
	v, err := s.keys.viewByID(ctx, keyID)
	if errors.Is(err, ErrNotFound) {
		if aerr := allow(ctx, action, policy.Resource{KeyID: keyID}); aerr != nil {
			return nil, nil, aerr
		}
		return nil, nil, ErrInvalidCiphertext
	}
	if err != nil {
		return nil, nil, err
	}
	// The record names the blob's key and version even when the request is
	// refused or fails below: audit queries by key must see those too.
	note(ctx, keyID, b.version)
	if err := allow(ctx, action, policy.Resource{KeyID: keyID, Aliases: v.aliases}); err != nil {
		return nil, nil, err
	}
	if keyRef != "" {
		// Named as the caller named it: an alias's target, or whether it
		// exists, is not told to a caller allowed only the blob's key.
		id, err := s.keys.resolveID(ctx, keyRef)
		if errors.Is(err, ErrNotFound) || (err == nil && id != keyID) {
			return nil, nil, errorf(ErrIncorrectKey, "the ciphertext was not made with %s", truncate(keyRef, 300))
		}
		if err != nil {
			return nil, nil, err
		}
	}
	return b, v, nil
}

// open checks the key and version states and decrypts in the token.
func (s *Crypto) open(ctx context.Context, b *blob, v *keyView, encCtx map[string]string) (*CryptoResult, error) {
	if err := checkKey(&v.key, policy.OpDecrypt); err != nil {
		return nil, err
	}
	switch policy.VersionDecrypt(string(v.versions[b.version])) {
	case policy.Allow:
	case policy.Disabled:
		return nil, errorf(ErrDisabled, "version %d of key %s is disabled", b.version, v.key.ID)
	case policy.InvalidState:
		return nil, errorf(ErrInvalidState, "version %d of key %s was destroyed or is pending destruction", b.version, v.key.ID)
	default:
		return nil, ErrInvalidCiphertext
	}
	note(ctx, v.key.ID, b.version)
	var pt []byte
	err := tokenRetry(ctx, func() (err error) {
		pt, err = s.token.Decrypt(ctx, v.refs[b.version], b.iv, b.ciphertext, additionalData(b.header, encCtx))
		return err
	})
	if err != nil {
		return nil, s.tokenErr(err)
	}
	return &CryptoResult{KeyID: v.key.ID, KeyVersion: b.version, Plaintext: pt}, nil
}

// DataKeyInput asks for a data key: KeySpec (AES_256, AES_128) or NumberOfBytes.
type DataKeyInput struct {
	KeyRef        string
	KeySpec       string
	NumberOfBytes int
	Context       map[string]string
}

// GenerateDataKey returns a fresh data key from the token's RNG, in
// plaintext and encrypted under the key's primary version. With
// withPlaintext false the plaintext is dropped before returning.
func (s *Crypto) GenerateDataKey(ctx context.Context, in DataKeyInput, withPlaintext bool) (*CryptoResult, error) {
	n, err := dataKeyLength(in.KeySpec, in.NumberOfBytes)
	if err != nil {
		return nil, err
	}
	if err := validateContext(in.Context); err != nil {
		return nil, err
	}
	action := ActGenerateDataKeyNoP
	if withPlaintext {
		action = ActGenerateDataKey
	}
	v, err := s.keys.access(ctx, action, in.KeyRef)
	if err != nil {
		return nil, err
	}
	if err := checkKey(&v.key, policy.OpEncrypt); err != nil {
		return nil, err
	}
	pt, err := s.token.Random(ctx, n)
	if err != nil {
		return nil, s.tokenErr(err)
	}
	res, err := s.seal(ctx, v, pt, in.Context)
	if err != nil {
		clear(pt) // never returned: dropped at once
		return nil, err
	}
	if !withPlaintext {
		clear(pt)
		return res, nil
	}
	res.Plaintext = pt
	return res, nil
}

func dataKeyLength(spec string, n int) (int, error) {
	switch {
	case spec != "" && n != 0:
		return 0, Validationf("give key_spec or number_of_bytes, not both")
	case spec == "AES_256":
		return 32, nil
	case spec == "AES_128":
		return 16, nil
	case spec != "":
		return 0, Validationf("key_spec must be AES_256 or AES_128")
	case n < 1 || n > maxDataKeyBytes:
		return 0, Validationf("number_of_bytes must be 1 to %d (or give key_spec)", maxDataKeyBytes)
	}
	return n, nil
}

// ReEncryptResult is the new blob and where the old one came from.
type ReEncryptResult struct {
	Source      CryptoResult // key and version that opened the blob
	Destination CryptoResult // key, version and the new blob
}

// ReEncrypt decrypts a blob and encrypts the plaintext under another key (or
// the same key's new primary, or another context); the plaintext never leaves
// the service and is wiped before returning.
func (s *Crypto) ReEncrypt(ctx context.Context, ciphertext []byte, srcCtx map[string]string, dstRef string, dstCtx map[string]string) (*ReEncryptResult, error) {
	return s.ReEncryptFrom(ctx, ciphertext, srcCtx, "", dstRef, dstCtx)
}

// ReEncryptFrom is ReEncrypt that, when srcRef is not empty, refuses a
// blob made by another key than srcRef names (IncorrectKeyException), as
// Decrypt does with its key id (AWS ReEncrypt's SourceKeyId).
func (s *Crypto) ReEncryptFrom(ctx context.Context, ciphertext []byte, srcCtx map[string]string, srcRef, dstRef string, dstCtx map[string]string) (*ReEncryptResult, error) {
	if err := validateContext(srcCtx); err != nil {
		return nil, err
	}
	if err := validateContext(dstCtx); err != nil {
		return nil, err
	}
	b, src, err := s.openTarget(ctx, ActReEncryptFrom, ciphertext, srcRef)
	if err != nil {
		return nil, err
	}
	dst, err := s.keys.access(ctx, ActReEncryptTo, dstRef)
	if err != nil {
		return nil, err
	}
	if err := checkKey(&dst.key, policy.OpEncrypt); err != nil {
		return nil, err
	}
	opened, err := s.open(ctx, b, src, srcCtx)
	if err != nil {
		return nil, err
	}
	defer clear(opened.Plaintext)
	noteDetail(ctx, "source_key_id", opened.KeyID)
	noteDetail(ctx, "source_key_version", itoa(opened.KeyVersion))
	sealed, err := s.seal(ctx, dst, opened.Plaintext, dstCtx)
	if err != nil {
		return nil, err
	}
	return &ReEncryptResult{
		Source:      CryptoResult{KeyID: opened.KeyID, KeyVersion: opened.KeyVersion},
		Destination: *sealed,
	}, nil
}

// GenerateRandom returns n (1-1024) bytes from the token's RNG.
func (s *Crypto) GenerateRandom(ctx context.Context, n int) ([]byte, error) {
	if err := allow(ctx, ActGenerateRandom, noResource); err != nil {
		return nil, err
	}
	if n < 1 || n > maxRandomBytes {
		return nil, Validationf("number_of_bytes must be 1 to %d", maxRandomBytes)
	}
	b, err := s.token.Random(ctx, n)
	return b, s.tokenErr(err)
}
