// Command kms-k8s-plugin is a Kubernetes KMS v2 plugin: the kube-apiserver
// calls it on a unix socket (gRPC, k8s.io/kms/apis/v2) to encrypt and
// decrypt its data encryption keys, and it has kmsd do that with an HSM-held
// key. docs/kubernetes.md says how to deploy it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hsmkms/hsmkms/client"
	"google.golang.org/grpc"
	kmsapi "k8s.io/kms/apis/v2"
	kmsservice "k8s.io/kms/pkg/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// A second signal ends the plugin at once, should the drain hang.
	go func() { <-ctx.Done(); stop() }()
	os.Exit(run(ctx, os.Args[1:], os.Stderr, os.Getenv))
}

// run serves until ctx ends and returns the exit code: 0 after a clean
// stop (or -h), 2 for a bad command line, 1 for anything else. Errors
// before serving are one line on stderr; later events are JSON logs.
func run(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) int {
	fail := func(code int, err error) int {
		fmt.Fprintln(stderr, "kms-k8s-plugin:", strings.Join(strings.Fields(err.Error()), " "))
		return code
	}
	cfg, err := parseConfig(args, stderr, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return fail(2, err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(getenv("KMS_LOG_LEVEL"))); err != nil {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	hc, err := cfg.httpClient()
	if err != nil {
		return fail(1, err)
	}
	newClient := func() (*client.Client, error) {
		tok, err := cfg.token()
		return client.New(cfg.addr, tok, hc), err
	}
	if _, err := newClient(); err != nil {
		return fail(1, err)
	}
	p := &plugin{
		key:    cfg.key,
		client: newClient,
		timeout: func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, cfg.timeout)
		},
		log: log,
	}
	if err := describeKey(ctx, p); err != nil {
		return fail(1, err)
	}
	ln, err := listenUnix(cfg.listen)
	if err != nil {
		return fail(1, err)
	}
	defer ln.Close() // removes the socket
	gs := grpc.NewServer()
	kmsapi.RegisterKeyManagementServiceServer(gs, kmsservice.NewGRPCService(cfg.listen, cfg.timeout, p))
	served := make(chan error, 1)
	go func() { served <- gs.Serve(ln) }()
	log.Info("serving KMS v2", "listen", cfg.listen, "addr", cfg.addr, "key", cfg.key)

	select {
	case err := <-served:
		log.Error("serving stopped", "error", err.Error())
		return 1
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(shutdownGrace):
		gs.Stop()
	}
	log.Info("stopped", "listen", cfg.listen)
	return 0
}

// describeKey checks the key once at start. A wrong token, a missing
// permission or an unknown key stops the plugin with one line (the static
// pod restarts it, the message in its log); kmsd not answering yet does
// not: the plugin serves, and Status says "not ok" until kmsd is back.
func describeKey(ctx context.Context, p *plugin) error {
	c, err := p.client()
	if err != nil {
		return err
	}
	cctx, cancel := p.timeout(ctx)
	defer cancel()
	k, err := c.DescribeKey(cctx, p.key)
	var e *client.Error
	switch {
	case errors.As(err, &e) && (e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden || e.Status == http.StatusNotFound):
		return fmt.Errorf("-key %s: %w", p.key, err)
	case err != nil:
		p.log.Warn("kmsd not reachable at start; serving, Status reports not ok until it is", "key", p.key, "error", err.Error())
		return nil
	}
	p.log.Info("key", "key", p.key, "key_id", k.KeyID, "key_state", k.KeyState,
		"primary_key_version", k.PrimaryKeyVersion, "automatic_rotation", k.AutomaticRotation, "rotation_interval", k.RotationInterval)
	if k.KeyState != "Enabled" {
		p.log.Warn("the key is not Enabled: Status reports not ok until it is", "key", p.key, "key_state", k.KeyState)
	}
	return nil
}
