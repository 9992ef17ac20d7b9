package client

import (
	"bytes"
	"errors"
	"testing"
)

// Abort, for an error path, wipes the plaintext buffered in the writer and
// writes no last chunk; so does Close after a failed write.
func TestEnvelopeWriterWipes(t *testing.T) {
	for _, end := range []string{"Abort", "Close after a failed write"} {
		aead, err := newAEAD(bytes.Repeat([]byte{1}, 32))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		w := &EnvelopeWriter{dst: &out, aead: aead, prefix: make([]byte, noncePrefixSize), buf: make([]byte, 0, envelopeChunkSize)}
		secret := bytes.Repeat([]byte("secret"), 1000)
		if _, err := w.Write(secret); err != nil {
			t.Fatal(err)
		}
		buf := w.buf[:cap(w.buf)]
		if end == "Abort" {
			w.Abort()
		} else {
			w.err = errFailedWrite
			if err := w.Close(); err != errFailedWrite {
				t.Fatalf("Close after a failed write = %v", err)
			}
		}
		if bytes.Contains(buf, []byte("secret")) {
			t.Errorf("%s: the buffered plaintext was not wiped", end)
		}
		if out.Len() != 0 {
			t.Errorf("%s: %d bytes written, want none", end, out.Len())
		}
		if _, err := w.Write([]byte("more")); err == nil {
			t.Errorf("%s: Write afterwards succeeded", end)
		}
		if err := w.Close(); err == nil || out.Len() != 0 {
			t.Errorf("%s: Close afterwards = %v, %d bytes written", end, err, out.Len())
		}
	}
}

var errFailedWrite = errors.New("the destination failed")
