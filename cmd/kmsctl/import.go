package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	flag "github.com/spf13/pflag"
	"os"
	"time"
)

// Bring your own key from the shell (docs/byok.md): parameters (the public
// key written to a file), the import of a wrapped file, and deletion.
func init() {
	commands = append(commands,
		command{"keys import-parameters", "KEY", "a wrapping public key (DER, written to --public-key) and an import token", func(fs *flag.FlagSet) func(*env, []string) error {
			alg := fs.String("algorithm", "RSA_AES_KEY_WRAP_SHA_1", "wrapping algorithm (the server lists what its token offers)")
			pubFile := fs.String("public-key", "wrapping_pub.der", "file to write the DER public key to")
			return func(e *env, args []string) error {
				if err := want(args, 1, "KEY"); err != nil {
					return err
				}
				p, err := e.c.GetParametersForImport(e.ctx, args[0], *alg)
				if err != nil {
					return err
				}
				if err := os.WriteFile(*pubFile, p.PublicKey, 0o644); err != nil {
					return fmt.Errorf("--public-key: %v", err)
				}
				return e.out.one(e.stdout, &struct {
					KeyID             string    `json:"key_id"`
					PublicKeyFile     string    `json:"public_key_file"`
					ImportToken       string    `json:"import_token"`
					ParametersValidTo time.Time `json:"parameters_valid_to"`
				}{p.KeyID, *pubFile, p.ImportToken, p.ParametersValidTo})
			}
		}},
		command{"keys import", "KEY", "import wrapped key material from --in (raw bytes, or --base64)", func(fs *flag.FlagSet) func(*env, []string) error {
			importToken := fs.String("import-token", "", "the import token of keys import-parameters (required)")
			in := fs.String("in", "-", `the wrapped material ("-": stdin)`)
			b64 := fs.Bool("base64", false, "--in holds base64 text")
			validTo := fs.String("valid-to", "", "RFC 3339 time after which the material is deleted")
			return func(e *env, args []string) error {
				if err := want(args, 1, "KEY"); err != nil {
					return err
				}
				if *importToken == "" {
					return usagef("--import-token is required")
				}
				var until *time.Time
				if *validTo != "" {
					t, err := time.Parse(time.RFC3339, *validTo)
					if err != nil {
						return usagef("--valid-to %q is not an RFC 3339 time", *validTo)
					}
					until = &t
				}
				raw, err := readInput(e, "--in", *in)
				if err != nil {
					return err
				}
				if *b64 {
					if raw, err = base64.StdEncoding.DecodeString(string(bytes.TrimSpace(raw))); err != nil {
						return fmt.Errorf("--in is not base64")
					}
				}
				k, err := e.c.ImportKeyMaterial(e.ctx, args[0], *importToken, raw, until)
				return e.show(k, err)
			}
		}},
		keyCmd("keys delete-material", "destroy imported key material (the key is PendingImport again)", func(e *env, ref string) (any, error) {
			return e.c.DeleteImportedKeyMaterial(e.ctx, ref)
		}),
	)
}
