package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/hsmkms/hsmkms/service"
	"go.yaml.in/yaml/v3"
)

// provisionFile is the declarative file of KMS_PROVISION_FILE: the keys and
// aliases a CI pipeline or a development setup wants every time.
//
//	keys:
//	  - alias: alias/ci-app
//	    description: the CI application's key
//	    automatic_rotation: true
//	    rotation_interval: 90d
//	    tags: {team: payments}
//	    extra_aliases: [alias/ci-app-legacy]
type provisionFile struct {
	Keys []struct {
		Alias             string            `yaml:"alias"`
		Description       string            `yaml:"description"`
		AutomaticRotation bool              `yaml:"automatic_rotation"`
		RotationInterval  string            `yaml:"rotation_interval"`
		Tags              map[string]string `yaml:"tags"`
		ExtraAliases      []string          `yaml:"extra_aliases"`
	} `yaml:"keys"`
}

// loadProvisionFile reads and checks the file (unknown fields are errors,
// so a typo does not silently provision nothing).
func loadProvisionFile(path string) ([]service.ProvisionKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("provision file: cannot read %s: %v", path, errors.Unwrap(err))
	}
	var f provisionFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("provision file %s: %v", path, err)
	}
	spec := make([]service.ProvisionKey, len(f.Keys))
	for i, k := range f.Keys {
		if k.Alias == "" {
			return nil, fmt.Errorf("provision file %s: key %d has no alias (the alias is what makes provisioning idempotent)", path, i+1)
		}
		spec[i] = service.ProvisionKey{Alias: k.Alias, Description: k.Description,
			AutomaticRotation: k.AutomaticRotation, Tags: k.Tags, ExtraAliases: k.ExtraAliases}
		if k.RotationInterval != "" {
			d, err := service.ParseDuration(k.RotationInterval)
			if err != nil {
				return nil, fmt.Errorf("provision file %s: key %s: %v", path, k.Alias, err)
			}
			spec[i].RotationInterval = d
		}
	}
	return spec, nil
}

// provision applies the file at start, before serving.
func provision(ctx context.Context, svc *service.Service, path string, log *slog.Logger) error {
	if path == "" {
		return nil
	}
	spec, err := loadProvisionFile(path)
	if err != nil {
		return err
	}
	results, err := svc.Provision(ctx, spec)
	if err != nil {
		return fmt.Errorf("provision file %s: %w", path, err)
	}
	created := 0
	for _, r := range results {
		if r.Created {
			created++
			log.Info("provisioned key", "alias", r.Alias, "key_id", r.KeyID)
		}
	}
	log.Info("provisioning done", "keys", len(results), "created", created)
	return nil
}
