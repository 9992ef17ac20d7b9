package awsapi

import (
	"strings"

	"github.com/hsmkms/hsmkms/service"
)

// ARNs: arn:aws:kms:<region>:<account>:key/<key id> and
// arn:aws:kms:<region>:<account>:alias/<name>.

func (s *server) keyARN(id string) string {
	return "arn:aws:kms:" + s.region + ":" + s.account + ":key/" + id
}

func (s *server) aliasARN(name string) string {
	return "arn:aws:kms:" + s.region + ":" + s.account + ":" + name
}

// ref turns a KeyId field (key id, key ARN, alias/NAME or alias ARN) into
// what the service takes (key id or alias/NAME). An ARN of another region
// or account names no key here.
func (s *server) ref(field, keyID string) (string, error) {
	if keyID == "" {
		return "", validationf("%s is required", field)
	}
	rest, ok := strings.CutPrefix(keyID, "arn:")
	if !ok {
		return keyID, nil
	}
	parts := strings.SplitN(rest, ":", 5)
	if len(parts) != 5 || parts[1] != "kms" || parts[4] == "" {
		return "", validationf("%s %q is not a KMS key or alias ARN", field, clip(keyID))
	}
	if parts[2] != s.region || parts[3] != s.account {
		return "", &service.Error{Kind: service.ErrNotFound,
			Message: "no such key: " + field + " names another region or account than this endpoint's (" + s.region + ", " + s.account + ")"}
	}
	resource := parts[4]
	if id, ok := strings.CutPrefix(resource, "key/"); ok && id != "" {
		return id, nil
	}
	if strings.HasPrefix(resource, service.AliasPrefix) {
		return resource, nil
	}
	return "", validationf("%s %q is not a KMS key or alias ARN", field, clip(keyID))
}

// optionalRef is ref for an optional field.
func (s *server) optionalRef(field, keyID string) (string, error) {
	if keyID == "" {
		return "", nil
	}
	return s.ref(field, keyID)
}
