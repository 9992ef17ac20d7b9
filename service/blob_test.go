package service

import (
	"bytes"
	"encoding/hex"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Known-answer vectors for ciphertext format 1. They are kept forever: a
// change here means blobs already stored by users would stop decrypting.
var (
	katKeyID = uuid.MustParse("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0")
	katIV    = []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	katCT    = bytes.Repeat([]byte{0xaa}, 17) // 1 byte of data + 16-byte tag
)

func TestBlobFormatKnownAnswers(t *testing.T) {
	header := blobHeader(katKeyID, 3)
	if got, want := hex.EncodeToString(header), "010f1e2d3c4b5a49788695a4b3c2d1e0f000000003"; got != want {
		t.Fatalf("header %s, want %s", got, want)
	}
	blob := marshalBlob(header, katIV, katCT)
	want := "010f1e2d3c4b5a49788695a4b3c2d1e0f000000003" + "0c10" + "000102030405060708090a0b" +
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	if got := hex.EncodeToString(blob); got != want {
		t.Fatalf("blob %s, want %s", got, want)
	}
	aad := additionalData(header, map[string]string{"b": "2", "a": "1"})
	wantAAD := "010f1e2d3c4b5a49788695a4b3c2d1e0f000000003" + "00000002" +
		"00000001" + "61" + "00000001" + "31" + "00000001" + "62" + "00000001" + "32"
	if got := hex.EncodeToString(aad); got != wantAAD {
		t.Fatalf("aad %s, want %s", got, wantAAD)
	}
	if got := hex.EncodeToString(additionalData(header, nil)); got != hex.EncodeToString(header)+"00000000" {
		t.Fatalf("aad without context %s", got)
	}
}

func TestParseBlobRoundTrip(t *testing.T) {
	blob := marshalBlob(blobHeader(katKeyID, 7), katIV, katCT)
	b, err := parseBlob(blob)
	if err != nil {
		t.Fatal(err)
	}
	if b.keyID != katKeyID || b.version != 7 || !bytes.Equal(b.iv, katIV) || !bytes.Equal(b.ciphertext, katCT) {
		t.Fatalf("parsed %+v", b)
	}
	if !bytes.Equal(b.header, blob[:blobHeaderLen]) {
		t.Fatal("header is not the blob's first 21 bytes")
	}
	sixteen := marshalBlob(blobHeader(katKeyID, 1), make([]byte, 16), katCT)
	if b, err := parseBlob(sixteen); err != nil || len(b.iv) != 16 {
		t.Fatalf("16-byte IV (token-generated on some HSMs): %v", err)
	}
}

// TestParseBlobRejects: what blob.Parse refuses (every case is in
// blob.TestParseRejects) reaches callers as ErrInvalidCiphertext, one
// opaque error, whatever part of the blob was wrong.
func TestParseBlobRejects(t *testing.T) {
	good := marshalBlob(blobHeader(katKeyID, 1), katIV, katCT)
	bad := bytes.Clone(good)
	bad[0] = 2
	cases := map[string][]byte{
		"empty":       nil,
		"format 2":    bad,
		"header only": good[:blobPrefixLen],
		"no data":     good[:len(good)-1],
	}
	for name, b := range cases {
		if _, err := parseBlob(b); err != ErrInvalidCiphertext {
			t.Errorf("%s: got %v, want ErrInvalidCiphertext", name, err)
		}
	}
}

// FuzzParseBlob: the parser never panics, and whatever it accepts re-marshals
// to the same bytes.
func FuzzParseBlob(f *testing.F) {
	f.Add(marshalBlob(blobHeader(katKeyID, 1), katIV, katCT))
	f.Add([]byte{1})
	f.Add(make([]byte, 60))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parseBlob(data)
		if err != nil {
			return
		}
		if again := marshalBlob(b.header, b.iv, b.ciphertext); !bytes.Equal(again, data) {
			t.Fatalf("accepted blob does not round-trip")
		}
		if len(b.ciphertext) < blobTagLen+1 || len(b.iv) < blobMinIVLen {
			t.Fatalf("accepted a blob with short parts")
		}
	})
}

func TestParseDuration(t *testing.T) {
	day := 24 * 3600
	for in, want := range map[string]int{"90d": 90 * day, "720h": 720 * 3600, "604800s": 604800, "1d12h": day + 12*3600} {
		d, err := ParseDuration(in)
		if err != nil || int(d.Seconds()) != want {
			t.Errorf("%s: %v %v", in, d, err)
		}
	}
	for _, bad := range []string{"", "d", "-1d", "1x", "abc", "1d-2h", "9999999d"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got := FormatDuration(90 * 24 * 3600 * 1e9); got != "7776000s" {
		t.Errorf("format: %s", got)
	}
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{7 * 24 * time.Hour, "7d"}, {2560 * 24 * time.Hour, "2560d"}, {5 * time.Minute, "5m"}, {time.Minute, "1m"},
		{10 * time.Second, "10s"}, {90 * time.Second, "1m30s"}, {2 * time.Hour, "2h"}, {25 * time.Hour, "25h"}, {500 * time.Millisecond, "500ms"}} {
		got := ShortDuration(tc.d)
		if got != tc.want {
			t.Errorf("ShortDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
		if back, err := ParseDuration(got); err != nil || back != tc.d {
			t.Errorf("ParseDuration(ShortDuration(%v)) = %v, %v", tc.d, back, err)
		}
	}
}
