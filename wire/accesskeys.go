package wire

import "time"

// AWS access keys of a principal, for the AWS KMS protocol (awsapi):
// /v1/principals/{name}/access-keys (extensions of API.md).

// NewAccessKey is an AWS access key just made; SecretAccessKey is shown
// only once.
type NewAccessKey struct {
	AccessKeyID     string    `json:"access_key_id"`
	SecretAccessKey string    `json:"secret_access_key"`
	Principal       string    `json:"principal"`
	CreationDate    time.Time `json:"creation_date"`
}

// AccessKeyInfo describes an access key without its secret.
type AccessKeyInfo struct {
	AccessKeyID  string     `json:"access_key_id"`
	CreationDate time.Time  `json:"creation_date"`
	LastUsedDate *time.Time `json:"last_used_date,omitempty"`
}

// AccessKeyPage is the body of ListAccessKeys.
type AccessKeyPage struct {
	AccessKeys []AccessKeyInfo `json:"access_keys"`
}
