package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Defaults, referenced by the help text.
const (
	// defaultTimeout bounds every call to kmsd. The apiserver gives each
	// gRPC call the EncryptionConfiguration's timeout (default 3 s); a
	// Status that answers "not ok" before that is more useful than one
	// the apiserver abandons.
	defaultTimeout = 2 * time.Second
	// shutdownGrace is how long calls in flight may finish after SIGTERM.
	shutdownGrace = 5 * time.Second
)

// config is the plugin's command line, validated.
type config struct {
	listen     string
	addr       string
	key        string
	caFile     string
	clientCert string
	clientKey  string
	tokenFile  string
	envToken   string // KMS_TOKEN, when set
	timeout    time.Duration
}

const usage = `kms-k8s-plugin serves the Kubernetes KMS v2 API (k8s.io/kms/apis/v2) on a
unix socket for the kube-apiserver, with an hsmkms key: the apiserver's data
encryption keys are encrypted by kmsd, in the HSM, under -key.

Usage: kms-k8s-plugin -listen PATH -addr URL -key KEY [flags]

The bearer token comes from KMS_TOKEN or -token-file (one of them; with
-client-cert/-client-key alone the TLS client certificate authenticates).
The principal needs kms:DescribeKey, kms:Encrypt and kms:Decrypt on the key
and nothing else (docs/kubernetes.md).

Status asks kmsd on every call (one small Encrypt), so its key_id names the
key's primary version as of that call: a rotation reaches the apiserver at
its next Status (every minute; every 10 s while unhealthy).

Logs are JSON on stderr; KMS_LOG_LEVEL is debug, info (default), warn or error.

Flags:
`

// parseConfig reads flags and environment. A -h prints the help and returns
// flag.ErrHelp.
func parseConfig(args []string, stderr io.Writer, getenv func(string) string) (*config, error) {
	fs := flag.NewFlagSet("kms-k8s-plugin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.listen, "listen", "", "unix socket `PATH` to serve on (created 0600, removed at exit; its directory must exist)")
	fs.StringVar(&c.addr, "addr", "", "kmsd's base `URL`, e.g. https://kms.example:8443 (http:// only to a loopback address)")
	fs.StringVar(&c.key, "key", "", "the `KEY`: its id or alias/NAME")
	fs.StringVar(&c.caFile, "ca-file", "", "PEM `PATH` of the CA certificates that verify kmsd's certificate (default: the system's)")
	fs.StringVar(&c.clientCert, "client-cert", "", "PEM `PATH` of a TLS client certificate for mutual TLS (with -client-key)")
	fs.StringVar(&c.clientKey, "client-key", "", "PEM `PATH` of the client certificate's private key")
	fs.StringVar(&c.tokenFile, "token-file", "", "`PATH` of a file holding the bearer token, read at every call (so a rotated token needs no restart); or set KMS_TOKEN")
	fs.DurationVar(&c.timeout, "timeout", defaultTimeout, "bound of each call to kmsd; keep it below the EncryptionConfiguration's timeout")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.envToken = getenv("KMS_TOKEN")
	return &c, c.validate()
}

// validate names the first bad flag.
func (c *config) validate() error {
	switch {
	case c.listen == "":
		return errors.New("-listen is required")
	case c.addr == "":
		return errors.New("-addr is required")
	case c.key == "":
		return errors.New("-key is required")
	case c.timeout <= 0:
		return errors.New("-timeout must be positive")
	case (c.clientCert == "") != (c.clientKey == ""):
		return errors.New("-client-cert and -client-key go together")
	case c.envToken != "" && c.tokenFile != "":
		return errors.New("set KMS_TOKEN or -token-file, not both")
	case c.envToken == "" && c.tokenFile == "" && c.clientCert == "":
		return errors.New("no credentials: set KMS_TOKEN, -token-file, or -client-cert/-client-key")
	}
	if name, ok := strings.CutPrefix(c.key, "alias/"); ok && name == "" {
		return errors.New("-key: alias/ needs a name")
	}
	u, err := url.Parse(c.addr)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("-addr %q: want http(s)://HOST[:PORT]", c.addr)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("-addr: no user, query or fragment (credentials go in KMS_TOKEN or -token-file)")
	}
	if u.Scheme == "http" && !loopback(u.Hostname()) {
		return fmt.Errorf("-addr %q: plain http sends the token in clear; use https (kmsd serves http only on loopback)", c.addr)
	}
	if u.Scheme == "http" && (c.caFile != "" || c.clientCert != "") {
		return errors.New("-ca-file and -client-cert need an https -addr")
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// httpClient is the client to kmsd: the CA and client certificate are
// read once, at start, so that a bad file stops the plugin at once.
func (c *config) httpClient() (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return nil, fmt.Errorf("-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca-file %s: no PEM certificate in it", c.caFile)
		}
		tc.RootCAs = pool
	}
	if c.clientCert != "" {
		cert, err := tls.LoadX509KeyPair(c.clientCert, c.clientKey)
		if err != nil {
			return nil, fmt.Errorf("-client-cert/-client-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.MaxIdleConnsPerHost = 4
	return &http.Client{Transport: tr}, nil
}

// token returns the bearer token: KMS_TOKEN, or the file's content read
// now (trailing newline removed), or "" when a client certificate alone
// authenticates.
func (c *config) token() (string, error) {
	if c.tokenFile == "" {
		return c.envToken, nil
	}
	b, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return "", fmt.Errorf("-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("-token-file %s is empty", c.tokenFile)
	}
	return tok, nil
}
