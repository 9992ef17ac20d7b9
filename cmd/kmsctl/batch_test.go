package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// kmsctl batch encrypt and decrypt: the results in order, an item's error
// in its place with exit 1, refusals of the batch as a whole with exit 1
// and nothing written.
func TestBatchCommands(t *testing.T) {
	c := newCtl(t)
	c.ok("", "keys", "create", "--alias", "alias/batch")
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	in := fmt.Sprintf(`{"items": [{"key_id": "alias/batch", "plaintext": %q, "encryption_context": {"a": "b"}},
		{"key_id": "alias/none", "plaintext": %q}, {"key_id": "alias/batch", "plaintext": %q}]}`, b64("one"), b64("two"), b64("three"))
	code, out, errOut := c.run(in, "batch", "encrypt")
	if code != 1 || !strings.Contains(errOut, "1 of the items failed") {
		t.Fatalf("batch encrypt with a bad item: exit %d %q", code, errOut)
	}
	var enc struct {
		Results []struct {
			CiphertextBlob []byte            `json:"ciphertext_blob"`
			Error          map[string]string `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &enc); err != nil || len(enc.Results) != 3 {
		t.Fatalf("batch encrypt output: %v\n%s", err, out)
	}
	if enc.Results[0].Error != nil || enc.Results[1].Error["code"] != "NotFoundException" || enc.Results[2].Error != nil {
		t.Fatalf("batch encrypt results: %s", out)
	}
	dec := fmt.Sprintf(`{"items": [{"ciphertext_blob": %q, "encryption_context": {"a": "b"}}, {"ciphertext_blob": %q}]}`,
		base64.StdEncoding.EncodeToString(enc.Results[0].CiphertextBlob), base64.StdEncoding.EncodeToString(enc.Results[2].CiphertextBlob))
	var res struct {
		Results []struct {
			Plaintext []byte `json:"plaintext"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(c.ok(dec, "batch", "decrypt")), &res); err != nil || len(res.Results) != 2 ||
		string(res.Results[0].Plaintext) != "one" || string(res.Results[1].Plaintext) != "three" {
		t.Fatalf("batch decrypt: %v %+v", err, res)
	}
	for _, bad := range []struct{ in, want string }{
		{`{"items": []}`, "1 to 100 items"},
		{`{"itemz": []}`, "unknown field"},
		{`not json`, "not a batch"},
	} {
		if code, out, errOut := c.run(bad.in, "batch", "encrypt"); code != 1 || out != "" || !strings.Contains(errOut, bad.want) {
			t.Errorf("batch encrypt of %s: exit %d, out %q, err %q; want 1 naming %q", bad.in, code, out, errOut, bad.want)
		}
	}
}
