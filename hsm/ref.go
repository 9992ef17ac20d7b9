package hsm

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// ObjectRef names one key version's object in the token. Its CKA_ID and
// CKA_LABEL are derived from it deterministically, so a crashed rotation can
// find the object it made and an auditor can match the token's inventory to
// the metadata.
type ObjectRef struct {
	KeyID   uuid.UUID
	Version int
}

// LabelPrefix starts the CKA_LABEL of every object this service creates.
const LabelPrefix = "hsmkms/"

// ID is the CKA_ID: the 16 bytes of the key id followed by the version as a
// 4-byte big-endian integer (20 bytes).
func (r ObjectRef) ID() []byte {
	id := make([]byte, 20)
	copy(id, r.KeyID[:])
	binary.BigEndian.PutUint32(id[16:], uint32(r.Version))
	return id
}

// Label is the CKA_LABEL, e.g. "hsmkms/2f1c.../v3".
func (r ObjectRef) Label() string {
	return LabelPrefix + r.KeyID.String() + "/v" + strconv.Itoa(r.Version)
}

func (r ObjectRef) String() string { return r.Label() }

// ParseLabel is the inverse of Label; it fails for objects of other owners.
func ParseLabel(label string) (ObjectRef, error) {
	rest, ok := strings.CutPrefix(label, LabelPrefix)
	if !ok {
		return ObjectRef{}, fmt.Errorf("hsm: label %q is not ours", label)
	}
	idPart, verPart, ok := strings.Cut(rest, "/v")
	if !ok {
		return ObjectRef{}, fmt.Errorf("hsm: malformed label %q", label)
	}
	id, err := uuid.Parse(idPart)
	if err != nil {
		return ObjectRef{}, fmt.Errorf("hsm: malformed label %q", label)
	}
	v, err := strconv.Atoi(verPart)
	if err != nil || v < 1 {
		return ObjectRef{}, fmt.Errorf("hsm: malformed label %q", label)
	}
	return ObjectRef{KeyID: id, Version: v}, nil
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
