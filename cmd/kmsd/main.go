// Command kmsd is the hsmkms server: it opens the token and the database,
// serves the REST API (docs/API.md) and runs the background workers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/buildinfo"
	"github.com/hsmkms/hsmkms/internal/logbuf"
	"github.com/hsmkms/hsmkms/metrics"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/store"
)

// gcPercent is kmsd's GOGC when the environment sets none. kmsd's live
// heap is small (tens of MB) and every request allocates: collecting at 5x
// the live heap rather than 2x costs ~15 MB of memory and saves about 5% of
// kmsd's CPU per request under load (docs/benchmarks.md).
const gcPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// After the first signal, a second one ends kmsd at once (the default
	// action), should the graceful shutdown hang.
	go func() { <-ctx.Done(); stop() }()
	if err := run(ctx, os.Args[1:], os.Getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0) // -h: the usage is printed, as asked
		}
		// One line, whatever the driver's message looks like.
		fmt.Fprintln(os.Stderr, "kmsd:", strings.Join(strings.Fields(err.Error()), " "))
		os.Exit(1)
	}
}

// run starts kmsd and serves until ctx is cancelled. Start-up failures
// (config, token, PIN, database) return one clear error before listening.
func run(ctx context.Context, args []string, getenv func(string) string) error {
	if len(args) > 0 && args[0] == "init" {
		return runInit(ctx, args[1:], getenv, os.Stdout)
	}
	cfg, err := loadConfig(args, getenv)
	if errors.Is(err, errShowVersion) {
		fmt.Println(buildinfo.Get().String("kmsd"))
		return nil
	}
	if err != nil {
		return err
	}
	// Request lines are batched into few writes; the deferred Close writes
	// what is left on every way out of run (a signal, an error, a panic
	// of this goroutine).
	logs := logbuf.New(os.Stderr, 0, 0)
	defer logs.Close()
	log := newLogger(cfg.LogLevel, logs)
	// TLS material is read before the token or the database is touched:
	// a wrong path is a configuration error, reported alone.
	tlsConfig, certs, err := serverTLSConfig(cfg, log)
	if err != nil {
		return err
	}
	// SIGHUP reloads the TLS certificate (and, without TLS, is only logged:
	// its default action would end kmsd).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	hupCtx, endHUP := context.WithCancel(ctx)
	defer endHUP()
	sink, err := openAuditSink(cfg)
	if err != nil {
		return err
	}
	if sink != nil {
		// Closed by the exporter once it runs; until then, here.
		defer func() {
			if sink != nil {
				sink.Close()
			}
		}()
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
	db.SetTimeout(cfg.DBTimeout) // a hung database fails requests, never holds them

	// Metrics wrap the token the service uses and read the service at scrape time.
	mx := metrics.New(metrics.Config{Logger: log})
	// The export reads the chain from the database: it starts before the
	// service and closes after it (the deferred closes run in reverse),
	// so that the last records and the final seal are exported too.
	var export service.AuditExport
	var reopen func() error
	if sink != nil {
		ex, err := startAuditExport(ctx, cfg, sink, db, log)
		if err != nil {
			return err
		}
		sink = nil // the exporter's now
		defer ex.Close(10 * time.Second)
		mx.WatchAuditExport(ex)
		export, reopen = ex, ex.Reopen
	}
	// SIGHUP: the TLS certificate and the audit export's file, in one handler.
	go reloadOnHUP(hupCtx, hup, log, certs, reopen)
	svc := service.New(db, mx.Token(tok), service.Config{Logger: log, MinRotationInterval: cfg.MinRotationInterval,
		MaxRotationInterval: cfg.MaxRotationInterval, MaxVersionsPerKey: cfg.MaxVersionsPerKey,
		MaxOnDemandRotations: cfg.MaxOnDemandRotations, DevPendingWindow: cfg.DevPendingWindow,
		DestroyUnknownObjects: cfg.DestroyUnknownObjects, DisableAudit: !cfg.Audit, PendingGrace: cfg.PendingGrace,
		LeaseDuration: cfg.LeaseDuration, DBTimeout: cfg.DBTimeout, AuditExport: export})
	// Runs after the HTTP server drained and before the database closes:
	// every queued audit record is written.
	defer svc.Close()
	warnDev(cfg, log)
	if !cfg.Audit {
		log.Warn("auditing is OFF (KMS_AUDIT=off): for measuring its cost only, never in a deployment")
	}
	if err := bootstrap(ctx, svc, cfg.BootstrapToken, log); err != nil {
		return err
	}
	if err := provision(ctx, svc, cfg.ProvisionFile, log); err != nil {
		return err
	}
	workerCtx, stopWorker := context.WithCancel(context.Background())
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		svc.Worker.RunWorker(workerCtx, service.WorkerConfig{Tick: cfg.WorkerTick, ReconcileEvery: cfg.ReconcileEvery})
	}()
	defer func() { stopWorker(); <-workerDone }()
	mx.WatchService(svc)
	e := api.New(api.Config{
		Service: svc,
		Logger:  log,
		Extra:   mx.Register, // GET /metrics, no bearer token (docs/API.md)
		Observe: mx.Observe,
		// POST /: the AWS KMS protocol (docs/aws-compat.md).
		Protocols:  []api.Protocol{awsProtocol(cfg, svc)},
		AuthLimits: cfg.AuthLimits,
	})

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Read, write and idle timeouts, a header cap and a connection cap:
	// slow or idle clients cannot hold the server (docs/API.md, "Limits").
	limits := api.Limits{MaxConnections: cfg.MaxConnections}
	srv := api.NewHTTPServer(e, limits)
	srv.TLSConfig = tlsConfig
	ln = api.LimitListener(ln, limits)
	errc := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			errc <- srv.ServeTLS(ln, "", "") // the certificate is in TLSConfig
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	// One scan of the token instead of one search per key on first use
	// (a search costs in proportion to the objects in the token). It runs
	// once kmsd serves, not before (seconds with 10,000 keys); a request
	// meanwhile waits for it or searches as before, and a failure only
	// leaves the searches to the request path.
	// The readiness probe's key is found first (one search), so that
	// /readyz answers during the scan instead of waiting for its lock.
	_ = tok.Ping(ctx)
	go func(start time.Time) {
		if n, err := tok.Warm(ctx); err != nil {
			if ctx.Err() == nil {
				log.Warn("token: handle cache not warmed; keys are found on first use", "err", err)
			}
		} else {
			log.Info("token: handle cache warmed", "handles", n, "ms", time.Since(start).Milliseconds())
		}
	}(time.Now())
	log.Info("kmsd serving", "addr", ln.Addr().String(), "tls", cfg.TLSCert != "", "token", cfg.TokenLabel, "db", dbKind(cfg.DB))

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Shutdown order: stop HTTP and drain in-flight requests, then the
	// deferred closes release the token and the database.
	log.Info("kmsd shutting down")
	// Longer than a request may take (30 s), so that in-flight requests
	// finish before the token and the database close under them.
	sctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// profile picks the vendor profile (hsm.SelectProfile: auto names it from
// the module), with the token's own GCM IVs when configured. The name was
// validated with the configuration.
func profile(cfg *Config) hsm.Profile {
	p, _ := hsm.SelectProfile(cfg.HSMProfile, cfg.Module)
	p.TokenGeneratesIV = cfg.TokenIV
	return p
}

// dbKind names the database without its credentials.
func dbKind(dsn string) string {
	if strings.HasPrefix(dsn, "sqlite:") {
		return dsn
	}
	return "postgres"
}

// reloadOnHUP reloads certs and reopens the audit export's sink (reopen)
// at each signal on hup until ctx ends (run returns): signal.Stop does not
// close the channel, so ranging over it would never end. Either may be nil.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, log *slog.Logger, certs *certReloader, reopen func() error) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if certs == nil && reopen == nil {
				log.Info("SIGHUP: no TLS certificate to reload, no audit file to reopen")
				continue
			}
			if certs != nil {
				_ = certs.Reload()
			}
			if reopen != nil {
				_ = reopen() // logged by the exporter
			}
		}
	}
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// openToken opens and logs in to the token cfg names.
func openToken(ctx context.Context, cfg *Config) (*hsm.PKCS11, error) {
	tok, err := hsm.Open(ctx, hsm.Config{
		Module: cfg.Module, InitArgs: cfg.InitArgs, TokenLabel: cfg.TokenLabel, PIN: cfg.PIN,
		MaxSessions: cfg.MaxSessions, Profile: profile(cfg),
	})
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	return tok, nil
}
