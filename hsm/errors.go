package hsm

import (
	"errors"
	"fmt"
	"slices"

	"github.com/miekg/pkcs11"
)

// tokenError is a PKCS#11 failure translated at the boundary: kind is one
// of the sentinels of token.go (or nil), code the CKR value. errors.Is sees
// both the sentinel and the pkcs11.Error. It never carries key material or
// the PIN: only the operation, the object's label and the code.
type tokenError struct {
	op   string
	code uint
	kind error
}

func (e *tokenError) Error() string {
	if e.kind != nil {
		return fmt.Sprintf("%s: %s: %s", e.kind, e.op, ckrName(e.code))
	}
	return fmt.Sprintf("hsm: %s: %s", e.op, ckrName(e.code))
}

func (e *tokenError) Unwrap() []error {
	if e.kind == nil {
		return []error{pkcs11.Error(e.code)}
	}
	return []error{e.kind, pkcs11.Error(e.code)}
}

// ckrCode extracts the CKR code of a PKCS#11 error, by number (never by
// message: pitfalls item 16).
func ckrCode(err error) (uint, bool) {
	var pe pkcs11.Error
	if errors.As(err, &pe) {
		return uint(pe), true
	}
	return 0, false
}

// Codes that mean the session (or its login) is dead but the module works:
// drop the session, close the idle ones, empty the handle cache, log in
// again on a fresh session (soft reset).
var sessionDeadCodes = []uint{
	pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_OPERATION_ACTIVE,
	pkcs11.CKR_USER_NOT_LOGGED_IN,
}

// Codes that mean the module or the token was reset or went away: also
// initialise the module again and find the slot again by label (hard reset).
var moduleDeadCodes = []uint{
	pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT,
	pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_SLOT_ID_INVALID, pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
}

// Codes after which the session handle no longer exists: it is forgotten,
// not closed (after C_Initialize the number may name a new session).
var goneSessionCodes = []uint{
	pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED,
	pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT,
}

// Codes of failures that end the operation they belong to (PKCS#11 v2.40
// §5.2: C_Encrypt and C_Decrypt terminate on any error but
// CKR_BUFFER_TOO_SMALL) or that come before one starts, with the profile's
// DecryptFailureCodes (a wrong tag, which is common): the session is
// clean and goes back to the pool. After any other error it is closed, so
// that no operation left active reaches the next borrower.
var cleanFailureCodes = []uint{
	pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE,
	pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED, pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID,
}

// Codes that mean a handle no longer names an object: re-find it.
var staleHandleCodes = []uint{pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID}

// Codes of a refused login. Fatal: never retried.
var loginCodes = []uint{
	pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_PIN_EXPIRED,
	pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE, pkcs11.CKR_USER_PIN_NOT_INITIALIZED,
}

func hasCode(err error, codes []uint) bool {
	c, ok := ckrCode(err)
	return ok && slices.Contains(codes, c)
}

// translate maps a raw PKCS#11 error of op to a tokenError wrapping the
// sentinel that applies. Errors that are not PKCS#11 codes pass unchanged.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	var te *tokenError
	if errors.As(err, &te) {
		return err // translated already
	}
	code, ok := ckrCode(err)
	if !ok {
		return err
	}
	var kind error
	switch {
	case code == pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED:
		kind = ErrNotPermitted
	case slices.Contains(staleHandleCodes, code):
		kind = ErrObjectNotFound
	case slices.Contains(sessionDeadCodes, code), slices.Contains(moduleDeadCodes, code),
		code == pkcs11.CKR_SESSION_COUNT, code == pkcs11.CKR_DEVICE_MEMORY, code == pkcs11.CKR_HOST_MEMORY:
		kind = ErrUnavailable
	case slices.Contains(loginCodes, code):
		kind = ErrLogin
	}
	return &tokenError{op: op, code: code, kind: kind}
}

// translate is the package translate with the profile's codes first: a
// decrypt-only key's refusal is ErrNotPermitted, and a session of a
// finalized module or a failed storage is ErrUnavailable, whatever code
// this token uses.
func (p *PKCS11) translate(op string, err error) error {
	if code, ok := ckrCode(err); ok && !errors.As(err, new(*tokenError)) {
		switch {
		case slices.Contains(p.cfg.Profile.NotPermittedCodes, code):
			return &tokenError{op: op, code: code, kind: ErrNotPermitted}
		case slices.Contains(p.cfg.Profile.ModuleGoneCodes, code), slices.Contains(p.cfg.Profile.StorageFaultCodes, code):
			return &tokenError{op: op, code: code, kind: ErrUnavailable}
		}
	}
	return translate(op, err)
}

// moduleGone says err means the module or token went away (hard reset),
// by the standard codes or by the profile's.
func (p *PKCS11) moduleGone(err error) bool {
	return hasCode(err, moduleDeadCodes) || hasCode(err, p.cfg.Profile.ModuleGoneCodes)
}

// ckrNames names the codes this package meets; miekg/pkcs11 v1.1.2 lacks
// some (e.g. CKR_ACTION_PROHIBITED, CKR_AEAD_DECRYPT_FAILED).
var ckrNames = map[uint]string{
	pkcs11.CKR_GENERAL_ERROR:              "CKR_GENERAL_ERROR",
	pkcs11.CKR_FUNCTION_FAILED:            "CKR_FUNCTION_FAILED",
	pkcs11.CKR_ARGUMENTS_BAD:              "CKR_ARGUMENTS_BAD",
	pkcs11.CKR_HOST_MEMORY:                "CKR_HOST_MEMORY",
	pkcs11.CKR_SLOT_ID_INVALID:            "CKR_SLOT_ID_INVALID",
	pkcs11.CKR_ATTRIBUTE_READ_ONLY:        "CKR_ATTRIBUTE_READ_ONLY",
	pkcs11.CKR_ATTRIBUTE_SENSITIVE:        "CKR_ATTRIBUTE_SENSITIVE",
	pkcs11.CKR_ATTRIBUTE_TYPE_INVALID:     "CKR_ATTRIBUTE_TYPE_INVALID",
	pkcs11.CKR_ATTRIBUTE_VALUE_INVALID:    "CKR_ATTRIBUTE_VALUE_INVALID",
	ckrActionProhibited:                   "CKR_ACTION_PROHIBITED",
	pkcs11.CKR_DATA_LEN_RANGE:             "CKR_DATA_LEN_RANGE",
	pkcs11.CKR_DEVICE_ERROR:               "CKR_DEVICE_ERROR",
	pkcs11.CKR_DEVICE_MEMORY:              "CKR_DEVICE_MEMORY",
	pkcs11.CKR_DEVICE_REMOVED:             "CKR_DEVICE_REMOVED",
	ckrAEADDecryptFailed:                  "CKR_AEAD_DECRYPT_FAILED",
	pkcs11.CKR_ENCRYPTED_DATA_INVALID:     "CKR_ENCRYPTED_DATA_INVALID",
	pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE:   "CKR_ENCRYPTED_DATA_LEN_RANGE",
	pkcs11.CKR_KEY_HANDLE_INVALID:         "CKR_KEY_HANDLE_INVALID",
	pkcs11.CKR_KEY_TYPE_INCONSISTENT:      "CKR_KEY_TYPE_INCONSISTENT",
	pkcs11.CKR_KEY_SIZE_RANGE:             "CKR_KEY_SIZE_RANGE",
	pkcs11.CKR_BUFFER_TOO_SMALL:           "CKR_BUFFER_TOO_SMALL",
	pkcs11.CKR_WRAPPED_KEY_INVALID:        "CKR_WRAPPED_KEY_INVALID",
	pkcs11.CKR_WRAPPED_KEY_LEN_RANGE:      "CKR_WRAPPED_KEY_LEN_RANGE",
	pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED: "CKR_KEY_FUNCTION_NOT_PERMITTED",
	pkcs11.CKR_MECHANISM_INVALID:          "CKR_MECHANISM_INVALID",
	pkcs11.CKR_MECHANISM_PARAM_INVALID:    "CKR_MECHANISM_PARAM_INVALID",
	pkcs11.CKR_OBJECT_HANDLE_INVALID:      "CKR_OBJECT_HANDLE_INVALID",
	pkcs11.CKR_OPERATION_ACTIVE:           "CKR_OPERATION_ACTIVE",
	pkcs11.CKR_OPERATION_NOT_INITIALIZED:  "CKR_OPERATION_NOT_INITIALIZED",
	pkcs11.CKR_PIN_INCORRECT:              "CKR_PIN_INCORRECT",
	pkcs11.CKR_PIN_INVALID:                "CKR_PIN_INVALID",
	pkcs11.CKR_PIN_LEN_RANGE:              "CKR_PIN_LEN_RANGE",
	pkcs11.CKR_PIN_EXPIRED:                "CKR_PIN_EXPIRED",
	pkcs11.CKR_PIN_LOCKED:                 "CKR_PIN_LOCKED",
	pkcs11.CKR_SESSION_CLOSED:             "CKR_SESSION_CLOSED",
	pkcs11.CKR_SESSION_COUNT:              "CKR_SESSION_COUNT",
	pkcs11.CKR_SESSION_HANDLE_INVALID:     "CKR_SESSION_HANDLE_INVALID",
	pkcs11.CKR_SESSION_READ_ONLY:          "CKR_SESSION_READ_ONLY",
	pkcs11.CKR_TEMPLATE_INCOMPLETE:        "CKR_TEMPLATE_INCOMPLETE",
	pkcs11.CKR_TEMPLATE_INCONSISTENT:      "CKR_TEMPLATE_INCONSISTENT",
	pkcs11.CKR_TOKEN_NOT_PRESENT:          "CKR_TOKEN_NOT_PRESENT",
	pkcs11.CKR_TOKEN_NOT_RECOGNIZED:       "CKR_TOKEN_NOT_RECOGNIZED",
	pkcs11.CKR_USER_ALREADY_LOGGED_IN:     "CKR_USER_ALREADY_LOGGED_IN",
	pkcs11.CKR_USER_NOT_LOGGED_IN:         "CKR_USER_NOT_LOGGED_IN",
	pkcs11.CKR_USER_PIN_NOT_INITIALIZED:   "CKR_USER_PIN_NOT_INITIALIZED",
	pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:   "CKR_CRYPTOKI_NOT_INITIALIZED",
	ckrNSSCertDBFailed:                    "CKR_NSS_CERTDB_FAILED",
	ckrNSSKeyDBFailed:                     "CKR_NSS_KEYDB_FAILED",
}

// ckrName names a CKR code for messages, e.g. "CKR_ACTION_PROHIBITED (0x1B)".
func ckrName(code uint) string {
	if n, ok := ckrNames[code]; ok {
		return fmt.Sprintf("%s (0x%X)", n, code)
	}
	return fmt.Sprintf("CKR 0x%X", code)
}
