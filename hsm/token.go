package hsm

import (
	"context"
	"crypto/rsa"
	"errors"
)

// Token is everything the service needs from a PKCS#11 token. Key material
// never crosses this interface: callers name objects by ObjectRef and get
// ciphertext, plaintext of their own data, or metadata back.
type Token interface {
	// GenerateKey creates the AES-256 object for ref inside the token:
	// sensitive, non-extractable, not copyable, usable only for AES-GCM
	// encrypt and decrypt. An object that exists already under a name with
	// a nonce is never adopted (ErrAmbiguousObject); one under a name
	// without (made before nonces) is taken only if the token attests it
	// generated it.
	GenerateKey(ctx context.Context, ref ObjectRef) error
	// Encrypt seals plaintext with AES-256-GCM under ref, binding aad. It
	// returns the IV that was used (chosen by the service or by the token,
	// depending on the vendor profile) and ciphertext||tag.
	Encrypt(ctx context.Context, ref ObjectRef, plaintext, aad []byte) (iv, ciphertext []byte, err error)
	// Decrypt opens ciphertext||tag. A wrong tag, IV or aad is ErrDecryptFailed.
	Decrypt(ctx context.Context, ref ObjectRef, iv, ciphertext, aad []byte) ([]byte, error)
	// SetDecryptOnly sets CKA_ENCRYPT=false on ref's object and reads it back.
	SetDecryptOnly(ctx context.Context, ref ObjectRef) error
	// Repair sets back the attributes of ref's object that differ from a
	// key version's template and may be set (CKA_ENCRYPT aside), and
	// returns what it changed; what cannot be set back is ErrAttributeMismatch.
	Repair(ctx context.Context, ref ObjectRef) ([]string, error)
	// Destroy removes ref's object. Destroying a missing object is not an error.
	Destroy(ctx context.Context, ref ObjectRef) error
	// Random returns n bytes from the token's RNG.
	Random(ctx context.Context, n int) ([]byte, error)
	// Inventory lists every object of this service in the token.
	Inventory(ctx context.Context) ([]ObjectInfo, error)
	// Ping proves that the token answers (a session can be used).
	Ping(ctx context.Context) error
	// ReadData and WriteData keep a small private value in the token under
	// label (data.go): what the database must not be able to roll back.
	// ReadData returns every value under label (usually one; two after a
	// crash mid-write); of a label never written it is ErrObjectNotFound.
	ReadData(ctx context.Context, label string) ([][]byte, error)
	WriteData(ctx context.Context, label string, value []byte) error

	// Bring your own key (wrap.go): the wrappings this token can unwrap,
	// RSA wrapping key pairs made in the token for one import each, the
	// unwrap itself into ref's object, and a key check value computed in
	// the token to recognise the same material again.
	WrappingAlgorithms() []string
	GenerateWrappingKey(ctx context.Context, id string) (*rsa.PublicKey, error)
	DestroyWrappingKey(ctx context.Context, id string) error
	Import(ctx context.Context, id, alg string, wrapped []byte, ref ObjectRef) error
	KeyCheckValue(ctx context.Context, ref ObjectRef) ([]byte, error)
	// Close releases sessions and the module. It is idempotent.
	Close() error
}

// Errors at the token boundary. PKCS#11 return values are translated once,
// here, so that nothing above hsm looks at CKR_ codes.
var (
	// ErrUnavailable: the token, a session or the module cannot be used now
	// (device removed, sessions exhausted, pool wait timed out). Retryable.
	ErrUnavailable = errors.New("hsm: token unavailable")
	// ErrObjectNotFound: no object with the CKA_ID.
	ErrObjectNotFound = errors.New("hsm: object not found")
	// ErrAmbiguousObject: more than one object with the CKA_ID; fail closed.
	ErrAmbiguousObject = errors.New("hsm: more than one object with the same id")
	// ErrDecryptFailed: authentication of the ciphertext failed.
	ErrDecryptFailed = errors.New("hsm: decryption failed")
	// ErrNotPermitted: the object refuses the function (e.g. encrypt with a
	// decrypt-only version: CKR_KEY_FUNCTION_NOT_PERMITTED).
	ErrNotPermitted = errors.New("hsm: key function not permitted")
	// ErrAttributeMismatch: an object's security attributes are not what this
	// service requires (e.g. extractable); the object is refused.
	ErrAttributeMismatch = errors.New("hsm: object attributes do not match the required template")
	// ErrLogin: the PIN is wrong or the token is locked. Fatal at start-up.
	ErrLogin = errors.New("hsm: login failed")
)
