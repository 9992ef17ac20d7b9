package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service"
)

// Config is everything kmsd needs to start. Every field has a flag and an
// environment variable of the same meaning (docs/API.md, "Running the server"),
// except secrets, which come only from the environment or a file.
type Config struct {
	Listen string
	Module string
	// InitArgs is passed to C_Initialize (NSS softoken's database).
	InitArgs   string
	TokenLabel string
	DB         string
	TLSCert    string
	TLSKey     string
	// TLSClientCA, when set, makes kmsd verify client certificates against
	// it; a verified certificate's subject authenticates its principal.
	TLSClientCA string
	// Audit off is for measuring its cost only (make bench).
	Audit bool
	auditSinkConfig
	// ProvisionFile lists keys and aliases to create at start if absent.
	ProvisionFile string
	HSMProfile    string
	// TokenIV makes the token generate each GCM IV (HSMs in FIPS mode).
	TokenIV     bool
	MaxSessions int
	// MaxConnections caps open client connections (api.Limits).
	MaxConnections int
	// AuthLimits bound failed authentication per source (api.AuthLimits).
	AuthLimits api.AuthLimits
	LogLevel   string
	// Rotation interval bounds (tests lower the minimum).
	MinRotationInterval time.Duration
	MaxRotationInterval time.Duration
	// MaxVersionsPerKey caps token objects per key (default 100).
	MaxVersionsPerKey int
	// MaxOnDemandRotations is each key's lifetime quota of on-demand
	// rotations, as service.Config takes it (0: the default; negative:
	// unlimited, KMS_MAX_ON_DEMAND_ROTATIONS=0).
	MaxOnDemandRotations int
	// DevMode allows development settings; DevPendingWindow, one of them,
	// replaces the 7 to 30 days of deletions and destructions (lifecycle.go).
	DevMode          bool
	DevPendingWindow time.Duration
	// Background worker timers.
	WorkerTick     time.Duration
	ReconcileEvery time.Duration
	// PendingGrace is how old an unfinished key creation or rotation must
	// be before the reconciler rolls it back (another replica may still be
	// finishing a younger one).
	PendingGrace time.Duration
	// LeaseDuration: how long a crashed replica's claim on a key blocks others.
	LeaseDuration time.Duration
	// DBTimeout bounds one database step of a request (service.Config).
	DBTimeout time.Duration
	// DestroyUnknownObjects lets the reconciler destroy token objects of
	// keys this database does not know (off: they are only reported).
	DestroyUnknownObjects bool
	// AWSRegion and AWSAccount name this endpoint in the AWS KMS protocol
	// (ARNs, the credential scope of signatures): aws.go.
	AWSRegion  string
	AWSAccount string

	// Secrets: never flags, never logged.
	PIN            string
	BootstrapToken string
}

// loadConfig reads flags, falling back to the environment, then defaults.
func loadConfig(args []string, getenv func(string) string) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("kmsd", flag.ContinueOnError)
	version := fs.Bool("version", false, "print the version, commit and Go version, and exit")
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&c.Listen, "listen", env("KMS_LISTEN", "127.0.0.1:8080"), "address to serve on (KMS_LISTEN)")
	fs.StringVar(&c.Module, "pkcs11-module", env("KMS_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so"), "PKCS#11 module path (KMS_PKCS11_MODULE)")
	fs.StringVar(&c.InitArgs, "pkcs11-init-args", env("KMS_PKCS11_INIT_ARGS", ""), "C_Initialize arguments, e.g. NSS softoken's configdir='sql:DIR' ... (KMS_PKCS11_INIT_ARGS)")
	fs.StringVar(&c.TokenLabel, "token-label", env("KMS_TOKEN_LABEL", "hsmkms"), "token label (KMS_TOKEN_LABEL)")
	fs.StringVar(&c.DB, "db", "", "sqlite:PATH or postgres:// URL (KMS_DB; default "+defaultDB+")")
	fs.StringVar(&c.TLSCert, "tls-cert", env("KMS_TLS_CERT", ""), "TLS certificate file (KMS_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", env("KMS_TLS_KEY", ""), "TLS key file (KMS_TLS_KEY)")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", env("KMS_TLS_CLIENT_CA", ""), "CA file for client certificates: mutual TLS (KMS_TLS_CLIENT_CA)")
	fs.StringVar(&c.ProvisionFile, "provision", env("KMS_PROVISION_FILE", ""), "YAML file of keys and aliases to create at start if absent (KMS_PROVISION_FILE)")
	audit := fs.String("audit", env("KMS_AUDIT", "on"), "on, or off only to measure what auditing costs (KMS_AUDIT)")
	fs.StringVar(&c.HSMProfile, "hsm-profile", env("KMS_HSM_PROFILE", "auto"), "vendor profile: "+strings.Join(hsm.ProfileNames, ", ")+"; auto picks it from the module's name (KMS_HSM_PROFILE)")
	fs.BoolVar(&c.TokenIV, "hsm-token-iv", env("KMS_HSM_TOKEN_IV", "") == "true",
		"the token generates each GCM IV, for HSMs in FIPS mode that refuse a caller's IV (KMS_HSM_TOKEN_IV=true)")
	fs.IntVar(&c.MaxSessions, "max-sessions", 0, "token sessions to pool (KMS_MAX_SESSIONS; default "+strconv.Itoa(hsm.DefaultMaxSessions)+")")
	maxConns := fs.String("max-connections", env("KMS_MAX_CONNECTIONS", ""), fmt.Sprintf("open client connections at most; more wait to be accepted (KMS_MAX_CONNECTIONS; default %d)", api.DefaultMaxConnections))
	fs.StringVar(&c.LogLevel, "log-level", env("KMS_LOG_LEVEL", "info"), "debug, info, warn or error (KMS_LOG_LEVEL)")
	tick := fs.String("worker-tick", env("KMS_WORKER_TICK", service.ShortDuration(service.DefaultWorkerTick)), "how often due rotations and deletions run (KMS_WORKER_TICK)")
	reconcile := fs.String("reconcile-every", env("KMS_RECONCILE_EVERY", service.ShortDuration(service.DefaultReconcileEvery)), "how often the reconciler runs (KMS_RECONCILE_EVERY)")
	lease := fs.String("lease-duration", env("KMS_LEASE_DURATION", service.ShortDuration(service.DefaultLeaseDuration)), "how long a crashed replica's claim on a key blocks the others (KMS_LEASE_DURATION)")
	dbTimeout := fs.String("db-timeout", env("KMS_DB_TIMEOUT", service.ShortDuration(service.DefaultDBTimeout)), "how long one database step of a request may take before it answers KeyUnavailableException (KMS_DB_TIMEOUT)")
	grace := fs.String("pending-grace", env("KMS_PENDING_GRACE", service.ShortDuration(service.DefaultPendingGrace)), "age after which an unfinished creation or rotation is rolled back (KMS_PENDING_GRACE)")
	fs.BoolVar(&c.DestroyUnknownObjects, "destroy-unknown-objects", env("KMS_DESTROY_UNKNOWN_OBJECTS", "") == "true",
		"let the reconciler destroy token objects of keys unknown to this database (KMS_DESTROY_UNKNOWN_OBJECTS)")
	authBurst := fs.String("auth-failure-burst", env("KMS_AUTH_FAILURE_BURST", ""), fmt.Sprintf("failed authentications a source address may have at once before 429 (KMS_AUTH_FAILURE_BURST; default %d)", api.DefaultAuthFailureBurst))
	authRate := fs.String("auth-failure-rate", env("KMS_AUTH_FAILURE_RATE", ""), fmt.Sprintf("failed authentications per second a source address regains (KMS_AUTH_FAILURE_RATE; default %g)", api.DefaultAuthFailureRate))
	minRot := fs.String("min-rotation-interval", env("KMS_MIN_ROTATION_INTERVAL", ""), "smallest rotation interval (KMS_MIN_ROTATION_INTERVAL; default "+service.ShortDuration(service.DefaultMinRotationInterval)+")")
	maxRot := fs.String("max-rotation-interval", env("KMS_MAX_ROTATION_INTERVAL", ""), "largest rotation interval (KMS_MAX_ROTATION_INTERVAL; default "+service.ShortDuration(service.DefaultMaxRotationInterval)+")")
	maxVersions := fs.String("max-versions-per-key", env("KMS_MAX_VERSIONS_PER_KEY", ""), "token objects one key may have (KMS_MAX_VERSIONS_PER_KEY; default "+strconv.Itoa(service.DefaultMaxVersionsPerKey)+")")
	awsFlags(fs, env, c)
	parseLifecycle := lifecycleFlags(fs, env, c)
	parseAuditSink := auditSinkFlags(fs, env, c)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := noPasswordInFlag(c.DB); err != nil {
		return nil, err
	}
	if c.DB == "" {
		c.DB = dbFromEnv(getenv)
	}
	if *version {
		return nil, errShowVersion
	}
	switch *audit {
	case "on":
		c.Audit = true
	case "off":
	default:
		return nil, fmt.Errorf("audit: %q is not on or off", *audit)
	}
	if c.MaxSessions == 0 {
		if v := getenv("KMS_MAX_SESSIONS"); v != "" {
			n, err := parseCount("KMS_MAX_SESSIONS", v, 1)
			if err != nil {
				return nil, err
			}
			c.MaxSessions = n
		}
	}
	for _, d := range []struct {
		name string
		val  string
		dst  *time.Duration
	}{{"worker-tick", *tick, &c.WorkerTick}, {"reconcile-every", *reconcile, &c.ReconcileEvery}, {"pending-grace", *grace, &c.PendingGrace}, {"lease-duration", *lease, &c.LeaseDuration}, {"db-timeout", *dbTimeout, &c.DBTimeout}} {
		v, err := time.ParseDuration(d.val)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%s: %q is not a positive duration", d.name, d.val)
		}
		*d.dst = v
	}
	for _, d := range []struct {
		name, val string
		dst       *time.Duration
	}{{"min-rotation-interval", *minRot, &c.MinRotationInterval}, {"max-rotation-interval", *maxRot, &c.MaxRotationInterval}} {
		if d.val == "" {
			continue
		}
		v, err := service.ParseDuration(d.val)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%s: %q is not a positive duration (e.g. 7d, 720h)", d.name, d.val)
		}
		*d.dst = v
	}
	if c.MinRotationInterval != 0 && c.MaxRotationInterval != 0 && c.MinRotationInterval > c.MaxRotationInterval {
		return nil, errors.New("min-rotation-interval is above max-rotation-interval")
	}
	if *authBurst != "" {
		var err error
		if c.AuthLimits.Burst, err = parseCount("auth-failure-burst", *authBurst, 1); err != nil {
			return nil, err
		}
	}
	if *authRate != "" {
		r, err := strconv.ParseFloat(*authRate, 64)
		if err != nil || !(r > 0) || math.IsInf(r, 0) {
			return nil, fmt.Errorf("auth-failure-rate: %q is not a positive number of failures per second", *authRate)
		}
		c.AuthLimits.Rate = r
	}
	if *maxConns != "" {
		var err error
		if c.MaxConnections, err = parseCount("max-connections", *maxConns, 1); err != nil {
			return nil, err
		}
	}
	if *maxVersions != "" {
		var err error
		if c.MaxVersionsPerKey, err = parseCount("max-versions-per-key", *maxVersions, 2); err != nil {
			return nil, err
		}
	}
	if err := parseLifecycle(); err != nil {
		return nil, err
	}
	if err := parseAuditSink(); err != nil {
		return nil, err
	}
	pin, err := secret(getenv, "KMS_PIN", "KMS_PIN_FILE")
	if err != nil {
		return nil, err
	}
	c.PIN = pin
	c.BootstrapToken = getenv("KMS_BOOTSTRAP_TOKEN")
	return c, c.Validate()
}

// errShowVersion is -version: run prints the version instead of starting.
var errShowVersion = errors.New("show the version")

// parseCount parses a whole number of at least min, strictly: "5x", " 5"
// or "5.0" are refused, not read as 5 (as fmt.Sscanf("%d") would).
func parseCount(name, v string, min int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		return 0, fmt.Errorf("%s: %q is not a whole number of at least %d", name, v, min)
	}
	return n, nil
}

// secret reads a secret from the variable name or the file named by fileVar.
func secret(getenv func(string) string, name, fileVar string) (string, error) {
	v, file := getenv(name), getenv(fileVar)
	switch {
	case v != "" && file != "":
		return "", fmt.Errorf("set %s or %s, not both", name, fileVar)
	case v != "":
		return v, nil
	case file != "":
		// A secret others can read is not a secret: refuse it before use.
		if err := checkSecretFile(fileVar, file); err != nil {
			return "", err
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: cannot read the file: %v", fileVar, errors.Unwrap(err))
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return "", nil
}

// Validate names the first bad field.
func (c *Config) Validate() error {
	if c.PIN == "" {
		return errors.New("no token PIN: set KMS_PIN or KMS_PIN_FILE")
	}
	if c.BootstrapToken != "" {
		if err := strongBootstrapToken(c.BootstrapToken); err != nil {
			return err
		}
	}
	if !strings.HasPrefix(c.Module, "/") {
		return fmt.Errorf("pkcs11-module: %q must be an absolute path", c.Module)
	}
	if c.TokenLabel == "" || len(c.TokenLabel) > 32 {
		return errors.New("token-label must be 1 to 32 characters")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls-cert and tls-key go together")
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		return errors.New("tls-client-ca needs tls-cert and tls-key: mutual TLS is TLS")
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("listen: %q is not host:port", c.Listen)
	}
	if c.TLSCert == "" && !isLoopback(host) {
		return fmt.Errorf("listen: plain HTTP is served on loopback only; set KMS_TLS_CERT and KMS_TLS_KEY to listen on %s", c.Listen)
	}
	if !slices.Contains(hsm.ProfileNames, c.HSMProfile) {
		return fmt.Errorf("hsm-profile: %q is not one of %s", c.HSMProfile, strings.Join(hsm.ProfileNames, ", "))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log-level: %q is not debug, info, warn or error", c.LogLevel)
	}
	if c.MaxSessions < 0 {
		return errors.New("max-sessions must be positive")
	}
	return c.validateAWS()
}

// Character variety a bootstrap token needs: it becomes the
// administrator's token, and an operator chose it.
const (
	minBootstrapDistinct = 10
	minBootstrapClasses  = 2
)

// strongBootstrapToken refuses a guessable KMS_BOOTSTRAP_TOKEN: too short,
// too few different characters ("aaaaaaaaaaaaaaaa"), or one kind of
// character only. Random output passes: openssl rand -hex 16, or
// -base64 24.
func strongBootstrapToken(tok string) error {
	distinct := map[rune]bool{}
	var lower, upper, digit, other bool
	for _, r := range tok {
		distinct[r] = true
		switch {
		case r >= 'a' && r <= 'z':
			lower = true
		case r >= 'A' && r <= 'Z':
			upper = true
		case r >= '0' && r <= '9':
			digit = true
		default:
			other = true
		}
	}
	classes := 0
	for _, b := range []bool{lower, upper, digit, other} {
		if b {
			classes++
		}
	}
	if len(tok) < service.MinBootstrapTokenLength || len(distinct) < minBootstrapDistinct || classes < minBootstrapClasses {
		return fmt.Errorf("KMS_BOOTSTRAP_TOKEN is too weak: use at least %d characters, %d of them different, of at least %d kinds "+
			"(lower case, upper case, digits, others), e.g. the output of 'openssl rand -hex 32'",
			service.MinBootstrapTokenLength, minBootstrapDistinct, minBootstrapClasses)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// defaultDB is the embedded default database.
const defaultDB = "sqlite:var/hsmkms.db"

// noPasswordInFlag refuses a -db value that carries a password: every
// user of the machine sees a process's arguments (ps, /proc/PID/cmdline).
func noPasswordInFlag(dsn string) error {
	if dsn == "" || strings.HasPrefix(dsn, "sqlite:") {
		return nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		// Do not echo it: it may hold a password.
		return errors.New("-db: not a valid URL; give the database URL in KMS_DB instead of a flag")
	}
	if _, has := u.User.Password(); has || u.Query().Has("password") {
		return errors.New("-db: a password in a flag is visible to every user in ps; set KMS_DB instead, " +
			"or keep the password in a PostgreSQL password file (PGPASSFILE, ~/.pgpass)")
	}
	return nil
}

// dbFromEnv is KMS_DB, or the default. The -db flag never shows it as its
// default: usage (-h, a bad flag) would print its password.
func dbFromEnv(getenv func(string) string) string {
	if v := getenv("KMS_DB"); v != "" {
		return v
	}
	return defaultDB
}
