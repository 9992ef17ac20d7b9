// Package hsm is the PKCS#11 token of hsmkms: the only code that talks to
// the HSM. The service sees the narrow Token interface; PKCS11 implements it
// on github.com/miekg/pkcs11. PKCS#11 return codes are translated once, here,
// into the sentinels of token.go; nothing above this package sees a CKR_ code.
//
// # Objects and what the token enforces
//
// Each key version is one AES-256 secret key object generated in the token
// with a complete, explicit template: CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE
// true; CKA_EXTRACTABLE and CKA_COPYABLE false; CKA_ENCRYPT and CKA_DECRYPT
// true; CKA_WRAP, CKA_UNWRAP, CKA_DERIVE, CKA_SIGN, CKA_VERIFY false;
// CKA_ALLOWED_MECHANISMS AES-GCM (where the token knows the last two:
// Profile.LacksCopyable, LacksAllowedMechanisms). The attributes, key
// type and length are read back after generation, CKA_ALWAYS_SENSITIVE,
// CKA_NEVER_EXTRACTABLE and (Profile.ReportsLocal) CKA_LOCAL included; an
// object that does not match is destroyed and refused (ErrAttributeMismatch).
// The token, not this code, guarantees that the key value cannot be read
// (CKA_VALUE answers CKR_ATTRIBUTE_SENSITIVE) and that CKA_SENSITIVE and
// CKA_EXTRACTABLE cannot be weakened (CKR_ATTRIBUTE_READ_ONLY). CKA_ID (key
// id ‖ version ‖ nonce) and CKA_LABEL ("hsmkms/<key-id>/v<n>/<nonce>") come
// from ObjectRef; the nonce, drawn per version, makes the name
// unpredictable, and GenerateKey never adopts an object found under a name
// with a nonce (issue 16: someone else with the PIN could have planted it).
// An auditor matches Inventory with the metadata; Inventory reports what
// differs from the template (Drift) and Repair sets back what may be set.
// Lookups fail closed: two objects with one CKA_ID is ErrAmbiguousObject.
// Wrapping keys for BYOK are session objects of a session of their own
// (keeper.go), invisible to other processes.
//
// # Decrypt-only
//
// When a version stops being primary, SetDecryptOnly sets CKA_ENCRYPT=false:
// the token then refuses C_EncryptInit (CKR_KEY_FUNCTION_NOT_PERMITTED, or
// the profile's NotPermittedCodes, e.g. NSS's CKR_KEY_TYPE_INCONSISTENT:
// ErrNotPermitted) but still decrypts. Anyone with the user PIN can set it
// back (SoftHSM allows it), so the service's database stays the authority
// and its reconciler re-checks the flag through Inventory.
//
// # Sessions and login
//
// Sessions are R/W and serial, pooled (at most Config.MaxSessions), opened
// lazily and kept: never opened and closed per request. Borrowing honours
// the caller's context and Config.PoolWaitTimeout; running out is
// ErrUnavailable, not a hang. Login is per application, not per session:
// each new session calls C_Login and takes CKR_USER_ALREADY_LOGGED_IN as
// success. A refused PIN is ErrLogin and is never tried again in the
// process (a retry loop would lock the token). Pooled code never calls
// C_Logout or C_CloseAllSessions: they act on every session of the process.
// Caveat: SoftHSM answers CKR_USER_ALREADY_LOGGED_IN before checking the
// PIN, so while the process is logged in, an Open with a wrong PIN succeeds.
//
// # Recovery
//
// A call whose session turns out dead (CKR_SESSION_HANDLE_INVALID,
// CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN, ...) or whose module or token
// went away (CKR_CRYPTOKI_NOT_INITIALIZED, CKR_DEVICE_REMOVED,
// CKR_TOKEN_NOT_PRESENT, CKR_DEVICE_ERROR, ...) ends the current generation:
// idle sessions are closed, the handle cache is emptied, and in the second
// case the module is initialised again and the slot found again by label.
// The next session logs in again, and the call is retried once; if that
// fails too, the error wraps ErrUnavailable. So kmsd survives a token
// restart, C_CloseAllSessions or a logout without restarting. A search that
// finds nothing on a session that is not logged in counts as a lost login,
// not as a missing object: after a logout private objects are invisible.
// Recovery after a dead session or module never calls C_Finalize (the
// module's state is shared by the whole process); Close finalizes only
// when the last PKCS11 of the module closes. The one exception is a failed
// storage (probe.go): Ping encrypts under a probe key, a token object made
// at Open, because an open session proves nothing when the token's storage
// is unreadable (SoftHSM then still opens sessions but shows no object,
// and does not see them again until the module is initialised anew). A
// token that shows no probe key is finalized and initialised again, at
// most once a second, after every call in flight returned, and only when
// this PKCS11 is the module's only user in the process; a "not found"
// from such a token is ErrUnavailable, not a missing key. The profile's
// StorageFaultCodes (a write to the storage failed) are ErrUnavailable
// too (docs/pkcs11-pitfalls.md, item 58).
//
// # Handles
//
// Object handles are cached in memory by CKA_ID, tagged with the generation
// they were found in, so the request path never searches the token (one
// search costs ~70 ms with 2,000 objects on SoftHSM, one encryption ~50 µs).
// Concurrent misses share one search; a handle of an older generation is
// never used (SoftHSM renumbers objects after a logout or C_Initialize);
// CKR_OBJECT_HANDLE_INVALID drops the entry and finds the object again;
// "not found" is never cached. Stats counts searches, so tests can prove it.
//
// SoftHSM 2.6.1 races object creation against searches (pitfalls item 30),
// so generation, attribute changes, destruction, inventory and every search
// are serialised per token; encrypt, decrypt and random with a cached handle
// stay concurrent.
//
// # Why miekg/pkcs11 and not crypto11
//
// crypto11 (v1.2.5 and ThalesGroup v1.5.0) panics in AEAD Seal on any token
// error (a decrypt-only key or a pool timeout would crash a request),
// defaults GCM to a 16-byte IV, returns dead sessions to its pool forever,
// never logs in again after a token reset, waits forever for a session by
// default, and has no C_SetAttributeValue, C_UnwrapKey or handle access
// (docs/pkcs11-pitfalls.md, items 2-8). Every failure here is an error.
//
// # Vendor differences
//
// Profile holds them as data: GCM IV and tag length, which C_Decrypt codes
// mean "authentication failed" (SoftHSM 2.6.1 answers a wrong tag with
// CKR_GENERAL_ERROR, which on a real HSM means a device fault), which codes
// refuse a decrypt-only key or mean a finalized module, whether CKA_ENCRYPT
// can be flipped, the BYOK mechanisms, and what the token reports falsely
// or does silently (CKA_LOCAL, duplicate ids). SelectProfile names them
// (softhsm, nss, generic; auto from the module's file name). The suite
// runs on SoftHSM2 and on NSS softoken, two independent implementations.
// The IV is drawn by this package (12 bytes from crypto/rand) and returned
// with the ciphertext; IVs shorter than 12 bytes never reach the token,
// which would otherwise encrypt deterministically.
//
// Config.InitArgs goes to every C_Initialize (Open and each hard reset) as
// the pReserved string of CK_C_INITIALIZE_ARGS: NSS softoken finds its
// database there. AES-GCM C_Encrypt and C_Decrypt are called directly
// (direct.go) with buffers sized from the GCM lengths, because
// miekg/pkcs11 sizes them from the token's size query, which NSS answers
// without the tag.
package hsm
