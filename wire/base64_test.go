package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// Base64 writes what json.Marshal writes for the same bytes as a base64
// string, for every length mod 3 and for nil, alone and inside a struct.
func TestBase64JSON(t *testing.T) {
	for _, b := range [][]byte{nil, {}, {0}, {0xff, 0xfe}, {1, 2, 3}, bytes.Repeat([]byte{0xfb}, 4097)} {
		want, _ := json.Marshal(base64.StdEncoding.EncodeToString(b))
		got, err := json.Marshal(Base64(b))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("len %d: %s, %v; want %s", len(b), got, err, want)
		}
		got, _ = json.Marshal(DecryptResult{Plaintext: b, KeyID: "k"})
		wantStruct := `{"plaintext":` + string(want) + `,"key_id":"k","key_version":0}`
		if string(got) != wantStruct {
			t.Errorf("len %d in a struct: %s, want %s", len(b), got, wantStruct)
		}
	}
}
