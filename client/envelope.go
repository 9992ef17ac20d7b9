package client

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
)

// Envelope encryption of streams of any size (docs/ciphertext.md, "Envelope
// files"): a data key from GenerateDataKey encrypts the stream locally with
// AES-256-GCM, chunk by chunk; the header holds the data key as the server
// encrypted it and the encryption context. Each chunk's nonce carries its
// index and whether it is the last, and each chunk authenticates the whole
// header: reordered, dropped, truncated or altered chunks, or an altered
// header, fail to decrypt.

const (
	envelopeMagic     = "hsmkmsE\x01" // 7 bytes of name, format version 1
	envelopeChunkSize = 64 << 10      // plaintext bytes of every chunk but the last
	envelopeMaxChunk  = 16 << 20
	envelopeMaxHeader = 64 << 10
	noncePrefixSize   = 7
	gcmTagSize        = 16
)

// EnvelopeWriter encrypts what is written to it onto another writer. Close
// writes the last chunk; without it the output is truncated and will not
// decrypt.
type EnvelopeWriter struct {
	dst    io.Writer
	aead   cipher.AEAD
	header []byte
	prefix []byte
	buf    []byte // plaintext of the chunk being filled
	out    []byte // ciphertext of the chunk being written
	index  uint64
	err    error
	// KeyID and KeyVersion name the key that encrypted the data key.
	KeyID      string
	KeyVersion int
}

// NewEnvelopeWriter asks the server for a data key under keyID (bound to
// encCtx) and writes the envelope header to dst.
func (c *Client) NewEnvelopeWriter(ctx context.Context, dst io.Writer, keyID string, encCtx map[string]string) (*EnvelopeWriter, error) {
	dk, err := c.GenerateDataKey(ctx, DataKeyRequest{KeyID: keyID, KeySpec: "AES_256", EncryptionContext: encCtx})
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(dk.Plaintext)
	if err != nil {
		return nil, err
	}
	prefix := make([]byte, noncePrefixSize)
	if _, err := rand.Read(prefix); err != nil {
		return nil, err
	}
	header, err := encodeHeader(envelopeChunkSize, prefix, dk.CiphertextBlob, encCtx)
	if err != nil {
		return nil, err
	}
	if _, err := dst.Write(header); err != nil {
		return nil, err
	}
	return &EnvelopeWriter{dst: dst, aead: aead, header: header, prefix: prefix,
		buf: make([]byte, 0, envelopeChunkSize), KeyID: dk.KeyID, KeyVersion: dk.KeyVersion}, nil
}

// newAEAD makes the AES-256-GCM of a data key and wipes the key: only the
// cipher's own schedule holds it afterwards.
func newAEAD(key []byte) (cipher.AEAD, error) {
	defer clear(key)
	if len(key) != 32 {
		return nil, fmt.Errorf("the data key is %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Write encrypts p; a chunk is written once it is full and more follows.
func (w *EnvelopeWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := 0
	for len(p) > 0 {
		if len(w.buf) == envelopeChunkSize {
			if err := w.seal(false); err != nil {
				return n, err
			}
		}
		k := copy(w.buf[len(w.buf):envelopeChunkSize], p)
		w.buf = w.buf[:len(w.buf)+k]
		p = p[k:]
		n += k
	}
	return n, nil
}

// Close writes the last chunk and wipes the buffered plaintext. It does not
// close the underlying writer.
func (w *EnvelopeWriter) Close() error {
	if w.err != nil {
		w.wipe()
		return w.err
	}
	err := w.seal(true)
	w.wipe()
	if err == nil {
		w.err = errors.New("envelope writer closed")
	}
	return err
}

// Abort ends the writer on an error path: it wipes the buffered plaintext
// (up to a chunk) and writes no last chunk, so what was written does not
// decrypt. Later calls fail.
func (w *EnvelopeWriter) Abort() {
	w.wipe()
	if w.err == nil {
		w.err = errors.New("envelope writer aborted")
	}
}

func (w *EnvelopeWriter) wipe() {
	clear(w.buf[:cap(w.buf)])
	w.buf = w.buf[:0]
	w.aead = nil
}

func (w *EnvelopeWriter) seal(last bool) error {
	if w.index > 0xffffffff {
		w.err = errors.New("the stream has more chunks than the format counts")
		return w.err
	}
	w.out = w.aead.Seal(w.out[:0], chunkNonce(w.prefix, w.index, last), w.buf, w.header)
	w.index++
	w.buf = w.buf[:0]
	if _, err := w.dst.Write(w.out); err != nil {
		w.err = err
		return err
	}
	return nil
}

func chunkNonce(prefix []byte, index uint64, last bool) []byte {
	n := make([]byte, 0, 12)
	n = append(n, prefix...)
	n = binary.BigEndian.AppendUint32(n, uint32(index))
	if last {
		return append(n, 1)
	}
	return append(n, 0)
}

// encodeHeader is the envelope header (docs/ciphertext.md).
func encodeHeader(chunk int, prefix, blob []byte, encCtx map[string]string) ([]byte, error) {
	h := []byte(envelopeMagic)
	h = binary.BigEndian.AppendUint32(h, uint32(chunk))
	h = append(h, prefix...)
	h = binary.BigEndian.AppendUint32(h, uint32(len(blob)))
	h = append(h, blob...)
	h = binary.BigEndian.AppendUint32(h, uint32(len(encCtx)))
	for _, k := range slices.Sorted(maps.Keys(encCtx)) {
		h = binary.BigEndian.AppendUint32(h, uint32(len(k)))
		h = append(h, k...)
		h = binary.BigEndian.AppendUint32(h, uint32(len(encCtx[k])))
		h = append(h, encCtx[k]...)
	}
	if len(h) > envelopeMaxHeader {
		return nil, fmt.Errorf("the encryption context makes the header %d bytes, more than %d", len(h), envelopeMaxHeader)
	}
	return h, nil
}

// EnvelopeError is a stream that is not a whole, unaltered envelope.
type EnvelopeError struct{ Reason string }

func (e *EnvelopeError) Error() string { return "envelope: " + e.Reason }

func badEnvelope(format string, args ...any) error {
	return &EnvelopeError{Reason: fmt.Sprintf(format, args...)}
}

// EnvelopeReader decrypts an envelope. Read returns each chunk's plaintext
// only once the chunk is authenticated, and io.EOF only after the last one;
// a stream cut at a chunk boundary is an error, not a shorter plaintext.
type EnvelopeReader struct {
	src    io.Reader
	aead   cipher.AEAD
	header []byte
	prefix []byte
	chunk  int
	in     []byte // ciphertext read ahead: a chunk and one more byte
	plain  []byte // plaintext not yet returned
	index  uint64
	done   bool
	err    error
	// Context is the file's encryption context; KeyID and KeyVersion the
	// key that encrypted its data key.
	Context    map[string]string
	KeyID      string
	KeyVersion int
}

// NewEnvelopeReader reads the header from src and has the server decrypt the
// data key. A non-nil encCtx must equal the file's context; with nil the
// file's own is used (and the server checks it against the data key).
//
// keyID (a key id or alias/NAME), when not empty, is the key the file's
// data key must be encrypted under: the server refuses any other
// (IncorrectKeyException). Give it: without it the reader accepts a file
// whose data key is under any key the caller may decrypt with, so anyone
// allowed to encrypt under one of those keys can forge a file.
func (c *Client) NewEnvelopeReader(ctx context.Context, src io.Reader, encCtx map[string]string, keyID string) (*EnvelopeReader, error) {
	r := &EnvelopeReader{src: src}
	blob, err := r.readHeader()
	if err != nil {
		return nil, err
	}
	if encCtx != nil && !maps.Equal(encCtx, r.Context) {
		return nil, badEnvelope("the encryption context given differs from the file's (%d pairs in the file)", len(r.Context))
	}
	dk, err := c.Decrypt(ctx, blob, r.Context, keyID)
	if err != nil {
		return nil, fmt.Errorf("the data key: %w", err)
	}
	r.KeyID, r.KeyVersion = dk.KeyID, dk.KeyVersion
	if r.aead, err = newAEAD(dk.Plaintext); err != nil {
		return nil, err
	}
	r.in = make([]byte, 0, r.chunk+gcmTagSize+1)
	return r, nil
}

// readHeader parses the header, keeping its bytes (each chunk's AAD).
func (r *EnvelopeReader) readHeader() ([]byte, error) {
	var h bytes.Buffer
	read := func(n int, what string) ([]byte, error) {
		start := h.Len()
		if h.Len()+n > envelopeMaxHeader {
			return nil, badEnvelope("the header is longer than %d bytes", envelopeMaxHeader)
		}
		if _, err := io.CopyN(&h, r.src, int64(n)); err != nil {
			if errors.Is(err, io.EOF) {
				if start == 0 {
					return nil, badEnvelope("empty input: not an hsmkms envelope")
				}
				return nil, badEnvelope("the input ends inside the header (%s)", what)
			}
			return nil, err
		}
		return h.Bytes()[start:], nil
	}
	u32 := func(what string) (int, error) {
		b, err := read(4, what)
		if err != nil {
			return 0, err
		}
		return int(binary.BigEndian.Uint32(b)), nil
	}
	magic, err := read(len(envelopeMagic), "format")
	if err != nil {
		return nil, err
	}
	if string(magic[:7]) != envelopeMagic[:7] {
		return nil, badEnvelope("not an hsmkms envelope (made by kmsctl encrypt-file)")
	}
	if magic[7] != envelopeMagic[7] {
		return nil, badEnvelope("format version %d; this kmsctl reads version %d", magic[7], envelopeMagic[7])
	}
	if r.chunk, err = u32("chunk size"); err != nil {
		return nil, err
	}
	if r.chunk < 1 || r.chunk > envelopeMaxChunk {
		return nil, badEnvelope("chunk size %d out of range", r.chunk)
	}
	if r.prefix, err = read(noncePrefixSize, "nonce"); err != nil {
		return nil, err
	}
	r.prefix = slices.Clone(r.prefix)
	n, err := u32("data key length")
	if err != nil {
		return nil, err
	}
	blob, err := read(n, "data key")
	if err != nil {
		return nil, err
	}
	blob = slices.Clone(blob)
	pairs, err := u32("context size")
	if err != nil {
		return nil, err
	}
	r.Context = map[string]string{}
	prev := ""
	for i := range pairs {
		var kv [2]string
		for j := range kv {
			n, err := u32("context")
			if err != nil {
				return nil, err
			}
			b, err := read(n, "context")
			if err != nil {
				return nil, err
			}
			kv[j] = string(b)
		}
		if i > 0 && kv[0] <= prev {
			return nil, badEnvelope("the context's keys are not in order")
		}
		prev = kv[0]
		r.Context[kv[0]] = kv[1]
	}
	r.header = slices.Clone(h.Bytes())
	return blob, nil
}

// Read returns authenticated plaintext.
func (r *EnvelopeReader) Read(p []byte) (int, error) {
	for len(r.plain) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		r.err = r.next()
	}
	n := copy(p, r.plain)
	clear(r.plain[:n])
	r.plain = r.plain[n:]
	return n, nil
}

// next reads and opens one chunk. It is the last if the input ends within
// a chunk's length; the nonce says whether it was sealed as the last, so a
// cut at a chunk boundary and data after the last chunk are both caught.
func (r *EnvelopeReader) next() error {
	full := r.chunk + gcmTagSize
	n, err := io.ReadFull(r.src, r.in[len(r.in):full+1])
	r.in = r.in[:len(r.in)+n]
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return err
	}
	last := len(r.in) <= full
	ct := r.in[:min(len(r.in), full)]
	if r.index > 0xffffffff {
		return badEnvelope("more chunks than the format counts")
	}
	if len(ct) < gcmTagSize {
		if r.index == 0 {
			return badEnvelope("no chunk after the header: the input is truncated")
		}
		return badEnvelope("the input is truncated in chunk %d", r.index)
	}
	plain, oerr := r.aead.Open(nil, chunkNonce(r.prefix, r.index, last), ct, r.header)
	if oerr != nil {
		if _, e2 := r.aead.Open(nil, chunkNonce(r.prefix, r.index, !last), ct, r.header); e2 == nil {
			if last {
				return badEnvelope("the input is truncated: chunk %d is not the last", r.index)
			}
			return badEnvelope("data follows the last chunk (%d)", r.index)
		}
		return badEnvelope("chunk %d fails authentication: the input was altered, truncated or its chunks reordered", r.index)
	}
	r.plain = plain
	r.index++
	if last {
		r.done = true
		r.aead = nil
		r.in = r.in[:0]
		return nil
	}
	extra := r.in[full]
	r.in = append(r.in[:0], extra)
	return nil
}
