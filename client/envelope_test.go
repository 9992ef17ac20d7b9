package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
)

func TestMain(m *testing.M) { os.Exit(softhsmtest.Run(m)) }

const chunk = 64 << 10 // the format's chunk size

// seal encrypts plain, written in pieces of step bytes.
func seal(t *testing.T, c *client.Client, key string, plain []byte, encCtx map[string]string, step int) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := c.NewEnvelopeWriter(context.Background(), &out, key, encCtx)
	if err != nil {
		t.Fatal(err)
	}
	for p := plain; len(p) > 0; {
		n := min(step, len(p))
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// open decrypts an envelope wholly: the plaintext, or the first error.
func open(c *client.Client, env []byte, encCtx map[string]string) ([]byte, error) {
	r, err := c.NewEnvelopeReader(context.Background(), bytes.NewReader(env), encCtx, "")
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func newKey(t *testing.T, s *kmstest.Stack) string {
	k, err := s.Client.CreateKey(context.Background(), client.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return k.KeyID
}

// Streams of every size around the chunk boundaries come back unchanged,
// whatever the sizes of the writes.
func TestEnvelopeRoundTrip(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	key := newKey(t, s)
	for _, size := range []int{0, 1, chunk - 1, chunk, chunk + 1, 3*chunk + 5} {
		for _, step := range []int{1 << 20, 1000, chunk} {
			if size > chunk && step == 1 {
				continue
			}
			plain := make([]byte, size)
			rand.Read(plain)
			env := seal(t, s.Client, key, plain, map[string]string{"file": "x"}, step)
			got, err := open(s.Client, env, map[string]string{"file": "x"})
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("%d bytes in writes of %d: %v (got %d bytes)", size, step, err, len(got))
			}
			// nil context: the file's own is used.
			if got, err := open(s.Client, env, nil); err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("%d bytes, nil context: %v", size, err)
			}
		}
	}
}

// Every alteration is a clear error, and no plaintext of an altered chunk
// comes out.
func TestEnvelopeTampering(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	key := newKey(t, s)
	encCtx := map[string]string{"app": "backup", "volume": "7"}
	plain := make([]byte, 3*chunk+100) // chunks 0..3, the last short
	rand.Read(plain)
	env := seal(t, s.Client, key, plain, encCtx, 1<<20)
	ct := len(plain) + 4*16
	h := len(env) - ct // header length
	chunkAt := func(i int) int { return h + i*(chunk+16) }
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(env)) }
	flip := func(at int) []byte { return mut(func(b []byte) []byte { b[at] ^= 1; return b }) }
	swapped := mut(func(b []byte) []byte {
		c0 := bytes.Clone(b[chunkAt(0):chunkAt(1)])
		copy(b[chunkAt(0):], b[chunkAt(1):chunkAt(2)])
		copy(b[chunkAt(1):], c0)
		return b
	})
	ctxAt := bytes.Index(env[:h], []byte("backup"))
	for _, tc := range []struct {
		name   string
		env    []byte
		encCtx map[string]string
		want   string
		wantN  int // plaintext bytes released before the error
	}{
		{"not an envelope", []byte("plain text, never encrypted"), encCtx, "not an hsmkms envelope", 0},
		{"empty", nil, encCtx, "empty input", 0},
		{"future version", flip(7), encCtx, "format version", 0},
		{"cut in the header", env[:h-3], encCtx, "ends inside the header", 0},
		{"header only", env[:h], encCtx, "no chunk after the header", 0},
		{"chunk size changed", flip(11), encCtx, "fails authentication", 0},
		{"nonce changed", flip(12), encCtx, "chunk 0 fails authentication", 0},
		{"data key changed", flip(h - 60), encCtx, "the data key: InvalidCiphertextException", 0},
		{"context changed in the file", flip(ctxAt), nil, "the data key: InvalidCiphertextException", 0},
		{"wrong context given", env, map[string]string{"app": "backup", "volume": "8"}, "context given differs", 0},
		{"context missing a pair", env, map[string]string{"app": "backup"}, "context given differs", 0},
		{"chunk 2 altered", flip(chunkAt(2) + 10), encCtx, "chunk 2 fails authentication", 2 * chunk},
		{"chunks 0 and 1 swapped", swapped, encCtx, "chunk 0 fails authentication", 0},
		{"last chunk dropped", env[:chunkAt(3)], encCtx, "truncated: chunk 2 is not the last", 2 * chunk},
		{"cut inside the last chunk", env[:len(env)-5], encCtx, "chunk 3 fails authentication", 3 * chunk},
		{"cut leaving less than a tag", env[:chunkAt(3)+3], encCtx, "truncated in chunk 3", 3 * chunk},
		{"a byte appended", append(bytes.Clone(env), 0), encCtx, "chunk 3 fails authentication", 3 * chunk},
		{"last chunk repeated", append(bytes.Clone(env[:chunkAt(3)]), env[chunkAt(2):chunkAt(3)]...), encCtx, "chunk 3 fails authentication", 3 * chunk},
	} {
		r, err := s.Client.NewEnvelopeReader(context.Background(), bytes.NewReader(tc.env), tc.encCtx, "")
		n := 0
		if err == nil {
			var got []byte
			got, err = io.ReadAll(r)
			n = len(got)
			if !bytes.Equal(got, plain[:n]) {
				t.Errorf("%s: released plaintext that is not the original's", tc.name)
			}
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || n != tc.wantN {
			t.Errorf("%s: %v after %d bytes; want an error mentioning %q after %d", tc.name, err, n, tc.want, tc.wantN)
		}
		var ee *client.EnvelopeError
		if strings.HasPrefix(tc.want, "the data key") != !errors.As(err, &ee) {
			t.Errorf("%s: %T, want an *EnvelopeError unless the server refused the data key", tc.name, err)
		}
	}
	// The original still opens: the checks above changed nothing.
	if got, err := open(s.Client, env, encCtx); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("the untouched envelope: %v", err)
	}
}

// A reader given the key the file must be under refuses a forged file: a
// header built around a data key encrypted under another key, which the
// same caller may decrypt with (so without the key the forgery opens).
func TestEnvelopeExpectedKey(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	key, other := newKey(t, s), newKey(t, s)
	if _, err := s.Client.CreateAlias(context.Background(), "alias/envelope", key); err != nil {
		t.Fatal(err)
	}
	encCtx := map[string]string{"app": "backup"}
	plain := []byte("the real backup")
	env := seal(t, s.Client, key, plain, encCtx, 1<<20)
	forged := seal(t, s.Client, other, []byte("the forger's data"), encCtx, 1<<20)
	for _, tc := range []struct {
		name, keyID string
		env         []byte
		want        string // error code, or "" for success
	}{
		{"genuine, by id", key, env, ""},
		{"genuine, by alias", "alias/envelope", env, ""},
		{"forged, by id", key, forged, "IncorrectKeyException"},
		{"forged, by alias", "alias/envelope", forged, "IncorrectKeyException"},
		{"unknown key", "alias/none", env, "IncorrectKeyException"},
	} {
		r, err := s.Client.NewEnvelopeReader(context.Background(), bytes.NewReader(tc.env), encCtx, tc.keyID)
		if tc.want != "" {
			if client.Code(err) != tc.want || r != nil {
				t.Errorf("%s: %v, want %s and no reader", tc.name, err, tc.want)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, plain) || r.KeyID != key {
			t.Errorf("%s: %q, %v, key %s", tc.name, got, err, r.KeyID)
		}
	}
	// Without the key the reader cannot tell: the forgery opens.
	if got, err := open(s.Client, forged, encCtx); err != nil || string(got) != "the forger's data" {
		t.Fatalf("forged file without --key: %q, %v", got, err)
	}
}

// A writer that is not closed leaves an envelope without its last chunk:
// it does not decrypt.
func TestEnvelopeUnclosedWriter(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	key := newKey(t, s)
	var out bytes.Buffer
	w, err := s.Client.NewEnvelopeWriter(context.Background(), &out, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(make([]byte, 2*chunk+1))
	if _, err := open(s.Client, out.Bytes(), nil); err == nil || !strings.Contains(err.Error(), "not the last") {
		t.Fatalf("unclosed writer's output: %v", err)
	}
	if _, err := s.Client.NewEnvelopeWriter(context.Background(), &out, "alias/none", nil); client.Code(err) != "NotFoundException" {
		t.Fatalf("unknown key: %v", err)
	}
}
