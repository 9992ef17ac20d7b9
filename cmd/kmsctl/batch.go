package main

import (
	"bytes"
	"encoding/json"
	"fmt"

	flag "github.com/spf13/pflag"

	"github.com/hsmkms/hsmkms/client"
)

// Batches: --in holds the API's request body, {"items": [...]} (plaintexts
// and blobs in base64, docs/API.md "Batches"); --out gets its answer,
// {"results": [...]}, as JSON whatever --output says (it holds plaintexts
// after a decrypt: a file is written 0600). The command fails (exit 1) when
// any item failed, after writing every result.
func init() {
	commands = append(commands,
		command{"batch encrypt", "", `encrypt 1-100 items of --in ({"items": [{key_id, plaintext, encryption_context}]}) in one request`, func(fs *flag.FlagSet) func(*env, []string) error {
			d := batchFlags(fs)
			return func(e *env, args []string) error {
				var req struct {
					Items []client.BatchEncryptItem `json:"items"`
				}
				if err := d.read(e, args, &req); err != nil {
					return err
				}
				res, err := e.c.BatchEncrypt(e.ctx, req.Items)
				if err != nil {
					return err
				}
				failed := 0
				for _, r := range res {
					if r.Error != nil {
						failed++
					}
				}
				return d.write(e, res, failed)
			}
		}},
		command{"batch decrypt", "", `decrypt 1-100 items of --in ({"items": [{ciphertext_blob, encryption_context, key_id}]}) in one request`, func(fs *flag.FlagSet) func(*env, []string) error {
			d := batchFlags(fs)
			return func(e *env, args []string) error {
				var req struct {
					Items []client.BatchDecryptItem `json:"items"`
				}
				if err := d.read(e, args, &req); err != nil {
					return err
				}
				res, err := e.c.BatchDecrypt(e.ctx, req.Items)
				if err != nil {
					return err
				}
				failed := 0
				for _, r := range res {
					defer clear(r.Plaintext)
					if r.Error != nil {
						failed++
					}
				}
				return d.write(e, res, failed)
			}
		}},
	)
}

type batchIO struct{ in, out *string }

func batchFlags(fs *flag.FlagSet) *batchIO {
	return &batchIO{in: fs.String("in", "-", `JSON file of the items ("-": stdin)`),
		out: fs.String("out", "-", `file to write the results to ("-": stdout)`)}
}

// read decodes --in strictly: an unknown field is a mistake to report,
// not to drop.
func (b *batchIO) read(e *env, args []string, v any) error {
	if err := want(args, 0, "no arguments"); err != nil {
		return err
	}
	raw, err := readInput(e, "--in", *b.in)
	if err != nil {
		return err
	}
	defer clear(raw)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf(`--in: not a batch ({"items": [...]}, base64 data): %v`, err)
	}
	return nil
}

func (b *batchIO) write(e *env, results any, failed int) error {
	var buf bytes.Buffer
	if err := writeJSON(&buf, map[string]any{"results": results}); err != nil {
		return err
	}
	defer clear(buf.Bytes())
	d := data{out: b.out}
	if err := d.write(e, buf.Bytes(), false); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of the items failed (each result says why)", failed)
	}
	return nil
}
