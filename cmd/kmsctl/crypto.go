package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	flag "github.com/spf13/pflag"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hsmkms/hsmkms/client"
)

// Cryptographic commands move raw bytes: the input is read from --in (a
// file, or "-" for stdin) and the output written to --out (a file, or "-"
// for stdout); --base64 makes both base64 text. Nothing of the data goes
// to stderr.
func init() {
	commands = append(commands,
		command{"encrypt", "", "encrypt --in (stdin) to a ciphertext blob on --out (stdout)", func(fs *flag.FlagSet) func(*env, []string) error {
			key := fs.String("key", "", "key id or alias/NAME (required)")
			d := dataFlags(fs)
			return func(e *env, args []string) error {
				if err := want(args, 0, "no arguments"); err != nil {
					return err
				}
				if *key == "" {
					return usagef("--key is required")
				}
				in, err := d.read(e, false)
				if err != nil {
					return err
				}
				if len(in) > maxPlaintext {
					return fmt.Errorf("the plaintext is %d bytes; the service encrypts at most %d (for more, encrypt locally under a data key: kmsctl generate-data-key)", len(in), maxPlaintext)
				}
				r, err := e.c.Encrypt(e.ctx, *key, in, d.context.orNil())
				if err != nil {
					return err
				}
				return d.emit(e, r.CiphertextBlob, r)
			}
		}},
		command{"decrypt", "", "decrypt a ciphertext blob (raw, --base64, or encrypt's --output json) from --in (stdin) to --out (stdout)", func(fs *flag.FlagSet) func(*env, []string) error {
			key := fs.String("key", "", "optional: the key the blob must be of")
			d := dataFlags(fs)
			return func(e *env, args []string) error {
				if err := want(args, 0, "no arguments"); err != nil {
					return err
				}
				in, err := d.read(e, true)
				if err != nil {
					return err
				}
				r, err := e.c.Decrypt(e.ctx, in, d.context.orNil(), *key)
				if err != nil {
					return err
				}
				defer clear(r.Plaintext)
				return d.emit(e, r.Plaintext, r)
			}
		}},
		command{"re-encrypt", "", "re-encrypt a blob from --in under --key (the plaintext stays in the service)", func(fs *flag.FlagSet) func(*env, []string) error {
			key := fs.String("key", "", "destination key id or alias/NAME (required)")
			src := kv{}
			fs.Var(src, "source-context", "key=value of the blob's encryption context (repeatable)")
			d := dataFlags(fs)
			return func(e *env, args []string) error {
				if err := want(args, 0, "no arguments"); err != nil {
					return err
				}
				if *key == "" {
					return usagef("--key is required")
				}
				in, err := d.read(e, true)
				if err != nil {
					return err
				}
				r, err := e.c.ReEncrypt(e.ctx, client.ReEncryptRequest{CiphertextBlob: in, SourceEncryptionContext: src.orNil(),
					DestinationKeyID: *key, DestinationEncryptionContext: d.context.orNil()})
				if err != nil {
					return err
				}
				return d.emit(e, r.CiphertextBlob, r)
			}
		}},
		command{"generate-data-key", "", "a data key from the token: JSON or a table with the plaintext and the encrypted key", func(fs *flag.FlagSet) func(*env, []string) error {
			key := fs.String("key", "", "key id or alias/NAME (required)")
			spec := fs.String("spec", "", "AES_256 or AES_128 (default AES_256 unless --bytes)")
			n := fs.Int("bytes", 0, "number of bytes, 1-1024, instead of --spec")
			noPlain := fs.Bool("without-plaintext", false, "only the encrypted data key")
			ctx := kv{}
			fs.Var(ctx, "context", "key=value of the encryption context (repeatable)")
			return func(e *env, args []string) error {
				if err := want(args, 0, "no arguments"); err != nil {
					return err
				}
				if *key == "" {
					return usagef("--key is required")
				}
				req := client.DataKeyRequest{KeyID: *key, KeySpec: *spec, NumberOfBytes: *n, EncryptionContext: ctx.orNil()}
				if req.KeySpec == "" && req.NumberOfBytes == 0 {
					req.KeySpec = "AES_256"
				}
				var dk *client.DataKey
				var err error
				if *noPlain {
					dk, err = e.c.GenerateDataKeyWithoutPlaintext(e.ctx, req)
				} else {
					dk, err = e.c.GenerateDataKey(e.ctx, req)
				}
				if err != nil {
					return err
				}
				defer clear(dk.Plaintext)
				if *noPlain {
					return e.out.one(e.stdout, &struct {
						CiphertextBlob []byte `json:"ciphertext_blob"`
						KeyID          string `json:"key_id"`
						KeyVersion     int    `json:"key_version"`
					}{dk.CiphertextBlob, dk.KeyID, dk.KeyVersion})
				}
				return e.out.one(e.stdout, dk)
			}
		}},
		command{"random", "", "random bytes from the token to --out (stdout)", func(fs *flag.FlagSet) func(*env, []string) error {
			n := fs.Int("bytes", 32, "number of bytes, 1-1024")
			out := fs.String("out", "-", `file to write ("-": stdout)`)
			b64 := fs.Bool("base64", false, "write base64 text instead of raw bytes")
			return func(e *env, args []string) error {
				if err := want(args, 0, "no arguments"); err != nil {
					return err
				}
				b, err := e.c.GenerateRandom(e.ctx, *n)
				if err != nil {
					return err
				}
				defer clear(b)
				return (&data{out: out, base64: b64}).emit(e, b, &struct {
					Plaintext []byte `json:"plaintext"`
				}{b})
			}
		}},
	)
}

// data are the input/output flags of a cryptographic command.
type data struct {
	in, out *string
	base64  *bool
	context kv
}

func dataFlags(fs *flag.FlagSet) *data {
	d := &data{context: kv{}}
	d.in = fs.String("in", "-", `file to read ("-": stdin)`)
	d.out = fs.String("out", "-", `file to write ("-": stdout)`)
	d.base64 = fs.Bool("base64", false, "read and write base64 text instead of raw bytes")
	fs.Var(d.context, "context", "key=value of the encryption context (repeatable)")
	return d
}

// read reads --in: raw bytes, base64 text with --base64, or, where the
// input is a ciphertext blob (blob true), the JSON object of a command run
// with --output json (a blob never starts with "{"). A plaintext is taken
// as it is: a file of JSON is data to encrypt, not an answer to unwrap.
func (d *data) read(e *env, blob bool) ([]byte, error) {
	raw, err := readInput(e, "--in", *d.in)
	if err != nil {
		return nil, err
	}
	if t := bytes.TrimSpace(raw); blob && len(t) > 0 && t[0] == '{' {
		var v struct {
			CiphertextBlob []byte `json:"ciphertext_blob"`
		}
		if err := json.Unmarshal(t, &v); err != nil || len(v.CiphertextBlob) == 0 {
			return nil, fmt.Errorf("--in holds JSON without a base64 ciphertext_blob")
		}
		return v.CiphertextBlob, nil
	}
	if !*d.base64 {
		return raw, nil
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("--in is not base64 (drop --base64 for raw bytes)")
	}
	return b, nil
}

// emit writes a command's answer to --out: with --output json the whole
// answer as JSON (bytes in base64), else b, raw or --base64.
func (d *data) emit(e *env, b []byte, answer any) error {
	if e.out.json {
		var buf bytes.Buffer
		if err := writeJSON(&buf, answer); err != nil {
			return err
		}
		defer clear(buf.Bytes())
		return d.write(e, buf.Bytes(), false)
	}
	return d.write(e, b, *d.base64)
}

func (d *data) write(e *env, b []byte, b64 bool) error {
	if b64 {
		b = []byte(base64.StdEncoding.EncodeToString(b) + "\n")
	}
	if *d.out == "-" {
		_, err := e.stdout.Write(b)
		return err
	}
	if err := writeSecret(*d.out, b); err != nil {
		return fmt.Errorf("--out: %v", err)
	}
	return nil
}

// maxPlaintext is the service's limit on one plaintext (docs/API.md).
const maxPlaintext = 4096

// writeSecret writes b to path as a new 0600 file (see writeAtomic).
func writeSecret(path string, b []byte) error {
	return writeAtomic(path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// writeAtomic writes to path as a new 0600 file (a decrypted file is as
// secret as what it held), replacing any file there only once fill has
// succeeded and the data is on disk: an existing file's looser mode is not
// kept, and a failed write leaves the old file, never a truncated one.
func writeAtomic(path string, fill func(w io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp") // created 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = fill(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// readInput reads a file, or stdin for "-".
func readInput(e *env, flagName, name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(e.stdin)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", flagName, err)
	}
	return b, nil
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
