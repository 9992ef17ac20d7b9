// Command kmsctl is the shell's client of hsmkms: every operation of the REST
// API, with --output json|table (or KMS_OUTPUT), the server address and
// bearer token from flags or KMS_ADDR / KMS_TOKEN (or --token-file), TLS from
// KMS_CACERT / KMS_CLIENT_CERT / KMS_CLIENT_KEY, retries of what the server
// turns away for now, and encrypt / decrypt reading and writing files or
// stdin/stdout. The command tree is cobra's: help, suggestions and shell
// completion come with it.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/buildinfo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// env is what a command works with.
type env struct {
	ctx    context.Context
	c      *client.Client
	out    output
	stdin  io.Reader
	stdout io.Writer
}

// command is one subcommand: "keys create", "encrypt", ...
type command struct {
	name  string
	args  string // usage of the positional arguments
	help  string
	flags func(fs *pflag.FlagSet) func(e *env, args []string) error
}

// Exit codes.
const (
	exitOK          = 0
	exitError       = 1 // the server refused or failed, or a file could not be read
	exitUsage       = 2 // the command line is wrong
	exitUnavailable = 3 // the server was unavailable (or busy) through every retry
)

// globals are the flags every command takes, before or after its name.
type globals struct {
	addr, token, tokenFile, format string
	caFile, clientCert, clientKey  string
	timeout                        time.Duration
	retries                        int
}

// setupError is a wrong global setting (output, token, TLS files): one
// line, exit 2, no usage text.
type setupError struct{ err error }

func (s setupError) Error() string { return s.err.Error() }

// failed is an error of a command's action, as opposed to the command line.
type failed struct{ err error }

func (f failed) Error() string { return f.err.Error() }
func (f failed) Unwrap() error { return f.err }

// run is kmsctl without the process: tests call it directly.
func run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	root, g := newRoot(ctx, stdin, stdout, getenv)
	root.SetArgs(argv)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	var u usageError
	var f failed
	var se setupError
	switch {
	case errors.As(err, &se):
		fmt.Fprintln(stderr, "kmsctl:", se.err)
		return exitUsage
	case errors.As(err, &u):
		fmt.Fprintf(stderr, "%s: %s\n", cmd.CommandPath(), u.msg)
		fmt.Fprint(stderr, cmd.UsageString())
		return exitUsage
	case errors.As(err, &f):
		fmt.Fprintln(stderr, "kmsctl:", describe(f.err))
		if client.Temporary(f.err) {
			if g.retries > 1 {
				fmt.Fprintf(stderr, "kmsctl: still unavailable after %d tries\n", g.retries)
			}
			return exitUnavailable
		}
		return exitError
	}
	// cobra's own: an unknown command or flag.
	fmt.Fprintf(stderr, "kmsctl: %s\n", strings.TrimRight(err.Error(), "\n"))
	fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	return exitUsage
}

// newRoot builds the command tree: groups ("keys", "aliases", ...) from the
// first word of each command's name, the global flags on the root.
func newRoot(ctx context.Context, stdin io.Reader, stdout io.Writer, getenv func(string) string) (*cobra.Command, *globals) {
	g := &globals{}
	root := &cobra.Command{
		Use:           "kmsctl",
		Short:         "the command-line client of hsmkms",
		Long:          "kmsctl calls an hsmkms server (KMS_ADDR) with a bearer token (KMS_TOKEN or --token-file).",
		Version:       buildinfo.Get().String("kmsctl"),
		SilenceErrors: true,
		SilenceUsage:  true,
		// No command: the usage, and exit 2 (a script that forgot the
		// command should not pass).
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("no command given")
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.CompletionOptions.HiddenDefaultCmd = false
	pf := root.PersistentFlags()
	pf.StringVar(&g.addr, "addr", or(getenv("KMS_ADDR"), "http://127.0.0.1:8080"), "server address (KMS_ADDR)")
	pf.StringVar(&g.token, "token", "", "bearer token (default KMS_TOKEN; prefer --token-file or the variable: flags show in ps)")
	pf.StringVar(&g.tokenFile, "token-file", "", "file holding the bearer token")
	pf.StringVarP(&g.format, "output", "o", or(getenv("KMS_OUTPUT"), "table"), "output format: table or json (KMS_OUTPUT)")
	pf.DurationVar(&g.timeout, "timeout", 30*time.Second, "time limit of the whole command, retries included (0: none)")
	pf.IntVar(&g.retries, "retries", client.DefaultRetry.Attempts, "tries of a call the server turns away for now (503, 429, 409 ConflictException); 1: no retry")
	pf.StringVar(&g.caFile, "ca-file", getenv("KMS_CACERT"), "PEM CA certificates that verify the server (KMS_CACERT; default: the system's)")
	pf.StringVar(&g.clientCert, "client-cert", getenv("KMS_CLIENT_CERT"), "PEM client certificate for mutual TLS (KMS_CLIENT_CERT)")
	pf.StringVar(&g.clientKey, "client-key", getenv("KMS_CLIENT_KEY"), "PEM private key of --client-cert (KMS_CLIENT_KEY)")

	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))

	groups := map[string]*cobra.Command{}
	for i := range commands {
		c := &commands[i]
		parent := root
		words := strings.Fields(c.name)
		if len(words) == 2 {
			parent = groups[words[0]]
			if parent == nil {
				parent = newGroup(words[0])
				groups[words[0]] = parent
				root.AddCommand(parent)
			}
		}
		parent.AddCommand(leaf(ctx, c, words[len(words)-1], g, stdin, stdout, getenv))
	}
	return root, g
}

// groupHelp is the line each group shows in kmsctl's help.
var groupHelp = map[string]string{
	"keys":       "create, list, rotate and delete keys; import key material",
	"versions":   "disable, enable and destroy key versions",
	"aliases":    "name keys",
	"principals": "callers and their policies",
	"tokens":     "bearer tokens of principals",
	"policies":   "policy documents",
	"batch":      "encrypt or decrypt up to 100 items in one request",
	"audit":      "the audit trail",
}

// newGroup is a command that only holds others: alone it lists them; with
// an unknown word it says so and suggests the nearest.
func newGroup(name string) *cobra.Command {
	return &cobra.Command{
		Use:                        name,
		Short:                      groupHelp[name],
		SuggestionsMinimumDistance: 2,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			msg := fmt.Sprintf("unknown command %q", name+" "+args[0])
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "\n\nDid you mean this?\n\t" + name + " " + strings.Join(s, "\n\t"+name+" ")
			}
			return errors.New(msg)
		},
	}
}

// leaf is one command: its flags are declared on the cobra command, its
// action runs with a client made from the global flags.
func leaf(ctx context.Context, c *command, word string, g *globals, stdin io.Reader, stdout io.Writer, getenv func(string) string) *cobra.Command {
	cc := &cobra.Command{
		Use:   strings.TrimSpace(word + " " + c.args),
		Short: c.help,
		Args:  cobra.ArbitraryArgs, // the action checks them, with a message of its own
	}
	action := c.flags(cc.Flags())
	cc.RunE = func(cmd *cobra.Command, args []string) error {
		out, err := newOutput(g.format)
		if err != nil {
			return setupError{err}
		}
		tok, err := bearer(g.token, g.tokenFile, getenv)
		if err != nil {
			return setupError{err}
		}
		hc, err := httpClient(g)
		if err != nil {
			return setupError{err}
		}
		var cctx context.Context
		var cancel context.CancelFunc
		if g.timeout > 0 {
			cctx, cancel = context.WithTimeout(ctx, g.timeout)
		} else {
			cctx, cancel = context.WithCancel(ctx)
		}
		defer cancel()
		retry := client.DefaultRetry
		retry.Attempts = g.retries
		e := &env{ctx: cctx, c: client.New(g.addr, tok, hc).WithRetry(retry), out: out, stdin: stdin, stdout: stdout}
		if err := action(e, args); err != nil {
			var u usageError
			if errors.As(err, &u) {
				return u
			}
			return failed{err}
		}
		return nil
	}
	return cc
}

// httpClient is the client of the TLS flags: the CA certificates that verify
// the server, and the client certificate of mutual TLS.
func httpClient(g *globals) (*http.Client, error) {
	if g.caFile == "" && g.clientCert == "" && g.clientKey == "" {
		return &http.Client{}, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if g.caFile != "" {
		pem, err := os.ReadFile(g.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %v", errors.Unwrap(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", g.caFile)
		}
		cfg.RootCAs = pool
	}
	if (g.clientCert == "") != (g.clientKey == "") {
		return nil, errors.New("give both --client-cert and --client-key (KMS_CLIENT_CERT, KMS_CLIENT_KEY), or neither")
	}
	if g.clientCert != "" {
		cert, err := tls.LoadX509KeyPair(g.clientCert, g.clientKey)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	return &http.Client{Transport: t}, nil
}

// describe is the one line of an error: the API code, message and request id.
func describe(err error) string {
	var ae *client.Error
	if errors.As(err, &ae) {
		code := ae.Code
		if code == "" {
			code = http.StatusText(ae.Status)
		}
		return fmt.Sprintf("%s: %s (request %s)", code, ae.Message, ae.RequestID)
	}
	return err.Error()
}

// bearer picks the token: the flag, the file, or KMS_TOKEN.
func bearer(flagValue, file string, getenv func(string) string) (string, error) {
	switch {
	case flagValue != "" && file != "":
		return "", errors.New("give --token or --token-file, not both")
	case flagValue != "":
		return flagValue, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--token-file: %v", errors.Unwrap(err))
		}
		return strings.TrimSpace(string(b)), nil
	}
	if t := getenv("KMS_TOKEN"); t != "" {
		return t, nil
	}
	return "", errors.New("no bearer token: set KMS_TOKEN, or give --token-file")
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// want checks the number of positional arguments.
func want(args []string, n int, names string) error {
	if len(args) != n {
		return usagef("want %s, got %d argument(s)", names, len(args))
	}
	return nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// kv collects repeated k=v flags (encryption context, tags).
type kv map[string]string

func (m kv) String() string { return "" }

func (m kv) Type() string { return "key=value" }

func (m kv) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key=value", s)
	}
	m[k] = v
	return nil
}

func (m kv) orNil() map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// list collects a repeated flag.
type list []string

func (l *list) String() string { return strings.Join(*l, ",") }

func (l *list) Type() string { return "name" }

func (l *list) Set(s string) error { *l = append(*l, s); return nil }
