package hsm

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// ObjectRef names one key version's object in the token. Its CKA_ID and
// CKA_LABEL are derived from it, so that an auditor can match the token's
// inventory to the metadata. The nonce, drawn for each version before its
// object is made and recorded with it (its label), makes the name
// unpredictable: someone else with the PIN cannot prepare an object under
// the next version's name for a rotation to take. Versions made before
// nonces have the zero nonce and keep their names.
type ObjectRef struct {
	KeyID   uuid.UUID
	Version int
	Nonce   [NonceLen]byte
}

// NonceLen is the length of a version's nonce.
const NonceLen = 16

// NewRef names version n of key id, to be generated in the token, with a
// fresh random nonce (127 random bits: the first is the origin, Imported).
func NewRef(id uuid.UUID, n int) (ObjectRef, error) {
	r := ObjectRef{KeyID: id, Version: n}
	if _, err := rand.Read(r.Nonce[:]); err != nil {
		return ObjectRef{}, fmt.Errorf("hsm: drawing a version nonce: %w", err)
	}
	r.Nonce[0] &^= importedBit
	if r.Legacy() {
		r.Nonce[NonceLen-1] = 1 // 2^-127; a nonce is never all zero
	}
	return r, nil
}

// NewImportRef is NewRef for a version whose material is imported
// (Import): the token does not attest such an object as generated.
func NewImportRef(id uuid.UUID, n int) (ObjectRef, error) {
	r, err := NewRef(id, n)
	r.Nonce[0] |= importedBit
	return r, err
}

const importedBit = 0x80

// Legacy says r has no nonce (a version made before nonces).
func (r ObjectRef) Legacy() bool { return r.Nonce == [NonceLen]byte{} }

// Imported says r names a version with imported material (NewImportRef).
// Names without a nonce do not say.
func (r ObjectRef) Imported() bool { return !r.Legacy() && r.Nonce[0]&importedBit != 0 }

// LabelPrefix starts the CKA_LABEL of every object this service creates.
const LabelPrefix = "hsmkms/"

// ID is the CKA_ID: the 16 bytes of the key id, the version as a 4-byte
// big-endian integer, and the nonce (36 bytes; 20 without a nonce).
func (r ObjectRef) ID() []byte {
	id := make([]byte, 20, 20+NonceLen)
	copy(id, r.KeyID[:])
	binary.BigEndian.PutUint32(id[16:], uint32(r.Version))
	if !r.Legacy() {
		id = append(id, r.Nonce[:]...)
	}
	return id
}

// Label is the CKA_LABEL, e.g. "hsmkms/2f1c.../v3/9b2e..." (the nonce in
// hex; "hsmkms/2f1c.../v3" without one).
func (r ObjectRef) Label() string {
	l := LabelPrefix + r.KeyID.String() + "/v" + strconv.Itoa(r.Version)
	if !r.Legacy() {
		l += "/" + hex.EncodeToString(r.Nonce[:])
	}
	return l
}

func (r ObjectRef) String() string { return r.Label() }

// ParseLabel is the inverse of Label, with or without a nonce; it fails
// for objects of other owners.
func ParseLabel(label string) (ObjectRef, error) {
	rest, ok := strings.CutPrefix(label, LabelPrefix)
	if !ok {
		return ObjectRef{}, fmt.Errorf("hsm: label %q is not ours", label)
	}
	idPart, verPart, ok := strings.Cut(rest, "/v")
	if !ok {
		return ObjectRef{}, fmt.Errorf("hsm: malformed label %q", label)
	}
	var nonce [NonceLen]byte
	verPart, noncePart, hasNonce := strings.Cut(verPart, "/")
	if hasNonce {
		n, err := hex.DecodeString(noncePart)
		if err != nil || len(n) != NonceLen || [NonceLen]byte(n) == nonce {
			return ObjectRef{}, fmt.Errorf("hsm: malformed label %q", label)
		}
		nonce = [NonceLen]byte(n)
	}
	id, err := uuid.Parse(idPart)
	if err != nil {
		return ObjectRef{}, fmt.Errorf("hsm: malformed label %q", label)
	}
	v, err := strconv.Atoi(verPart)
	if err != nil || v < 1 {
		return ObjectRef{}, fmt.Errorf("hsm: malformed label %q", label)
	}
	return ObjectRef{KeyID: id, Version: v, Nonce: nonce}, nil
}

// ObjectInfo is what the inventory reports of one object: its name and the
// security attributes an auditor checks.
type ObjectInfo struct {
	Ref              ObjectRef
	Label            string
	Encrypt          bool
	Decrypt          bool
	Sensitive        bool
	Extractable      bool
	NeverExtractable bool
	AlwaysSensitive  bool
	Local            bool // generated in the token (false for imported material)
	// Generated: the token attests the object was made inside it and never
	// readable (ALWAYS_SENSITIVE, NEVER_EXTRACTABLE, and LOCAL where the
	// token reports it truthfully). False for imported material, and for
	// a key someone derived or imported under a version's id.
	Generated bool
	// Drift lists the attributes that differ from the template of every
	// key version, CKA_ENCRYPT aside ("" when none): e.g.
	// "CKA_DERIVE=true". Repair sets back what the token allows.
	Drift string
}
