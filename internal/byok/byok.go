// Package byok is the customer's side of bring-your-own-key, for tests and
// as an example: it wraps AES-256 material under hsmkms's wrapping public
// key the way docs/byok.md's openssl commands do. The service itself never
// uses it: material is unwrapped only inside the token.
package byok

import (
	"crypto/aes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
)

// Wrap wraps material for import with the named algorithm.
func Wrap(alg string, pub *rsa.PublicKey, material []byte) ([]byte, error) {
	var h hash.Hash
	switch alg {
	case "RSAES_OAEP_SHA_1", "RSA_AES_KEY_WRAP_SHA_1":
		h = sha1.New()
	case "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_256":
		h = sha256.New()
	default:
		return nil, errors.New("byok: unknown algorithm " + alg)
	}
	if alg == "RSAES_OAEP_SHA_1" || alg == "RSAES_OAEP_SHA_256" {
		return rsa.EncryptOAEP(h, rand.Reader, pub, material, nil)
	}
	eph := make([]byte, 32)
	if _, err := rand.Read(eph); err != nil {
		return nil, err
	}
	defer clear(eph)
	head, err := rsa.EncryptOAEP(h, rand.Reader, pub, eph, nil)
	if err != nil {
		return nil, err
	}
	tail, err := WrapKWP(eph, material)
	if err != nil {
		return nil, err
	}
	return append(head, tail...), nil
}

// WrapKWP is AES key wrap with padding (RFC 5649).
func WrapKWP(kek, plaintext []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	padded := make([]byte, (len(plaintext)+7)/8*8)
	copy(padded, plaintext)
	var a [8]byte
	binary.BigEndian.PutUint32(a[:4], 0xA65959A6)
	binary.BigEndian.PutUint32(a[4:], uint32(len(plaintext)))
	n := len(padded) / 8
	var buf [16]byte
	if n == 1 {
		copy(buf[:8], a[:])
		copy(buf[8:], padded)
		block.Encrypt(buf[:], buf[:])
		return append([]byte(nil), buf[:]...), nil
	}
	r := make([]byte, len(padded))
	copy(r, padded)
	for j := 0; j < 6; j++ {
		for i := 0; i < n; i++ {
			copy(buf[:8], a[:])
			copy(buf[8:], r[i*8:i*8+8])
			block.Encrypt(buf[:], buf[:])
			t := uint64(n*j + i + 1)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(buf[:8])^t)
			copy(r[i*8:], buf[8:])
		}
	}
	return append(a[:], r...), nil
}
