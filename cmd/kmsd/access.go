package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/store"
)

// bootstrap makes sure someone can call the API: with no principal in the
// database, KMS_BOOTSTRAP_TOKEN becomes the administrator's token; without
// it kmsd refuses to start rather than serve an API nobody can use.
func bootstrap(ctx context.Context, svc *service.Service, token string, log *slog.Logger) error {
	if err := svc.Access.PrepareBearerTokens(ctx); err != nil {
		return fmt.Errorf("bearer tokens: %w", err)
	}
	if token == "" {
		need, err := svc.Access.NeedsBootstrap(ctx)
		if err != nil {
			return fmt.Errorf("database: %w", err)
		}
		if need {
			return errors.New("no principal exists yet: set KMS_BOOTSTRAP_TOKEN (the administrator's token) or run 'kmsd init'")
		}
		return nil
	}
	need, err := svc.Access.NeedsBootstrap(ctx)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if !need {
		// The variable only ever sets up an empty database. Say so, and
		// whether the value still opens the administrator's account.
		if _, err := svc.Access.Authenticate(ctx, token); err == nil {
			log.Warn("KMS_BOOTSTRAP_TOKEN is set but principals exist: it creates nothing, and it is still a working " +
				"administrator token; issue another token, revoke this one and unset the variable (docs/access.md)")
		} else {
			log.Warn("KMS_BOOTSTRAP_TOKEN is set but principals exist: it is ignored (it is not a working token); unset it")
		}
		return nil
	}
	made, err := svc.Access.Bootstrap(service.AsSystem(ctx), token)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if made {
		log.Info("created the administrator principal from KMS_BOOTSTRAP_TOKEN", "principal", service.AdminPrincipal)
	}
	return nil
}

// runInit is `kmsd init`: on a database with no principal, it creates the
// administrator and prints its bearer token, once. It needs the database
// and the token (the same configuration as kmsd): what the database keeps
// of the token is a MAC only the token can make.
func runInit(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	cfg, err := loadConfig(args, getenv)
	if err != nil {
		return err
	}
	tok, err := openToken(ctx, cfg)
	if err != nil {
		return err
	}
	defer tok.Close()
	db, err := store.Open(ctx, cfg.DB)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer db.Close()
	svc := service.New(db, tok, service.Config{Logger: newLogger(cfg.LogLevel)})
	defer svc.Close()
	token, err := svc.Access.InitAdmin(service.AsSystem(ctx))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "created principal %q; its bearer token (shown once, stored only as a MAC made in the token):\n%s\n",
		service.AdminPrincipal, token)
	return nil
}

// aeadSuites are the TLS 1.2 cipher suites kmsd offers: forward secret
// (ECDHE) and AEAD only, no CBC. TLS 1.3's suites are all AEAD and not
// configurable.
var aeadSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// serverTLSConfig loads the server certificate and, when given, the CA
// for client certificates; requests without one still authenticate with a
// bearer token. Nil means plain HTTP (loopback only, checked by loadConfig).
//
// The certificate comes from a certReloader, which replaces it when the
// files change or on SIGHUP; the client CA is read once.
func serverTLSConfig(cfg *Config, log *slog.Logger) (*tls.Config, *certReloader, error) {
	if cfg.TLSCert == "" {
		return nil, nil, nil
	}
	certs, err := newCertReloader(cfg.TLSCert, cfg.TLSKey, log)
	if err != nil {
		return nil, nil, err
	}
	tc := &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12, CipherSuites: aeadSuites}
	if cfg.TLSClientCA == "" {
		return tc, certs, nil
	}
	pem, err := os.ReadFile(cfg.TLSClientCA)
	if err != nil {
		return nil, nil, fmt.Errorf("tls-client-ca: cannot read %s: %v", cfg.TLSClientCA, errors.Unwrap(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("tls-client-ca: %s holds no PEM certificate", cfg.TLSClientCA)
	}
	tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
	return tc, certs, nil
}
