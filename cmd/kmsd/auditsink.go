package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/hsmkms/hsmkms/auditexport"
)

// The audit export's settings (docs/operations.md, "Audit export").

// auditSinkConfig is the export part of Config.
type auditSinkConfig struct {
	// AuditSink names the sink (auditexport.ParseSpec); "" exports nothing.
	AuditSink        string
	AuditSinkSpec    auditexport.Spec
	AuditSinkFailure auditexport.Policy
	AuditSinkQueue   int
	// AuditSinkState remembers the last record exported (default: next
	// to a file sink; none for stdout and syslog).
	AuditSinkState string
}

func auditSinkFlags(fs *flag.FlagSet, env func(name, def string) string, c *Config) func() error {
	fs.StringVar(&c.AuditSink, "audit-sink", env("KMS_AUDIT_SINK", ""),
		"stream every audit record, once durable, as a JSON line to file:/path, stdout, syslog or syslog:<unix|unixgram|udp|tcp>://address; empty: none (KMS_AUDIT_SINK)")
	failure := fs.String("audit-sink-failure", env("KMS_AUDIT_SINK_FAILURE", string(auditexport.DefaultPolicy)),
		"when the audit sink does not take records: block (requests wait once the queue is full, then fail 503) or drop (records are left out of the export and counted) (KMS_AUDIT_SINK_FAILURE)")
	queue := fs.String("audit-sink-queue", env("KMS_AUDIT_SINK_QUEUE", ""),
		fmt.Sprintf("audit records durable but not yet exported, at most (KMS_AUDIT_SINK_QUEUE; default %d)", auditexport.DefaultQueue))
	fs.StringVar(&c.AuditSinkState, "audit-sink-state", env("KMS_AUDIT_SINK_STATE", ""),
		"file remembering the last record exported, so that a restart resumes after it (KMS_AUDIT_SINK_STATE; default: the sink file's path with .state; none for stdout and syslog)")
	return func() error {
		p, err := auditexport.ParsePolicy(*failure)
		if err != nil {
			return fmt.Errorf("audit-sink-failure: %v", err)
		}
		c.AuditSinkFailure = p
		c.AuditSinkQueue = auditexport.DefaultQueue
		if *queue != "" {
			if c.AuditSinkQueue, err = parseCount("audit-sink-queue", *queue, 1); err != nil {
				return err
			}
		}
		if c.AuditSink == "" {
			if c.AuditSinkState != "" {
				return fmt.Errorf("audit-sink-state is set without audit-sink")
			}
			return nil
		}
		if c.AuditSinkSpec, err = auditexport.ParseSpec(c.AuditSink); err != nil {
			return fmt.Errorf("audit-sink: %v", err)
		}
		if !c.Audit {
			return fmt.Errorf("audit-sink: auditing is off (KMS_AUDIT=off): there is nothing to export")
		}
		if c.AuditSinkState == "" {
			c.AuditSinkState = c.AuditSinkSpec.DefaultState()
		}
		return nil
	}
}

// openAuditSink opens the configured sink, or returns nil for none: before
// the token or the database, so that a path kmsd cannot write is reported
// alone.
func openAuditSink(cfg *Config) (auditexport.Sink, error) {
	if cfg.AuditSink == "" {
		return nil, nil
	}
	if cfg.AuditSinkSpec.Kind() == "stdout" {
		// A reader of kmsd's output that goes away must cost the export
		// its records (a write error, as the policy says), not end kmsd.
		signal.Ignore(syscall.SIGPIPE)
	}
	sink, err := cfg.AuditSinkSpec.Open()
	if err != nil {
		return nil, fmt.Errorf("audit-sink: %v", err)
	}
	if err := auditexport.CheckState(cfg.AuditSinkState); err != nil {
		sink.Close()
		return nil, err
	}
	return sink, nil
}

// startAuditExport starts exporting the chain of src into sink.
func startAuditExport(ctx context.Context, cfg *Config, sink auditexport.Sink, src auditexport.Source, log *slog.Logger) (*auditexport.Exporter, error) {
	ex, err := auditexport.Start(ctx, auditexport.Config{Sink: sink, Source: src, Policy: cfg.AuditSinkFailure,
		Queue: cfg.AuditSinkQueue, StateFile: cfg.AuditSinkState, Wait: 2 * cfg.DBTimeout, Logger: log})
	if err != nil {
		return nil, err
	}
	log.Info("audit export on", "sink", sink.String(), "failure", string(cfg.AuditSinkFailure),
		"queue", strconv.Itoa(cfg.AuditSinkQueue), "state", cfg.AuditSinkState)
	return ex, nil
}
