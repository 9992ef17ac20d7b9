package main

import (
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/auditexport"
)

func envOf(kv ...string) func(string) string {
	m := map[string]string{"KMS_PIN": "1234"}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// Every setting is read from its variable, flags win, and bad values are
// refused with a message naming the setting.
func TestLoadConfig(t *testing.T) {
	c, err := loadConfig(nil, envOf("KMS_MIN_ROTATION_INTERVAL", "1d", "KMS_MAX_ROTATION_INTERVAL", "30d",
		"KMS_MAX_VERSIONS_PER_KEY", "5", "KMS_LEASE_DURATION", "10s", "KMS_PENDING_GRACE", "2m",
		"KMS_AUDIT", "off", "KMS_PROVISION_FILE", "keys.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.MinRotationInterval != 24*time.Hour || c.MaxRotationInterval != 30*24*time.Hour || c.MaxVersionsPerKey != 5 ||
		c.LeaseDuration != 10*time.Second || c.PendingGrace != 2*time.Minute || c.Audit || c.ProvisionFile != "keys.yaml" {
		t.Errorf("config from the environment: %+v", c)
	}
	if c, err := loadConfig([]string{"-max-versions-per-key", "7"}, envOf("KMS_MAX_VERSIONS_PER_KEY", "5")); err != nil || c.MaxVersionsPerKey != 7 {
		t.Errorf("a flag must win over its variable: %v %+v", err, c)
	}
	if c, err := loadConfig(nil, envOf("KMS_MAX_CONNECTIONS", "64")); err != nil || c.MaxConnections != 64 {
		t.Errorf("KMS_MAX_CONNECTIONS: %v %+v", err, c)
	}
	if c, err := loadConfig(nil, envOf("KMS_AUTH_FAILURE_BURST", "5", "KMS_AUTH_FAILURE_RATE", "0.5")); err != nil ||
		c.AuthLimits.Burst != 5 || c.AuthLimits.Rate != 0.5 {
		t.Errorf("KMS_AUTH_FAILURE_*: %v %+v", err, c)
	}
	if c, err := loadConfig(nil, envOf("KMS_DB", "postgres://db")); err != nil || c.DB != "postgres://db" {
		t.Errorf("KMS_DB: %v %+v", err, c)
	}
	if c, err := loadConfig([]string{"-db", "sqlite:x.db"}, envOf("KMS_DB", "postgres://db")); err != nil || c.DB != "sqlite:x.db" {
		t.Errorf("-db must win over KMS_DB: %v %+v", err, c)
	}
	// NSS softoken: its database in the C_Initialize arguments, its profile
	// picked by auto from the module's name.
	nss := "configdir='sql:/var/lib/hsmkms/nssdb' certPrefix='' keyPrefix='' secmod='secmod.db' flags='' dbTokenDescription='hsmkms'"
	if c, err := loadConfig(nil, envOf("KMS_PKCS11_MODULE", "/usr/lib/x86_64-linux-gnu/libsoftokn3.so", "KMS_PKCS11_INIT_ARGS", nss)); err != nil ||
		c.InitArgs != nss || profile(c).Name != "nss" {
		t.Errorf("NSS softoken: %v %+v", err, c)
	}
	if c, err := loadConfig([]string{"-hsm-profile", "softhsm"}, envOf("KMS_PKCS11_MODULE", "/usr/lib/x86_64-linux-gnu/libsoftokn3.so")); err != nil ||
		profile(c).Name != "softhsm2" || c.InitArgs != "" {
		t.Errorf("-hsm-profile softhsm: %v %+v", err, c)
	}
	if c, err := loadConfig(nil, envOf()); err != nil || !c.Audit || c.LeaseDuration != time.Minute || c.DB != "sqlite:var/hsmkms.db" {
		t.Errorf("defaults: %v %+v", err, c)
	}
	if c, err := loadConfig(nil, envOf()); err != nil || c.AuditSink != "" || c.AuditSinkFailure != auditexport.Drop ||
		c.AuditSinkQueue != auditexport.DefaultQueue || c.AuditSinkState != "" {
		t.Errorf("audit export defaults: %v %+v", err, c)
	}
	if c, err := loadConfig(nil, envOf("KMS_AUDIT_SINK", "file:/var/log/hsmkms/audit.log")); err != nil ||
		c.AuditSinkState != "/var/log/hsmkms/audit.log.state" {
		t.Errorf("the file sink's state file: %v %+v", err, c)
	}
	if c, err := loadConfig([]string{"-audit-sink", "syslog:udp://127.0.0.1:514", "-audit-sink-failure", "block", "-audit-sink-queue", "50"},
		envOf("KMS_AUDIT_SINK", "stdout")); err != nil || c.AuditSink != "syslog:udp://127.0.0.1:514" ||
		c.AuditSinkFailure != auditexport.Block || c.AuditSinkQueue != 50 || c.AuditSinkState != "" {
		t.Errorf("audit export flags: %v %+v", err, c)
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"KMS_AUDIT_SINK", "kafka:x"}, "audit-sink"},
		{[]string{"KMS_AUDIT_SINK", "syslog:udp://"}, "no address"},
		{[]string{"KMS_AUDIT_SINK", "stdout", "KMS_AUDIT_SINK_FAILURE", "Block"}, "audit-sink-failure"},
		{[]string{"KMS_AUDIT_SINK", "stdout", "KMS_AUDIT_SINK_QUEUE", "10k"}, "audit-sink-queue"},
		{[]string{"KMS_AUDIT_SINK_STATE", "/tmp/x.state"}, "without audit-sink"},
		{[]string{"KMS_MIN_ROTATION_INTERVAL", "soon"}, "min-rotation-interval"},
		{[]string{"KMS_MAX_ROTATION_INTERVAL", "-1d"}, "max-rotation-interval"},
		{[]string{"KMS_MIN_ROTATION_INTERVAL", "30d", "KMS_MAX_ROTATION_INTERVAL", "7d"}, "above"},
		{[]string{"KMS_MAX_VERSIONS_PER_KEY", "1"}, "max-versions-per-key"},
		{[]string{"KMS_LEASE_DURATION", "0s"}, "lease-duration"},
		{[]string{"KMS_AUDIT", "maybe"}, "audit"},
		{[]string{"KMS_MAX_CONNECTIONS", "0"}, "max-connections"},
		{[]string{"KMS_MAX_CONNECTIONS", "many"}, "max-connections"},
		{[]string{"KMS_AUTH_FAILURE_BURST", "0"}, "auth-failure-burst"},
		{[]string{"KMS_AUTH_FAILURE_RATE", "0"}, "auth-failure-rate"},
		{[]string{"KMS_AUTH_FAILURE_RATE", "NaN"}, "auth-failure-rate"},
		{[]string{"KMS_AUTH_FAILURE_RATE", "fast"}, "auth-failure-rate"},
		{[]string{"KMS_BOOTSTRAP_TOKEN", "short"}, "KMS_BOOTSTRAP_TOKEN"},
		{[]string{"KMS_TLS_CLIENT_CA", "/ca.pem"}, "tls-client-ca"},
		{[]string{"KMS_HSM_PROFILE", "luna"}, "hsm-profile"},
	} {
		_, err := loadConfig(nil, envOf(tc.env...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %s", tc.env, err, tc.want)
		}
	}
}

// Integer settings are whole numbers, parsed strictly: "5x" is refused, not
// read as 5 (fmt.Sscanf("%d") would); flags too.
func TestStrictIntegers(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  []string
		want string // "" means accepted
	}{
		{nil, []string{"KMS_MAX_SESSIONS", "8"}, ""},
		{nil, []string{"KMS_MAX_VERSIONS_PER_KEY", "5"}, ""},
		{nil, []string{"KMS_MAX_VERSIONS_PER_KEY", "5x"}, `max-versions-per-key: "5x" is not a whole number`},
		{nil, []string{"KMS_MAX_VERSIONS_PER_KEY", "5.0"}, "max-versions-per-key"},
		{nil, []string{"KMS_MAX_VERSIONS_PER_KEY", " 5"}, "max-versions-per-key"},
		{nil, []string{"KMS_MAX_SESSIONS", "5x"}, `KMS_MAX_SESSIONS: "5x" is not a whole number`},
		{nil, []string{"KMS_MAX_SESSIONS", "0x10"}, "KMS_MAX_SESSIONS"},
		{nil, []string{"KMS_MAX_SESSIONS", "0"}, "KMS_MAX_SESSIONS"},
		{nil, []string{"KMS_MAX_SESSIONS", "-3"}, "KMS_MAX_SESSIONS"},
		{[]string{"-max-versions-per-key", "3x"}, nil, "max-versions-per-key"},
		{[]string{"-max-sessions", "4x"}, nil, "max-sessions"},
	} {
		c, err := loadConfig(tc.args, envOf(tc.env...))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v %v: %v", tc.args, tc.env, err)
		case tc.want == "" && c.MaxSessions != 8 && c.MaxVersionsPerKey != 5:
			t.Errorf("%v %v: read as %+v", tc.args, tc.env, c)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v %v: %v, want an error mentioning %q", tc.args, tc.env, err, tc.want)
		}
	}
}
