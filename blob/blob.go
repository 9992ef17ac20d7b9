// Package blob reads the header of hsmkms ciphertext blobs (format 1,
// docs/ciphertext.md) without a key: which key and which version made a
// blob. Callers of the REST API use it to learn what encrypted their data
// from the data itself; the header is authenticated, so a blob whose header
// was changed does not decrypt.
//
// It has no dependencies on the service, so any client of hsmkms can import
// it. It is the one parser of the header: the service's (service/blob.go)
// calls Parse, so a blob that one accepts the other accepts.
package blob

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// Format 1 layout (docs/ciphertext.md).
const (
	formatV1   = 0x01
	prefixLen  = 23 // format, key id, version, IV length, tag length
	minIVLen   = 12
	maxIVLen   = 16
	tagLen     = 16
	minDataLen = 1
	maxVersion = 1<<31 - 1

	// MaxOverhead is the most a blob adds to its plaintext: prefix, the
	// longest IV (16 bytes, HSMs that choose it) and the tag.
	MaxOverhead = prefixLen + maxIVLen + tagLen
)

// ErrInvalid is returned for every byte string that is not a well-formed
// format-1 blob; like the service, it does not say which check failed.
var ErrInvalid = errors.New("not an hsmkms ciphertext blob")

// Header is what a blob says about itself.
type Header struct {
	KeyID   uuid.UUID
	Version int // 1-based key version that encrypted the blob
}

// String is "<key id>:v<version>".
func (h Header) String() string { return fmt.Sprintf("%s:v%d", h.KeyID, h.Version) }

// Parse checks every length before reading and returns the blob's header,
// or ErrInvalid.
func Parse(b []byte) (Header, error) {
	if len(b) < prefixLen+minIVLen+minDataLen+tagLen || b[0] != formatV1 {
		return Header{}, ErrInvalid
	}
	version := binary.BigEndian.Uint32(b[17:21])
	ivLen, tl := int(b[21]), int(b[22])
	if version == 0 || version > maxVersion || ivLen < minIVLen || ivLen > maxIVLen || tl != tagLen {
		return Header{}, ErrInvalid
	}
	if len(b) < prefixLen+ivLen+minDataLen+tagLen {
		return Header{}, ErrInvalid
	}
	var id uuid.UUID
	copy(id[:], b[1:17])
	return Header{KeyID: id, Version: int(version)}, nil
}
