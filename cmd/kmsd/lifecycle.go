package main

import (
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

// Settings of the key lifecycle: the on-demand rotation quota and the
// development window of deletions (API.md, "Running the server").

// maxDevPendingWindow is the longest KMS_DEV_PENDING_WINDOW: shorter than
// the production minimum of 7 days, or it would be no development setting.
const maxDevPendingWindow = service.MinPendingWindowDays*24*time.Hour - time.Second

// lifecycleFlags declares the settings; the returned func parses them once
// the flags are parsed.
func lifecycleFlags(fs *flag.FlagSet, env func(name, def string) string, c *Config) func() error {
	maxOnDemand := fs.String("max-on-demand-rotations", env("KMS_MAX_ON_DEMAND_ROTATIONS", ""),
		fmt.Sprintf("on-demand rotations each key may have in its life; 0: unlimited; automatic ones do not count (KMS_MAX_ON_DEMAND_ROTATIONS; default %d)",
			service.DefaultMaxOnDemandRotations))
	fs.BoolVar(&c.DevMode, "dev-mode", env("KMS_DEV_MODE", "") == "true",
		"allow development settings (KMS_DEV_MODE=true); never in a deployment")
	devWindow := fs.String("dev-pending-window", env("KMS_DEV_PENDING_WINDOW", ""),
		"development only, needs KMS_DEV_MODE=true: every key deletion and version destruction waits this long (e.g. 2m) instead of its 7 to 30 days (KMS_DEV_PENDING_WINDOW)")
	return func() error {
		if *maxOnDemand != "" {
			n, err := strconv.Atoi(*maxOnDemand)
			if err != nil || n < 0 {
				return fmt.Errorf("max-on-demand-rotations: %q is not a whole number of at least 0 (0: unlimited)", *maxOnDemand)
			}
			c.MaxOnDemandRotations = n
			if n == 0 {
				c.MaxOnDemandRotations = -1 // the service's "unlimited"
			}
		}
		if *devWindow != "" {
			d, err := time.ParseDuration(*devWindow)
			if err != nil || d < time.Second || d > maxDevPendingWindow {
				return fmt.Errorf("dev-pending-window: %q is not a duration from 1s to under 7 days (e.g. 2m)", *devWindow)
			}
			if !c.DevMode {
				return fmt.Errorf("dev-pending-window (KMS_DEV_PENDING_WINDOW) is a development setting: it needs KMS_DEV_MODE=true")
			}
			c.DevPendingWindow = d
		}
		return nil
	}
}

// warnDev logs, at start, every development setting in force.
func warnDev(cfg *Config, log *slog.Logger) {
	if cfg.DevPendingWindow > 0 {
		log.Warn("DEVELOPMENT: every key deletion and version destruction waits KMS_DEV_PENDING_WINDOW, not 7 to 30 days; never in a deployment",
			"window", cfg.DevPendingWindow.String())
	} else if cfg.DevMode {
		log.Warn("DEVELOPMENT mode (KMS_DEV_MODE=true): development settings are allowed; never in a deployment")
	}
}
