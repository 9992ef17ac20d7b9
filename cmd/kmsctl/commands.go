package main

import (
	"encoding/json"
	"fmt"
	flag "github.com/spf13/pflag"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/hsmkms/hsmkms/client"
)

// commands is every subcommand. Each flags function declares its flags and
// returns the action that runs with them.
var commands = []command{
	{"keys create", "", "create a key (version 1 is generated in the token)", func(fs *flag.FlagSet) func(*env, []string) error {
		desc := fs.String("description", "", "description")
		alias := fs.String("alias", "", "alias/NAME to bind to it")
		rotate := fs.Bool("rotate", false, "turn automatic rotation on")
		interval := fs.String("interval", "", "rotation interval (e.g. 90d)")
		origin := fs.String("origin", "", "HSM (default) or EXTERNAL")
		tags := kv{}
		fs.Var(tags, "tag", "key=value (repeatable)")
		return func(e *env, args []string) error {
			if err := want(args, 0, "no arguments"); err != nil {
				return err
			}
			k, err := e.c.CreateKey(e.ctx, client.CreateKeyRequest{Description: *desc, Alias: *alias,
				AutomaticRotation: *rotate, RotationInterval: *interval, Origin: *origin, Tags: tags.orNil()})
			return e.show(k, err)
		}
	}},
	{"keys list", "", "list keys", func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			if err := want(args, 0, "no arguments"); err != nil {
				return err
			}
			all, err := allPages(func(next string) ([]client.Key, string, error) {
				p, err := e.c.ListKeys(e.ctx, 1000, next)
				if err != nil {
					return nil, "", err
				}
				return p.Keys, p.NextToken, nil
			})
			if err != nil {
				return err
			}
			return e.out.many(e.stdout, "keys", all, "key_id", "key_state", "aliases", "primary_key_version", "automatic_rotation", "description")
		}
	}},
	keyCmd("keys describe", "describe a key", func(e *env, ref string) (any, error) { return e.c.DescribeKey(e.ctx, ref) }),
	keyCmd("keys enable", "enable a key", func(e *env, ref string) (any, error) { return e.c.EnableKey(e.ctx, ref) }),
	keyCmd("keys disable", "disable a key", func(e *env, ref string) (any, error) { return e.c.DisableKey(e.ctx, ref) }),
	keyCmd("keys cancel-deletion", "cancel a scheduled deletion", func(e *env, ref string) (any, error) { return e.c.CancelKeyDeletion(e.ctx, ref) }),
	keyCmd("keys rotation-status", "rotation status", func(e *env, ref string) (any, error) { return e.c.GetRotationStatus(e.ctx, ref) }),
	keyCmd("keys rotate", "rotate now (a new primary version)", func(e *env, ref string) (any, error) {
		v, err := e.c.RotateKey(e.ctx, ref)
		return &struct {
			KeyVersion int `json:"key_version"`
		}{v}, err
	}),
	{"keys update", "KEY", "change description and tags", func(fs *flag.FlagSet) func(*env, []string) error {
		desc := fs.String("description", "", "new description")
		tags := kv{}
		fs.Var(tags, "tag", "key=value (repeatable; replaces all tags)")
		clear := fs.Bool("clear-tags", false, "remove every tag")
		return func(e *env, args []string) error {
			if err := want(args, 1, "KEY"); err != nil {
				return err
			}
			req := client.UpdateKeyRequest{Tags: tags.orNil()}
			if *clear {
				if len(tags) > 0 {
					return usagef("--clear-tags and --tag exclude each other")
				}
				req.Tags = map[string]string{}
			}
			fs.Visit(func(f *flag.Flag) {
				if f.Name == "description" {
					req.Description = desc
				}
			})
			k, err := e.c.UpdateKey(e.ctx, args[0], req)
			return e.show(k, err)
		}
	}},
	{"keys schedule-deletion", "KEY", "schedule deletion after 7-30 days", func(fs *flag.FlagSet) func(*env, []string) error {
		days := fs.Int("days", 0, "pending window in days, 7-30 (default 30)")
		return func(e *env, args []string) error {
			if err := want(args, 1, "KEY"); err != nil {
				return err
			}
			k, err := e.c.ScheduleKeyDeletion(e.ctx, args[0], *days)
			return e.show(k, err)
		}
	}},
	{"keys rotation-policy", "KEY", "set automatic rotation", func(fs *flag.FlagSet) func(*env, []string) error {
		on := fs.Bool("enabled", false, "automatic rotation on (--enabled) or off (--enabled=false)")
		interval := fs.String("interval", "", "rotation interval (e.g. 90d)")
		return func(e *env, args []string) error {
			if err := want(args, 1, "KEY"); err != nil {
				return err
			}
			given := false
			fs.Visit(func(f *flag.Flag) { given = given || f.Name == "enabled" })
			if !given {
				return usagef("say --enabled or --enabled=false")
			}
			k, err := e.c.PutRotationPolicy(e.ctx, args[0], *on, *interval)
			return e.show(k, err)
		}
	}},
	{"keys rotations", "KEY", "list rotations", func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			if err := want(args, 1, "KEY"); err != nil {
				return err
			}
			all, err := allPages(func(next string) ([]client.Rotation, string, error) {
				p, err := e.c.ListKeyRotations(e.ctx, args[0], 1000, next)
				if err != nil {
					return nil, "", err
				}
				return p.Rotations, p.NextToken, nil
			})
			if err != nil {
				return err
			}
			return e.out.many(e.stdout, "rotations", all, "key_version", "rotation_date", "rotation_type")
		}
	}},
	{"keys versions", "KEY", "list versions", func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			if err := want(args, 1, "KEY"); err != nil {
				return err
			}
			vs, err := e.c.ListVersions(e.ctx, args[0])
			if err != nil {
				return err
			}
			return e.out.many(e.stdout, "versions", vs, "version", "state", "origin", "creation_date", "destruction_date", "token_object_label")
		}
	}},
	versionCmd("disable", "disable a non-primary version"),
	versionCmd("enable", "re-enable a version (decrypt-only)"),
	versionCmd("schedule-destruction", "schedule the destruction of a non-primary version"),
	versionCmd("cancel-destruction", "cancel a scheduled destruction"),

	{"aliases create", "alias/NAME KEY", "create an alias", func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			if err := want(args, 2, "alias/NAME KEY"); err != nil {
				return err
			}
			a, err := e.c.CreateAlias(e.ctx, args[0], args[1])
			return e.show(a, err)
		}
	}},
	{"aliases update", "alias/NAME KEY", "point an alias at another key", func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			if err := want(args, 2, "alias/NAME KEY"); err != nil {
				return err
			}
			a, err := e.c.UpdateAlias(e.ctx, args[0], args[1])
			return e.show(a, err)
		}
	}},
	{"aliases delete", "alias/NAME", "delete an alias", func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			if err := want(args, 1, "alias/NAME"); err != nil {
				return err
			}
			return e.c.DeleteAlias(e.ctx, args[0])
		}
	}},
	{"aliases list", "", "list aliases", func(fs *flag.FlagSet) func(*env, []string) error {
		key := fs.String("key", "", "only the aliases of this key")
		return func(e *env, args []string) error {
			if err := want(args, 0, "no arguments"); err != nil {
				return err
			}
			all, err := allPages(func(next string) ([]client.Alias, string, error) {
				p, err := e.c.ListAliases(e.ctx, *key, 1000, next)
				if err != nil {
					return nil, "", err
				}
				return p.Aliases, p.NextToken, nil
			})
			if err != nil {
				return err
			}
			return e.out.many(e.stdout, "aliases", all, "alias_name", "target_key_id", "last_updated_date")
		}
	}},

	{"principals create", "NAME", "create a principal", func(fs *flag.FlagSet) func(*env, []string) error {
		var policies list
		fs.Var(&policies, "policy", "policy to attach (repeatable)")
		subject := fs.String("cert-subject", "", "TLS client certificate subject that authenticates it")
		return func(e *env, args []string) error {
			if err := want(args, 1, "NAME"); err != nil {
				return err
			}
			p, err := e.c.CreatePrincipal(e.ctx, client.CreatePrincipalRequest{Name: args[0], Policies: policies, CertSubject: *subject})
			return e.show(p, err)
		}
	}},
	{"principals list", "", "list principals", func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			if err := want(args, 0, "no arguments"); err != nil {
				return err
			}
			all, err := allPages(func(next string) ([]client.Principal, string, error) {
				p, err := e.c.ListPrincipals(e.ctx, 1000, next)
				if err != nil {
					return nil, "", err
				}
				return p.Principals, p.NextToken, nil
			})
			if err != nil {
				return err
			}
			return e.out.many(e.stdout, "principals", all, "name", "policies", "cert_subject", "creation_date")
		}
	}},
	nameCmd("principals describe", "NAME", "a principal with its policies and tokens", func(e *env, a []string) (any, error) { return e.c.GetPrincipal(e.ctx, a[0]) }),
	nameCmd("principals delete", "NAME", "delete a principal and its tokens", func(e *env, a []string) (any, error) { return nil, e.c.DeletePrincipal(e.ctx, a[0]) }),
	nameCmd("principals attach", "NAME POLICY", "attach a policy", func(e *env, a []string) (any, error) { return e.c.AttachPolicy(e.ctx, a[0], a[1]) }),
	nameCmd("principals detach", "NAME POLICY", "detach a policy", func(e *env, a []string) (any, error) { return e.c.DetachPolicy(e.ctx, a[0], a[1]) }),
	{"tokens create", "PRINCIPAL", "a new bearer token (printed once)", func(fs *flag.FlagSet) func(*env, []string) error {
		desc := fs.String("description", "", "what the token is for")
		expires := fs.String("expires-in", "", `lifetime, e.g. "90d" or "12h" (default: the token does not expire)`)
		return func(e *env, args []string) error {
			if err := want(args, 1, "PRINCIPAL"); err != nil {
				return err
			}
			t, err := e.c.CreateExpiringToken(e.ctx, args[0], *desc, *expires)
			return e.show(t, err)
		}
	}},
	{"tokens list", "PRINCIPAL", "a principal's bearer tokens (ids, dates, expiry, last use; never secrets)", func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			if err := want(args, 1, "PRINCIPAL"); err != nil {
				return err
			}
			p, err := e.c.GetPrincipal(e.ctx, args[0])
			if err != nil {
				return err
			}
			return e.out.many(e.stdout, "tokens", p.Tokens, "token_id", "description", "creation_date",
				"expiration_date", "last_used_date", "revoked_date")
		}
	}},
	nameCmd("tokens revoke", "PRINCIPAL TOKEN_ID", "revoke a token", func(e *env, a []string) (any, error) { return nil, e.c.RevokeToken(e.ctx, a[0], a[1]) }),
	nameCmd("tokens rotate", "PRINCIPAL TOKEN_ID", "a new token; the old one is revoked", func(e *env, a []string) (any, error) { return e.c.RotateToken(e.ctx, a[0], a[1]) }),
	{"policies put", "NAME", "create or replace a policy from a JSON document", func(fs *flag.FlagSet) func(*env, []string) error {
		file := fs.String("file", "-", `the document, {"statements": [...]} ("-": stdin)`)
		return func(e *env, args []string) error {
			if err := want(args, 1, "NAME"); err != nil {
				return err
			}
			raw, err := readInput(e, "--file", *file)
			if err != nil {
				return err
			}
			var doc client.PolicyDocument
			dec := json.NewDecoder(bytesReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&doc); err != nil {
				return fmt.Errorf("policy document: %v", err)
			}
			p, err := e.c.PutPolicy(e.ctx, args[0], doc)
			return e.show(p, err)
		}
	}},
	nameCmd("policies get", "NAME", "a policy", func(e *env, a []string) (any, error) { return e.c.GetPolicy(e.ctx, a[0]) }),
	nameCmd("policies delete", "NAME", "delete a policy no principal has attached", func(e *env, a []string) (any, error) { return nil, e.c.DeletePolicy(e.ctx, a[0]) }),
	{"policies list", "", "list policies", func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			if err := want(args, 0, "no arguments"); err != nil {
				return err
			}
			all, err := allPages(func(next string) ([]client.Policy, string, error) {
				p, err := e.c.ListPolicies(e.ctx, 1000, next)
				if err != nil {
					return nil, "", err
				}
				return p.Policies, p.NextToken, nil
			})
			if err != nil {
				return err
			}
			return e.out.many(e.stdout, "policies", all, "name", "last_updated_date", "document")
		}
	}},
	{"audit list", "", "audit records, oldest first", func(fs *flag.FlagSet) func(*env, []string) error {
		key := fs.String("key", "", "only this key id")
		principal := fs.String("principal", "", "only this principal")
		from := fs.String("from", "", "at or after (RFC 3339)")
		to := fs.String("to", "", "before (RFC 3339)")
		limit := fs.Int("limit", 100, "at most this many records (0: all)")
		return func(e *env, args []string) error {
			if err := want(args, 0, "no arguments"); err != nil {
				return err
			}
			f := client.AuditFilter{KeyID: *key, Principal: *principal}
			for _, t := range []struct {
				name, val string
				dst       *time.Time
			}{{"--from", *from, &f.From}, {"--to", *to, &f.To}} {
				if t.val == "" {
					continue
				}
				v, err := time.Parse(time.RFC3339Nano, t.val)
				if err != nil {
					return usagef("%s %q is not an RFC 3339 time", t.name, t.val)
				}
				*t.dst = v
			}
			var all []client.AuditRecord
			next := ""
			seen := pageTokens{}
			for {
				page := 1000
				if *limit > 0 {
					page = min(1000, *limit-len(all))
				}
				p, err := e.c.ListAudit(e.ctx, f, page, next)
				if err != nil {
					return err
				}
				all = append(all, p.Records...)
				if next = p.NextToken; next == "" || (*limit > 0 && len(all) >= *limit) {
					break
				}
				if err := seen.add(next); err != nil {
					return err
				}
			}
			return e.out.many(e.stdout, "records", all, "seq", "time", "principal", "credential", "action", "key_id", "key_version", "outcome", "error_code", "source")
		}
	}},
	{"audit verify", "", "check the audit chain and its seals; exit 1 and name the first broken record if it was edited", func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			if err := want(args, 0, "no arguments"); err != nil {
				return err
			}
			v, err := e.c.VerifyAudit(e.ctx)
			if err != nil {
				return err
			}
			if err := e.out.one(e.stdout, v); err != nil {
				return err
			}
			if !v.Intact {
				return fmt.Errorf("the audit chain is broken at record %d: %s", v.FirstBrokenSeq, v.Reason)
			}
			return nil
		}
	}},
}

// allPages follows next_token to the end of a list. A token that comes
// back again would loop for ever: it is an error.
func allPages[T any](page func(next string) ([]T, string, error)) ([]T, error) {
	var all []T
	next := ""
	seen := pageTokens{}
	for {
		items, n, err := page(next)
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		if next = n; next == "" {
			return all, nil
		}
		if err := seen.add(next); err != nil {
			return nil, err
		}
	}
}

// pageTokens are the next_tokens a listing has followed.
type pageTokens map[string]bool

// add records next; one seen before is an error, not an endless loop.
func (p pageTokens) add(next string) error {
	if p[next] {
		return fmt.Errorf("the server returned the same next_token twice; stopped")
	}
	p[next] = true
	return nil
}

// keyCmd is a command of one KEY argument and one object answer.
func keyCmd(name, help string, do func(e *env, ref string) (any, error)) command {
	return command{name, "KEY", help, func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			if err := want(args, 1, "KEY"); err != nil {
				return err
			}
			v, err := do(e, args[0])
			return e.show(v, err)
		}
	}}
}

// nameCmd is a command of fixed positional arguments; a nil answer prints nothing.
func nameCmd(name, argNames, help string, do func(e *env, args []string) (any, error)) command {
	n := len(strings.Fields(argNames))
	return command{name, argNames, help, func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			if err := want(args, n, argNames); err != nil {
				return err
			}
			v, err := do(e, args)
			return e.show(v, err)
		}
	}}
}

// versionCmd is "versions ACTION KEY VERSION".
func versionCmd(action, help string) command {
	return command{"versions " + action, "KEY VERSION", help, func(fs *flag.FlagSet) func(*env, []string) error {
		days := 0
		if action == "schedule-destruction" {
			fs.IntVar(&days, "days", 0, "pending window in days, 7-30 (default 30)")
		}
		return func(e *env, args []string) error {
			if err := want(args, 2, "KEY VERSION"); err != nil {
				return err
			}
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 1 {
				return usagef("VERSION %q is not a positive number", args[1])
			}
			v, err := e.c.ChangeVersion(e.ctx, args[0], n, action, days)
			return e.show(v, err)
		}
	}}
}

// show prints an answer (nothing for nil, or for an error).
func (e *env) show(v any, err error) error {
	if err != nil {
		return err
	}
	if v == nil || isNilPointer(v) {
		return nil
	}
	return e.out.one(e.stdout, v)
}

func isNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}
