package service

import (
	"strconv"
	"strings"
	"time"
)

// ParseDuration reads a duration in Go syntax plus a "d" (24 h) unit:
// "90d", "720h", "604800s", "1d12h".
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	var total time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		days, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || days < 0 || days > 100000 {
			return 0, Validationf("duration %q: use e.g. \"90d\", \"720h\" or \"604800s\"", truncate(orig, 40))
		}
		total = time.Duration(days) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return total, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, Validationf("duration %q: use e.g. \"90d\", \"720h\" or \"604800s\"", truncate(orig, 40))
	}
	return total + d, nil
}

// ShortDuration writes d as ParseDuration reads it, shortest first: "7d",
// "5m", "10s", "1m30s" (for help texts and messages).
func ShortDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// FormatDuration writes a duration as whole seconds, e.g. "7776000s".
func FormatDuration(d time.Duration) string {
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}
