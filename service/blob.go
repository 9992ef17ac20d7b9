package service

import (
	"encoding/binary"
	"sort"

	"github.com/google/uuid"
	blobfmt "github.com/hsmkms/hsmkms/blob"
)

// Ciphertext blob, format 1 (docs/ciphertext.md):
//
//	offset  size  field
//	0       1     format (0x01)
//	1       16    key id (UUID bytes)
//	17      4     key version (uint32, big-endian, >= 1)
//	21      1     IV length n (12..16)
//	22      1     tag length t (16)
//	23      n     IV
//	23+n    m+t   AES-256-GCM ciphertext (m >= 1) followed by the tag
//
// The GCM additional data is the first 21 bytes (format, key id, version)
// followed by the encoded encryption context, so neither the header nor the
// context can be changed without the token refusing to decrypt.
const (
	blobFormatV1  = 0x01
	blobHeaderLen = 21 // format + key id + version: the authenticated header
	blobPrefixLen = 23 // header + IV length + tag length
	blobMinIVLen  = 12
	blobTagLen    = 16
)

// blob is a parsed ciphertext blob.
type blob struct {
	keyID      uuid.UUID
	version    int
	iv         []byte
	ciphertext []byte // ciphertext || tag
	header     []byte // the authenticated header bytes
}

// parseBlob returns ErrInvalidCiphertext for anything that is not a
// well-formed format-1 blob. The length checks are those of package blob
// (blob.Parse), the one parser of the header; it never says which check
// failed: one opaque error for every bad blob.
func parseBlob(b []byte) (*blob, error) {
	h, err := blobfmt.Parse(b)
	if err != nil || h.Version > MaxVersion {
		return nil, ErrInvalidCiphertext
	}
	ivLen := int(b[21]) // Parse checked the IV's length and that b holds it
	return &blob{
		keyID:      h.KeyID,
		version:    h.Version,
		iv:         b[blobPrefixLen : blobPrefixLen+ivLen],
		ciphertext: b[blobPrefixLen+ivLen:],
		header:     b[:blobHeaderLen],
	}, nil
}

// blobHeader is the authenticated header of a blob made by keyID/version.
func blobHeader(keyID uuid.UUID, version int) []byte {
	h := make([]byte, blobHeaderLen)
	h[0] = blobFormatV1
	copy(h[1:17], keyID[:])
	binary.BigEndian.PutUint32(h[17:21], uint32(version))
	return h
}

// marshalBlob assembles a blob from its header and the token's output.
func marshalBlob(header, iv, ciphertext []byte) []byte {
	out := make([]byte, 0, blobPrefixLen+len(iv)+len(ciphertext))
	out = append(out, header...)
	out = append(out, byte(len(iv)), blobTagLen)
	out = append(out, iv...)
	return append(out, ciphertext...)
}

// additionalData binds the header and the encryption context: the header
// followed by the number of pairs and each pair, sorted by key, every string
// prefixed with its uint32 length. Length prefixes make {"ab":"c"} and
// {"a":"bc"} different, which plain concatenation would not.
func additionalData(header []byte, encCtx map[string]string) []byte {
	keys := make([]string, 0, len(encCtx))
	size := len(header) + 4
	for k, v := range encCtx {
		keys = append(keys, k)
		size += 8 + len(k) + len(v)
	}
	sort.Strings(keys)
	out := make([]byte, 0, size)
	out = append(out, header...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(keys)))
	for _, k := range keys {
		out = binary.BigEndian.AppendUint32(out, uint32(len(k)))
		out = append(out, k...)
		v := encCtx[k]
		out = binary.BigEndian.AppendUint32(out, uint32(len(v)))
		out = append(out, v...)
	}
	return out
}
