// Package wire holds the JSON bodies of the REST API (docs/API.md), shared by
// the server (api) and the Go client (client) so that the two cannot drift.
// It depends on the standard library alone.
//
// Requests whose fields the server must see as missing or malformed one by
// one (base64 payloads, optional booleans) are decoded by api with types of
// its own; everything else is here.
package wire

import (
	"encoding/base64"
	"encoding/json"
	"time"
)

// Base64 is a []byte written as standard, padded base64 in JSON (also when
// empty: "", never null).
type Base64 []byte

// MarshalJSON writes standard base64.
// Base64 never needs JSON escaping: the quotes go straight around it, with
// one allocation.
func (b Base64) MarshalJSON() ([]byte, error) {
	n := base64.StdEncoding.EncodedLen(len(b))
	out := make([]byte, n+2)
	out[0], out[n+1] = '"', '"'
	base64.StdEncoding.Encode(out[1:], b)
	return out, nil
}

// Key is a key as the API shows it (DescribeKey).
type Key struct {
	KeyID             string            `json:"key_id"`
	Description       string            `json:"description"`
	Aliases           []string          `json:"aliases"`
	KeyState          string            `json:"key_state"`
	Origin            string            `json:"origin"`
	KeySpec           string            `json:"key_spec"`
	KeyUsage          string            `json:"key_usage"`
	KeyManager        string            `json:"key_manager"`
	CreationDate      time.Time         `json:"creation_date"`
	PrimaryKeyVersion int               `json:"primary_key_version"`
	AutomaticRotation string            `json:"automatic_rotation"`
	RotationInterval  string            `json:"rotation_interval"`
	LastRotationDate  *time.Time        `json:"last_rotation_date,omitempty"`
	NextRotationDate  *time.Time        `json:"next_rotation_date,omitempty"`
	DeletionDate      *time.Time        `json:"deletion_date,omitempty"`
	Tags              map[string]string `json:"tags"`
	// OnDemandRotationsRemaining is absent when the server sets no quota.
	OnDemandRotationsRemaining *int             `json:"on_demand_rotations_remaining,omitempty"`
	LastRotationFailure        *RotationFailure `json:"last_rotation_failure,omitempty"`
}

// RotationFailure is a key's last failed automatic rotation, shown until a
// rotation succeeds: when, and what went wrong (no internals).
type RotationFailure struct {
	Date    time.Time `json:"date"`
	Message string    `json:"message"`
}

// CreateKeyRequest is the body of CreateKey; every field is optional.
type CreateKeyRequest struct {
	Description       string            `json:"description,omitempty"`
	Alias             string            `json:"alias,omitempty"`
	Origin            string            `json:"origin,omitempty"`
	KeySpec           string            `json:"key_spec,omitempty"`
	AutomaticRotation bool              `json:"automatic_rotation,omitempty"`
	RotationInterval  string            `json:"rotation_interval,omitempty"`
	Tags              map[string]string `json:"tags,omitempty"`
}

// KeyPage is one page of ListKeys.
type KeyPage struct {
	Keys      []Key  `json:"keys"`
	NextToken string `json:"next_token"`
}

// UpdateKeyRequest changes description and/or tags; nil fields stay.
type UpdateKeyRequest struct {
	Description *string           `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"` // nil: unchanged; empty, not nil: remove them all
}

// MarshalJSON sends tags whenever they are not nil: an empty map removes
// every tag, which omitempty would silently drop.
func (r UpdateKeyRequest) MarshalJSON() ([]byte, error) {
	type plain UpdateKeyRequest
	if r.Tags != nil && len(r.Tags) == 0 {
		return json.Marshal(struct {
			Description *string           `json:"description,omitempty"`
			Tags        map[string]string `json:"tags"`
		}{r.Description, r.Tags})
	}
	return json.Marshal(plain(r))
}

// Alias is an alias binding.
type Alias struct {
	AliasName       string    `json:"alias_name"`
	TargetKeyID     string    `json:"target_key_id"`
	CreationDate    time.Time `json:"creation_date"`
	LastUpdatedDate time.Time `json:"last_updated_date"`
}

// AliasPage is one page of ListAliases.
type AliasPage struct {
	Aliases   []Alias `json:"aliases"`
	NextToken string  `json:"next_token"`
}

// RotationStatus is the answer of GET .../rotation-status.
type RotationStatus struct {
	KeyID             string     `json:"key_id"`
	AutomaticRotation string     `json:"automatic_rotation"`
	RotationInterval  string     `json:"rotation_interval"`
	LastRotationDate  *time.Time `json:"last_rotation_date,omitempty"`
	NextRotationDate  *time.Time `json:"next_rotation_date,omitempty"`
	// OnDemandRotationsRemaining is absent when the server sets no quota.
	OnDemandRotationsRemaining *int             `json:"on_demand_rotations_remaining,omitempty"`
	LastRotationFailure        *RotationFailure `json:"last_rotation_failure,omitempty"`
}

// Rotation is one entry of ListKeyRotations.
type Rotation struct {
	KeyVersion   int       `json:"key_version"`
	RotationDate time.Time `json:"rotation_date"`
	RotationType string    `json:"rotation_type"`
}

// RotationPage is one page of ListKeyRotations.
type RotationPage struct {
	Rotations []Rotation `json:"rotations"`
	NextToken string     `json:"next_token"`
}

// Version is one key version.
type Version struct {
	Version          int        `json:"version"`
	State            string     `json:"state"`
	Origin           string     `json:"origin"`
	CreationDate     time.Time  `json:"creation_date"`
	DestructionDate  *time.Time `json:"destruction_date,omitempty"`
	TokenObjectLabel string     `json:"token_object_label"`
	// Encryptions is how many AES-GCM encryptions the version has made,
	// as the replicas have reported them (batched: a few seconds behind).
	Encryptions int64 `json:"encryptions"`
}

// EncryptResult is the answer of Encrypt.
type EncryptResult struct {
	CiphertextBlob Base64 `json:"ciphertext_blob"`
	KeyID          string `json:"key_id"`
	KeyVersion     int    `json:"key_version"`
}

// DecryptResult is the answer of Decrypt.
type DecryptResult struct {
	Plaintext  Base64 `json:"plaintext"`
	KeyID      string `json:"key_id"`
	KeyVersion int    `json:"key_version"`
}

// ItemError is the error of one item of a batch (the other items are
// answered regardless).
type ItemError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *ItemError) Error() string { return e.Code + ": " + e.Message }

// BatchEncryptResult is one item of a batch encrypt's answer: Error nil and the result, or Error.
type BatchEncryptResult struct {
	EncryptResult
	Error *ItemError `json:"error,omitempty"`
}

// BatchDecryptResult is one item of a batch decrypt's answer: Error nil and the result, or Error.
type BatchDecryptResult struct {
	DecryptResult
	Error *ItemError `json:"error,omitempty"`
}

// DataKeyRequest asks for a data key: KeySpec or NumberOfBytes.
type DataKeyRequest struct {
	KeyID             string            `json:"key_id"`
	KeySpec           string            `json:"key_spec,omitempty"`
	NumberOfBytes     int               `json:"number_of_bytes,omitempty"`
	EncryptionContext map[string]string `json:"encryption_context,omitempty"`
}

// DataKey is the answer of GenerateDataKey (Plaintext empty without plaintext).
type DataKey struct {
	Plaintext      Base64 `json:"plaintext,omitempty"`
	CiphertextBlob Base64 `json:"ciphertext_blob"`
	KeyID          string `json:"key_id"`
	KeyVersion     int    `json:"key_version"`
}

// ReEncryptResult is the answer of ReEncrypt.
type ReEncryptResult struct {
	CiphertextBlob   Base64 `json:"ciphertext_blob"`
	SourceKeyID      string `json:"source_key_id"`
	SourceKeyVersion int    `json:"source_key_version"`
	KeyID            string `json:"key_id"`
	KeyVersion       int    `json:"key_version"`
}

// ImportParameters are the answer of GetParametersForImport.
type ImportParameters struct {
	KeyID             string    `json:"key_id"`
	PublicKey         Base64    `json:"public_key"` // DER SubjectPublicKeyInfo
	ImportToken       string    `json:"import_token"`
	ParametersValidTo time.Time `json:"parameters_valid_to"`
}

// Principal is a caller of the API with its policies and tokens (never
// their secrets).
type Principal struct {
	Name         string      `json:"name"`
	Policies     []string    `json:"policies"`
	CertSubject  string      `json:"cert_subject"`
	CreationDate time.Time   `json:"creation_date"`
	Tokens       []TokenInfo `json:"tokens"`
}

// TokenInfo describes a bearer token without its secret.
type TokenInfo struct {
	TokenID        string     `json:"token_id"`
	Description    string     `json:"description"`
	CreationDate   time.Time  `json:"creation_date"`
	RevokedDate    *time.Time `json:"revoked_date,omitempty"`
	ExpirationDate *time.Time `json:"expiration_date,omitempty"` // absent: never
	LastUsedDate   *time.Time `json:"last_used_date,omitempty"`  // to about a minute
}

// NewToken is a token just made; Token is its secret, shown only once.
type NewToken struct {
	TokenID        string     `json:"token_id"`
	Token          string     `json:"token"`
	Principal      string     `json:"principal"`
	Description    string     `json:"description"`
	CreationDate   time.Time  `json:"creation_date"`
	ExpirationDate *time.Time `json:"expiration_date,omitempty"`
}

// CreatePrincipalRequest is the body of CreatePrincipal.
type CreatePrincipalRequest struct {
	Name        string   `json:"name"`
	Policies    []string `json:"policies,omitempty"`
	CertSubject string   `json:"cert_subject,omitempty"`
}

// PrincipalPage is one page of ListPrincipals.
type PrincipalPage struct {
	Principals []Principal `json:"principals"`
	NextToken  string      `json:"next_token"`
}

// Statement is one rule of a policy document.
type Statement struct {
	Effect    string   `json:"effect"`
	Actions   []string `json:"actions"`
	Resources []string `json:"resources"`
}

// PolicyDocument is a list of statements.
type PolicyDocument struct {
	Statements []Statement `json:"statements"`
}

// Policy is a stored policy document.
type Policy struct {
	Name            string         `json:"name"`
	Document        PolicyDocument `json:"document"`
	CreationDate    time.Time      `json:"creation_date"`
	LastUpdatedDate time.Time      `json:"last_updated_date"`
}

// PolicyPage is one page of ListPolicies.
type PolicyPage struct {
	Policies  []Policy `json:"policies"`
	NextToken string   `json:"next_token"`
}

// AuditRecord is one record of the hash-chained audit log. Credential
// names what authenticated the request, never a secret: token:<id>,
// access_key:<id> or certificate:<subject>; absent when none did (the
// system, unauthenticated requests, older records).
type AuditRecord struct {
	Seq        int64     `json:"seq"`
	Time       time.Time `json:"time"`
	RequestID  string    `json:"request_id"`
	Principal  string    `json:"principal"`
	Credential string    `json:"credential,omitempty"`
	Action     string    `json:"action"`
	KeyID      string    `json:"key_id"`
	KeyVersion int       `json:"key_version"`
	Outcome    string    `json:"outcome"`
	ErrorCode  string    `json:"error_code"`
	Source     string    `json:"source"`
	Detail     string    `json:"detail"`
	PrevHash   string    `json:"prev_hash"`
	Hash       string    `json:"hash"`
}

// AuditPage is one page of ListAudit.
type AuditPage struct {
	Records   []AuditRecord `json:"records"`
	NextToken string        `json:"next_token"`
}

// AuditVerification is the result of VerifyAudit.
type AuditVerification struct {
	Intact         bool   `json:"intact"`
	RecordsChecked int64  `json:"records_checked"`
	HeadSeq        int64  `json:"head_seq"`
	FirstBrokenSeq int64  `json:"first_broken_seq"`
	Reason         string `json:"reason"`
	SealedSeq      int64  `json:"sealed_seq"` // last record covered by a verified seal
	Seals          int64  `json:"seals"`
}
