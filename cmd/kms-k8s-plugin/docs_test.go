package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/client"
	"go.yaml.in/yaml/v3"
)

// fenced returns the code blocks of docs/kubernetes.md in language lang.
func fenced(t *testing.T, lang string) []string {
	t.Helper()
	md, err := os.ReadFile("../../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	rest := string(md)
	for {
		_, after, ok := strings.Cut(rest, "```"+lang+"\n")
		if !ok {
			return blocks
		}
		block, tail, ok := strings.Cut(after, "```")
		if !ok {
			t.Fatalf("unclosed %s block", lang)
		}
		blocks, rest = append(blocks, block), tail
	}
}

// documentedPolicy is the policy of docs/kubernetes.md for keyID: every
// test's plugin principal has exactly it.
func documentedPolicy(t *testing.T, keyID string) client.PolicyDocument {
	t.Helper()
	blocks := fenced(t, "json")
	if len(blocks) != 1 {
		t.Fatalf("docs/kubernetes.md has %d JSON blocks, want the policy alone", len(blocks))
	}
	var doc client.PolicyDocument
	dec := json.NewDecoder(strings.NewReader(strings.ReplaceAll(blocks[0], "KEY_ID", keyID)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("the documented policy: %v", err)
	}
	return doc
}

// The documented static pod's command line is one the plugin accepts, and
// the documented EncryptionConfiguration points at its socket with a
// timeout above the plugin's.
func TestDocumentedDeployment(t *testing.T) {
	var pod struct {
		Spec struct {
			Containers []struct {
				Command []string `yaml:"command"`
			} `yaml:"containers"`
		} `yaml:"spec"`
	}
	var enc struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Resources  []struct {
			Resources []string `yaml:"resources"`
			Providers []struct {
				KMS *struct {
					APIVersion string `yaml:"apiVersion"`
					Name       string `yaml:"name"`
					Endpoint   string `yaml:"endpoint"`
					Timeout    string `yaml:"timeout"`
				} `yaml:"kms"`
			} `yaml:"providers"`
		} `yaml:"resources"`
	}
	blocks := fenced(t, "yaml")
	if len(blocks) != 2 {
		t.Fatalf("%d YAML blocks, want the pod and the EncryptionConfiguration", len(blocks))
	}
	if err := yaml.Unmarshal([]byte(blocks[0]), &pod); err != nil || len(pod.Spec.Containers) != 1 {
		t.Fatalf("the static pod: %v", err)
	}
	if err := yaml.Unmarshal([]byte(blocks[1]), &enc); err != nil {
		t.Fatalf("the EncryptionConfiguration: %v", err)
	}
	cmd := pod.Spec.Containers[0].Command
	cfg, err := parseConfig(cmd[1:], os.Stderr, mapEnv(nil))
	if err != nil {
		t.Fatalf("the documented command line %q: %v", cmd, err)
	}
	if enc.APIVersion != "apiserver.config.k8s.io/v1" || enc.Kind != "EncryptionConfiguration" || len(enc.Resources) != 1 ||
		len(enc.Resources[0].Providers) != 2 || enc.Resources[0].Providers[0].KMS == nil {
		t.Fatalf("the EncryptionConfiguration: %+v", enc)
	}
	kms := enc.Resources[0].Providers[0].KMS
	timeout, err := time.ParseDuration(kms.Timeout)
	if kms.APIVersion != "v2" || kms.Endpoint != "unix://"+cfg.listen || err != nil || timeout <= cfg.timeout {
		t.Fatalf("kms provider %+v, plugin listens on %s with -timeout %v", kms, cfg.listen, cfg.timeout)
	}
}
