package main

import flag "github.com/spf13/pflag"

// AWS access keys from the shell (docs/aws-compat.md): create (the secret is
// printed once), list, delete. Registered like the other command files, so
// the dispatcher needs no change.
func init() {
	groupHelp["access-keys"] = "AWS access keys of principals (the AWS KMS protocol)"
	commands = append(commands,
		nameCmd("access-keys create", "PRINCIPAL", "a new AWS access key for the AWS KMS protocol (the secret is printed once)",
			func(e *env, a []string) (any, error) { return e.c.CreateAccessKey(e.ctx, a[0]) }),
		command{"access-keys list", "PRINCIPAL", "a principal's AWS access keys (ids, dates, last use)", func(fs *flag.FlagSet) func(*env, []string) error {
			return func(e *env, args []string) error {
				if err := want(args, 1, "PRINCIPAL"); err != nil {
					return err
				}
				keys, err := e.c.ListAccessKeys(e.ctx, args[0])
				if err != nil {
					return err
				}
				return e.out.many(e.stdout, "access_keys", keys, "access_key_id", "creation_date", "last_used_date")
			}
		}},
		nameCmd("access-keys delete", "PRINCIPAL ACCESS_KEY_ID", "delete an access key (requests signed with it fail at once)",
			func(e *env, a []string) (any, error) { return nil, e.c.DeleteAccessKey(e.ctx, a[0], a[1]) }),
	)
}
