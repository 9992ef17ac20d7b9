package hsm

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/pkcs11"
)

// Defaults applied by Open to zero fields of Config and Profile.
const (
	DefaultMaxSessions     = 16
	DefaultPoolWaitTimeout = 5 * time.Second
	DefaultGCMIVLength     = 12  // NIST SP 800-38D's 96-bit IV
	DefaultGCMTagBits      = 128 // full tag; SoftHSM fails short tags (pitfall 24)
)

// CKR codes miekg/pkcs11 v1.1.2 has no name for (pitfall 16):
// CKR_ACTION_PROHIBITED and PKCS#11 3.0's CKR_AEAD_DECRYPT_FAILED.
const (
	ckrActionProhibited  = 0x1B
	ckrAEADDecryptFailed = 0x35
	ckmAESKeyWrapKWP     = 0x210B // CKM_AES_KEY_WRAP_KWP, RFC 5649 (PKCS#11 2.40)
	// NSS softoken's vendor codes (CKR_NSS = CKR_VENDOR_DEFINED|0x4E534350):
	// its certificate or key database could not be read or written.
	ckrNSSCertDBFailed = 0xCE534351
	ckrNSSKeyDBFailed  = 0xCE534352
)

// Config selects one token and bounds how it is used. Exactly one way to
// pick the token: the module path plus the token label (slot IDs are not
// stable, pitfall 26).
type Config struct {
	// Module is the absolute path of the vendor's PKCS#11 library. Relative
	// paths are refused: the library is arbitrary native code.
	Module string
	// InitArgs, when set, is passed to every C_Initialize as the pReserved
	// string of CK_C_INITIALIZE_ARGS: NSS softoken takes its database
	// there (configdir='sql:DIR' ... dbTokenDescription='LABEL'). Not a
	// secret: it must not hold a PIN.
	InitArgs string
	// TokenLabel names the token; zero or several tokens with it is an error.
	TokenLabel string
	// PIN is the user PIN. It is kept only for re-login after a token
	// reset and never appears in a log, an error or String().
	PIN string
	// MaxSessions caps the R/W sessions this process keeps open on the token
	// (default 16). Vendors cap sessions per application (CloudHSM 1024,
	// some USB tokens 16), so it is config, not derived from the token.
	MaxSessions int
	// PoolWaitTimeout bounds the wait for a free session (default 5s); when
	// it passes the call fails with ErrUnavailable instead of hanging.
	PoolWaitTimeout time.Duration
	// Profile holds what this vendor does differently; zero means DefaultProfile.
	Profile Profile
}

// Profile records vendor differences as data, so that supporting another HSM
// is a new value, not new branches in the code (pitfall 45).
type Profile struct {
	// Name identifies the profile in messages.
	Name string
	// GCMIVLength is the length of the IV the service draws for each encrypt
	// (default 12). It must be at least 12: SoftHSM silently accepts an empty
	// IV and then encrypts deterministically (pitfall 25).
	GCMIVLength int
	// GCMTagBits is the GCM tag length in bits (default 128).
	GCMTagBits int
	// DecryptFailureCodes are the CKR_ codes that C_Decrypt returns when the
	// tag does not verify. They become ErrDecryptFailed; any other code is a
	// token error. SoftHSM 2.6.1 says CKR_GENERAL_ERROR (pitfall 24), which
	// on a real HSM means something else, hence per vendor.
	DecryptFailureCodes []uint
	// NotPermittedCodes are the CKR_ codes with which C_EncryptInit refuses
	// a decrypt-only key (CKA_ENCRYPT=false): ErrNotPermitted, which makes
	// the service look for a newer primary version. SoftHSM says
	// CKR_KEY_FUNCTION_NOT_PERMITTED, NSS softoken CKR_KEY_TYPE_INCONSISTENT
	// (pitfalls item 51). Empty means CKR_KEY_FUNCTION_NOT_PERMITTED.
	NotPermittedCodes []uint
	// ModuleGoneCodes are codes that, on this token, also mean the module
	// was finalized (a hard reset: C_Initialize again), besides the
	// standard CKR_CRYPTOKI_NOT_INITIALIZED. NSS softoken answers calls on
	// the sessions of a finalized module with CKR_SESSION_HANDLE_INVALID
	// (pitfalls item 51).
	ModuleGoneCodes []uint
	// StorageFaultCodes are codes with which this token reports that its
	// object storage failed (unreadable, moved away, full): retryable, so
	// ErrUnavailable, and a reason to check the storage with the probe key
	// (probe.go). SoftHSM 2.6.1 answers C_GenerateKey with
	// CKR_GENERAL_ERROR when it cannot write its token directory; NSS
	// softoken with CKR_NSS_KEYDB_FAILED (a vendor code) when it cannot
	// write key4.db (pitfalls item 58).
	StorageFaultCodes []uint
	// UnwrapFailureCodes are codes of C_UnwrapKey that, on this token, mean
	// the wrapped bytes are bad (ErrUnwrapFailed), besides the standard
	// ones: NSS softoken refuses material of the wrong length with
	// CKR_KEY_SIZE_RANGE.
	UnwrapFailureCodes []uint
	// GCMLengthsWrong says the token's answers about AES-GCM output
	// lengths leave out the tag: the size query (NULL buffer) and the
	// length reported with CKR_BUFFER_TOO_SMALL (NSS softoken; pitfalls
	// item 49). This package never relies on either on any token (the
	// buffers are sized from the GCM lengths); the flag records the
	// difference and tells the tests what to expect.
	GCMLengthsWrong bool
	// ReportsLocal says CKA_LOCAL is true for keys the token generated.
	// NSS softoken says false (pitfalls item 52), so no check may rely on
	// it; the inventory reports it as the token says.
	ReportsLocal bool
	// ReplacesDuplicateID says C_GenerateKey, C_CreateObject and
	// C_UnwrapKey of a token object with the CKA_CLASS and CKA_ID of an
	// existing one silently replace it (NSS softoken: same handle, new key
	// value; pitfalls item 54) instead of making a second object. This package
	// never creates an object whose id exists; the flag tells the tests
	// which way a duplicate can be made.
	ReplacesDuplicateID bool
	// LoginRetryCodes are C_Login answers that are not a refused PIN but a
	// passing fault, tried again (session.go): SoftHSM 2.6 answers
	// CKR_GENERAL_ERROR now and then while another process writes the
	// same token (pitfalls item 30). Elsewhere that code is a device fault
	// and is not retried.
	LoginRetryCodes []uint
	// ForcesSensitive says the token makes every secret key sensitive and
	// private whatever the template asks (NSS softoken), so a template with
	// CKA_SENSITIVE or CKA_PRIVATE false still gives a key that passes the
	// read-back (and truly cannot be read: pitfalls item 53).
	ForcesSensitive bool
	// SupportsEncryptFlip says that CKA_ENCRYPT can be set to false on an
	// existing key (SoftHSM 2.6: yes; YubiHSM: no). Without it SetDecryptOnly
	// is a no-op and the store's version state is the only guard.
	SupportsEncryptFlip bool
	// KWPMechanism is the token's number for AES key wrap with padding
	// (RFC 5649): SoftHSM 2.6.1 uses 0x210A, the spec and NSS softoken
	// 0x210B (pitfalls items 18 and 55; NSS's 0x210A is another algorithm,
	// PKCS#7 padding, so the number is profile data, not probed). 0: not
	// offered.
	KWPMechanism uint
	// OAEPSHA256 says the token unwraps RSA-OAEP with SHA-256 (SoftHSM
	// 2.6.1: SHA-1 only, pitfalls item 19).
	OAEPSHA256 bool
	// ReportsUnwrappedLength says CKA_VALUE_LEN of an unwrapped AES key is
	// its length (SoftHSM 2.6.1 says 0, pitfalls item 21); without it,
	// plain RSA-OAEP imports cannot be length-checked and are not offered.
	ReportsUnwrappedLength bool
	// TokenGeneratesIV says the token chooses each GCM IV itself: HSMs in
	// FIPS mode (AWS CloudHSM, Luna and others) refuse a caller's IV with
	// CKR_MECHANISM_PARAM_INVALID. The service then passes a zeroed IV
	// buffer of GCMIVLength and reads the token's IV back from the
	// mechanism parameters; an IV that comes back unchanged is refused.
	// Open checks the mode against the token with a session key.
	TokenGeneratesIV bool
	// LacksAllowedMechanisms says the token does not know
	// CKA_ALLOWED_MECHANISMS (PKCS#11 2.40; NSS softoken fails the
	// generation with CKR_GENERAL_ERROR). Objects are then made without
	// it, and a PIN holder may use a version with any AES mechanism the
	// token offers (AES-ECB gives GCM's hash key). SoftHSM 2.6 enforces it.
	LacksAllowedMechanisms bool
	// LacksCopyable says the token does not know CKA_COPYABLE (NSS
	// softoken, as above). Objects are then made without it, and a PIN
	// holder can copy them (a copy outlives the version's destruction).
	LacksCopyable bool
	// LacksTokenDataObjects says the token refuses private token objects
	// of class CKO_DATA (NSS softoken answers CKR_ATTRIBUTE_VALUE_INVALID:
	// its sftk_handleDataObject takes only public session data objects).
	// ReadData and WriteData then keep each value in a key that can do
	// nothing (data.go).
	LacksTokenDataObjects bool
	// IgnoresUnwrapTemplate says the token accepts CKA_UNWRAP_TEMPLATE but
	// does not enforce it (NSS softoken unwraps into a readable key
	// whatever the template); GenerateWrappingKey then does not prove it.
	// The wrapping keys are session objects, which other processes cannot
	// see, so BYOK material stays out of their reach all the same.
	IgnoresUnwrapTemplate bool
}

// SoftHSMProfile is SoftHSM 2.6.x, the development and CI token.
var SoftHSMProfile = Profile{
	Name:        "softhsm2",
	GCMIVLength: DefaultGCMIVLength,
	GCMTagBits:  DefaultGCMTagBits,
	DecryptFailureCodes: []uint{
		pkcs11.CKR_GENERAL_ERROR, // 2.6.1: wrong tag, aad, iv or truncated input
		pkcs11.CKR_ENCRYPTED_DATA_INVALID,
		pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE, // SoftHSM after upstream PR #690
		ckrAEADDecryptFailed,
	},
	NotPermittedCodes:   []uint{pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED},
	StorageFaultCodes:   []uint{pkcs11.CKR_GENERAL_ERROR},
	LoginRetryCodes:     []uint{pkcs11.CKR_GENERAL_ERROR},
	ReportsLocal:        true,
	SupportsEncryptFlip: true,
	KWPMechanism:        pkcs11.CKM_AES_KEY_WRAP_PAD, // 0x210A
}

// NSSProfile is NSS softoken 3.8x (libsoftokn3.so), the token behind
// Firefox and FIPS-validated in other distributions: the second PKCS#11
// implementation CI runs the suite on (docs/pkcs11-pitfalls.md, items
// 49-57).
var NSSProfile = Profile{
	Name:        "nss",
	GCMIVLength: DefaultGCMIVLength,
	GCMTagBits:  DefaultGCMTagBits,
	DecryptFailureCodes: []uint{
		pkcs11.CKR_ENCRYPTED_DATA_INVALID, // wrong tag, aad or iv
		pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE,
		ckrAEADDecryptFailed,
	},
	NotPermittedCodes:      []uint{pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED, pkcs11.CKR_KEY_TYPE_INCONSISTENT},
	ModuleGoneCodes:        []uint{pkcs11.CKR_SESSION_HANDLE_INVALID},
	StorageFaultCodes:      []uint{ckrNSSCertDBFailed, ckrNSSKeyDBFailed},
	UnwrapFailureCodes:     []uint{pkcs11.CKR_KEY_SIZE_RANGE},
	ReplacesDuplicateID:    true,
	ForcesSensitive:        true,
	GCMLengthsWrong:        true,
	SupportsEncryptFlip:    true,
	KWPMechanism:           ckmAESKeyWrapKWP,
	OAEPSHA256:             true,
	ReportsUnwrappedLength: true,
	LacksAllowedMechanisms: true,
	LacksCopyable:          true,
	IgnoresUnwrapTemplate:  true,
	LacksTokenDataObjects:  true,
}

// DefaultProfile is a standards-following HSM with caller-chosen 12-byte
// IVs. CKR_GENERAL_ERROR is not a decryption failure here: on a real HSM it
// means the device has a problem.
var DefaultProfile = Profile{
	Name:        "default",
	GCMIVLength: DefaultGCMIVLength,
	GCMTagBits:  DefaultGCMTagBits,
	DecryptFailureCodes: []uint{
		pkcs11.CKR_ENCRYPTED_DATA_INVALID,
		pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE,
		ckrAEADDecryptFailed,
	},
	NotPermittedCodes:      []uint{pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED},
	ReportsLocal:           true,
	SupportsEncryptFlip:    true,
	KWPMechanism:           ckmAESKeyWrapKWP,
	OAEPSHA256:             true,
	ReportsUnwrappedLength: true,
}

// withDefaults returns c with zero fields filled in; c itself is not changed
// (crypto11's Configure mutates its argument; this does not).
func (c Config) withDefaults() Config {
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.PoolWaitTimeout == 0 {
		c.PoolWaitTimeout = DefaultPoolWaitTimeout
	}
	if c.Profile.Name == "" && c.Profile.GCMIVLength == 0 && len(c.Profile.DecryptFailureCodes) == 0 {
		c.Profile = DefaultProfile
	}
	if c.Profile.GCMIVLength == 0 {
		c.Profile.GCMIVLength = DefaultGCMIVLength
	}
	if c.Profile.GCMTagBits == 0 {
		c.Profile.GCMTagBits = DefaultGCMTagBits
	}
	if len(c.Profile.NotPermittedCodes) == 0 {
		c.Profile.NotPermittedCodes = []uint{pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED}
	}
	return c
}

// setDefaults fills the zero fields of c in place.
func (c *Config) setDefaults() { *c = c.withDefaults() }

// Validate reports the first bad field by name, after defaults are applied.
// It never repeats the PIN.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Module == "":
		return errors.New("hsm: config: Module is empty (absolute path of the PKCS#11 library)")
	case !filepath.IsAbs(c.Module):
		return fmt.Errorf("hsm: config: Module %q is not an absolute path", c.Module)
	case strings.ContainsRune(c.InitArgs, 0):
		return errors.New("hsm: config: InitArgs contains a NUL byte")
	case c.TokenLabel == "":
		return errors.New("hsm: config: TokenLabel is empty")
	case len(c.TokenLabel) > 32:
		return fmt.Errorf("hsm: config: TokenLabel %q is longer than 32 bytes", c.TokenLabel)
	case c.PIN == "":
		return errors.New("hsm: config: PIN is empty")
	case c.MaxSessions < 1:
		return fmt.Errorf("hsm: config: MaxSessions %d is less than 1", c.MaxSessions)
	case c.PoolWaitTimeout < 0:
		return fmt.Errorf("hsm: config: PoolWaitTimeout %v is negative", c.PoolWaitTimeout)
	// The ciphertext blob stores IVs of 12 to 16 bytes and a 16-byte tag
	// (docs/ciphertext.md): anything else would encrypt into blobs that
	// could never be decrypted.
	case c.Profile.GCMIVLength < 12 || c.Profile.GCMIVLength > 16:
		return fmt.Errorf("hsm: config: Profile.GCMIVLength %d is outside 12..16 (what a ciphertext blob can hold)", c.Profile.GCMIVLength)
	case c.Profile.GCMTagBits != 128:
		return fmt.Errorf("hsm: config: Profile.GCMTagBits %d is not 128 (what a ciphertext blob holds)", c.Profile.GCMTagBits)
	case len(c.Profile.DecryptFailureCodes) == 0:
		return fmt.Errorf("hsm: config: Profile.DecryptFailureCodes of profile %q is empty (a wrong tag would look like a token fault)", c.Profile.Name)
	}
	return nil
}

// String describes c without the PIN, so that logging a Config is safe.
func (c Config) String() string {
	pin := "<empty>"
	if c.PIN != "" {
		pin = "<redacted>"
	}
	return fmt.Sprintf("hsm.Config{Module:%q InitArgs:%q TokenLabel:%q PIN:%s MaxSessions:%d PoolWaitTimeout:%v Profile:%s}",
		c.Module, c.InitArgs, c.TokenLabel, pin, c.MaxSessions, c.PoolWaitTimeout, c.Profile.Name)
}

// GoString is String, so that %#v does not print the PIN either.
func (c Config) GoString() string { return c.String() }
