// Command kmsctl is the shell's client of hsmkms: every operation of the REST
// API, with --output json|table, the server address and bearer token from
// flags or KMS_ADDR / KMS_TOKEN (or --token-file), and encrypt / decrypt
// reading and writing files or stdin/stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"github.com/hsmkms/hsmkms/client"
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
	flags func(fs *flag.FlagSet) func(e *env, args []string) error
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the server refused or failed, or a file could not be read
	exitUsage = 2 // the command line is wrong
)

// run is kmsctl without the process: tests call it directly.
func run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	global := flag.NewFlagSet("kmsctl", flag.ContinueOnError)
	global.SetOutput(stderr)
	addr := global.String("addr", or(getenv("KMS_ADDR"), "http://127.0.0.1:8080"), "server address (KMS_ADDR)")
	token := global.String("token", "", "bearer token (default KMS_TOKEN; prefer --token-file or the variable: flags show in ps)")
	tokenFile := global.String("token-file", "", "file holding the bearer token")
	format := global.String("output", "table", "output format: table or json")
	timeout := global.Duration("timeout", 30*time.Second, "time limit of the whole command (0: none)")
	global.Usage = func() { usage(stderr, global) }
	if err := global.Parse(argv); err != nil {
		return exitUsage
	}
	out, err := newOutput(*format)
	if err != nil {
		fmt.Fprintln(stderr, "kmsctl:", err)
		return exitUsage
	}
	cmd, rest := find(global.Args())
	if cmd == nil {
		if len(global.Args()) == 0 {
			usage(stderr, global)
		} else {
			fmt.Fprintf(stderr, "kmsctl: unknown command %q (kmsctl -h lists them)\n", strings.Join(global.Args(), " "))
		}
		return exitUsage
	}
	fs := flag.NewFlagSet("kmsctl "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: kmsctl %s [flags] %s\n  %s\n", cmd.name, cmd.args, cmd.help)
		fs.PrintDefaults()
	}
	action := cmd.flags(fs)
	positional, err := parseInterleaved(fs, rest)
	if err != nil {
		return exitUsage
	}
	tok, err := bearer(*token, *tokenFile, getenv)
	if err != nil {
		fmt.Fprintln(stderr, "kmsctl:", err)
		return exitUsage
	}
	var cancel context.CancelFunc
	if *timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, *timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	e := &env{ctx: ctx, c: client.New(*addr, tok, &http.Client{}), out: out, stdin: stdin, stdout: stdout}
	if err := action(e, positional); err != nil {
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintf(stderr, "kmsctl %s: %s\n", cmd.name, u.msg)
			fs.Usage()
			return exitUsage
		}
		fmt.Fprintln(stderr, "kmsctl:", describe(err))
		return exitError
	}
	return exitOK
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

// parseInterleaved parses flags given before, between or after the
// positional arguments ("keys schedule-deletion KEY --days 7"); "--" ends
// the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
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

// find matches the longest command name at the start of args.
func find(args []string) (*command, []string) {
	for words := min(2, len(args)); words >= 1; words-- {
		name := strings.Join(args[:words], " ")
		for i := range commands {
			if commands[i].name == name {
				return &commands[i], args[words:]
			}
		}
	}
	return nil, nil
}

func usage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprintln(w, "usage: kmsctl [global flags] <command> [flags] [arguments]")
	fmt.Fprintln(w, "\nglobal flags:")
	global.SetOutput(w)
	global.PrintDefaults()
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = fmt.Sprintf("  %-30s %s", c.name+" "+c.args, c.help)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintln(w, n)
	}
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

func (l *list) Set(s string) error { *l = append(*l, s); return nil }
