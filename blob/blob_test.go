package blob

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/google/uuid"
)

// The known-answer blob of service/blob_test.go (TestBlobFormatKnownAnswers):
// key 0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0, version 3, a 12-byte IV and
// 17 bytes of ciphertext and tag. Kept forever, like the service's.
const katBlob = "010f1e2d3c4b5a49788695a4b3c2d1e0f000000003" + "0c10" + "000102030405060708090a0b" +
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func kat(t *testing.T) []byte {
	t.Helper()
	b, err := hex.DecodeString(katBlob)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseKnownAnswer(t *testing.T) {
	h, err := Parse(kat(t))
	if err != nil {
		t.Fatal(err)
	}
	want := Header{KeyID: uuid.MustParse("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0"), Version: 3}
	if h != want {
		t.Fatalf("parsed %+v, want %+v", h, want)
	}
	if got := h.String(); got != "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0:v3" {
		t.Fatalf("String() = %q", got)
	}
	// A 16-byte IV (chosen by the token on some HSMs) and the largest version.
	b := append(kat(t)[:21], 16, 16)
	b = append(b, make([]byte, 16+17)...)
	b[17], b[18], b[19], b[20] = 0x7f, 0xff, 0xff, 0xff
	if h, err := Parse(b); err != nil || h.Version != 1<<31-1 {
		t.Fatalf("16-byte IV, version 2^31-1: %+v %v", h, err)
	}
}

// TestParseRejects: every malformed blob is refused with the one opaque
// error (the service maps it to ErrInvalidCiphertext: service/blob_test.go).
func TestParseRejects(t *testing.T) {
	good := kat(t)
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"empty":          nil,
		"format 0":       mut(func(b []byte) []byte { b[0] = 0; return b }),
		"format 2":       mut(func(b []byte) []byte { b[0] = 2; return b }),
		"version 0":      mut(func(b []byte) []byte { copy(b[17:21], []byte{0, 0, 0, 0}); return b }),
		"version > 2^31": mut(func(b []byte) []byte { b[17] = 0x80; return b }),
		"iv 11":          mut(func(b []byte) []byte { b[21] = 11; return b }),
		"iv 17":          mut(func(b []byte) []byte { b[21] = 17; return b }),
		"tag 12":         mut(func(b []byte) []byte { b[22] = 12; return b }),
		"no data":        good[:len(good)-1],
		"header only":    good[:prefixLen],
		"iv too long":    mut(func(b []byte) []byte { b[21] = 16; return b[:prefixLen+16+16] }),
	}
	for name, b := range cases {
		if h, err := Parse(b); err != ErrInvalid || h != (Header{}) {
			t.Errorf("%s: got %+v, %v; want ErrInvalid", name, h, err)
		}
	}
}

// FuzzParse: never panics, and what it accepts is long enough for the
// header it read (go test -fuzz FuzzParse ./blob/).
func FuzzParse(f *testing.F) {
	b, _ := hex.DecodeString(katBlob)
	f.Add(b)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Parse(b)
		if err != nil {
			return
		}
		if len(b) < prefixLen+int(b[21])+minDataLen+tagLen || h.Version < 1 || h.KeyID.String() == "" {
			t.Fatalf("accepted %x as %+v", b, h)
		}
	})
}
