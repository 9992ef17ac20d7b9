package main

import (
	"strings"
	"testing"
	"time"
)

// The on-demand quota (0: unlimited, which the service spells as a negative
// number) and the development window, which is refused without
// KMS_DEV_MODE=true and out of its range.
func TestLifecycleSettings(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		env      []string
		onDemand int
		window   time.Duration
		wantErr  string
	}{
		{name: "defaults"},
		{name: "quota", env: []string{"KMS_MAX_ON_DEMAND_ROTATIONS", "3"}, onDemand: 3},
		{name: "unlimited", env: []string{"KMS_MAX_ON_DEMAND_ROTATIONS", "0"}, onDemand: -1},
		{name: "flag wins", args: []string{"-max-on-demand-rotations", "5"}, env: []string{"KMS_MAX_ON_DEMAND_ROTATIONS", "3"}, onDemand: 5},
		{name: "negative quota", env: []string{"KMS_MAX_ON_DEMAND_ROTATIONS", "-1"}, wantErr: "max-on-demand-rotations"},
		{name: "not a number", env: []string{"KMS_MAX_ON_DEMAND_ROTATIONS", "ten"}, wantErr: "max-on-demand-rotations"},
		{name: "dev window", env: []string{"KMS_DEV_MODE", "true", "KMS_DEV_PENDING_WINDOW", "2m"}, window: 2 * time.Minute},
		{name: "dev window without dev mode", env: []string{"KMS_DEV_PENDING_WINDOW", "2m"}, wantErr: "KMS_DEV_MODE=true"},
		{name: "dev mode not true", env: []string{"KMS_DEV_MODE", "yes", "KMS_DEV_PENDING_WINDOW", "2m"}, wantErr: "KMS_DEV_MODE=true"},
		{name: "dev window of 7 days", env: []string{"KMS_DEV_MODE", "true", "KMS_DEV_PENDING_WINDOW", "168h"}, wantErr: "dev-pending-window"},
		{name: "dev window too short", env: []string{"KMS_DEV_MODE", "true", "KMS_DEV_PENDING_WINDOW", "10ms"}, wantErr: "dev-pending-window"},
		{name: "dev window in days", env: []string{"KMS_DEV_MODE", "true", "KMS_DEV_PENDING_WINDOW", "1d"}, wantErr: "dev-pending-window"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(tc.args, envOf(tc.env...))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || c.MaxOnDemandRotations != tc.onDemand || c.DevPendingWindow != tc.window {
				t.Fatalf("%v: on-demand %d, window %v; want %d, %v", err, c.MaxOnDemandRotations, c.DevPendingWindow, tc.onDemand, tc.window)
			}
		})
	}
}
