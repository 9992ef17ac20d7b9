package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	flag "github.com/spf13/pflag"

	"github.com/hsmkms/hsmkms/client"
)

// Files of any size: envelope encryption done here, under a data key from
// the server (docs/ciphertext.md, "Envelope files"). The output file
// appears only whole: a failure, or an envelope that does not authenticate
// to its end, leaves no output (or the old file) behind. To stdout ("-")
// decrypt-file streams authenticated chunks and exits 1 if the end does not
// authenticate.
func init() {
	commands = append(commands,
		command{"encrypt-file", "", "encrypt a file of any size (--in) to an envelope (--out) under a data key of --key", func(fs *flag.FlagSet) func(*env, []string) error {
			key := fs.String("key", "", "key id or alias/NAME (required)")
			f := fileFlags(fs)
			return func(e *env, args []string) error {
				if err := f.check(args); err != nil {
					return err
				}
				if *key == "" {
					return usagef("--key is required")
				}
				return f.run(e, func(in io.Reader, out io.Writer) (any, error) {
					w, err := e.c.NewEnvelopeWriter(e.ctx, out, *key, f.context.orNil())
					if err != nil {
						return nil, err
					}
					n, err := sealAll(w, in)
					return &fileResult{In: *f.in, Out: *f.out, KeyID: w.KeyID, KeyVersion: w.KeyVersion, Bytes: n}, err
				})
			}
		}},
		command{"decrypt-file", "", "decrypt an envelope of encrypt-file (--in) to --out", func(fs *flag.FlagSet) func(*env, []string) error {
			key := fs.String("key", "", "the key id or alias/NAME the file must be encrypted under (recommended: without it a file under any key you may decrypt with is accepted)")
			f := fileFlags(fs)
			return func(e *env, args []string) error {
				if err := f.check(args); err != nil {
					return err
				}
				return f.run(e, func(in io.Reader, out io.Writer) (any, error) {
					r, err := e.c.NewEnvelopeReader(e.ctx, bufio.NewReaderSize(in, 1<<20), f.context.orNil(), *key)
					if err != nil {
						return nil, err
					}
					n, err := io.Copy(out, r)
					return &fileResult{In: *f.in, Out: *f.out, KeyID: r.KeyID, KeyVersion: r.KeyVersion, Bytes: n}, err
				})
			}
		}},
	)
}

// sealAll copies in into w and closes it. On an error it aborts w, which
// wipes the plaintext buffered in it (up to a chunk).
func sealAll(w *client.EnvelopeWriter, in io.Reader) (int64, error) {
	n, err := io.Copy(w, in)
	if err != nil {
		w.Abort()
		return n, err
	}
	return n, w.Close()
}

// fileResult is what encrypt-file and decrypt-file print (with --out a file).
type fileResult struct {
	In         string `json:"in"`
	Out        string `json:"out"`
	KeyID      string `json:"key_id"`
	KeyVersion int    `json:"key_version"`
	Bytes      int64  `json:"plaintext_bytes"`
}

type fileArgs struct {
	in, out *string
	context kv
}

func fileFlags(fs *flag.FlagSet) *fileArgs {
	f := &fileArgs{context: kv{}}
	f.in = fs.String("in", "", `file to read ("-": stdin) (required)`)
	f.out = fs.String("out", "", `file to write ("-": stdout) (required)`)
	fs.Var(f.context, "context", "key=value of the encryption context (repeatable); decrypt-file checks it against the file's")
	return f
}

func (f *fileArgs) check(args []string) error {
	if err := want(args, 0, "no arguments"); err != nil {
		return err
	}
	if *f.in == "" || *f.out == "" {
		return usagef("--in and --out are required")
	}
	if *f.in == *f.out && *f.in != "-" {
		return usagef("--in and --out are the same file")
	}
	return nil
}

// run opens --in, and writes --out whole or not at all; with a file as
// --out it prints the result.
func (f *fileArgs) run(e *env, do func(in io.Reader, out io.Writer) (any, error)) error {
	in := e.stdin
	if *f.in != "-" {
		file, err := os.Open(*f.in)
		if err != nil {
			return fmt.Errorf("--in: %v", err)
		}
		defer file.Close()
		in = file
	}
	if *f.out == "-" {
		_, err := do(in, e.stdout)
		return err
	}
	var res any
	err := writeAtomic(*f.out, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		var err error
		if res, err = do(in, bw); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return err
	}
	return e.out.one(e.stdout, res)
}
