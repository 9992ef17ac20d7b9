package client

import "github.com/hsmkms/hsmkms/wire"

// The bodies of the API, defined once in wire and shared with the server.
type (
	Key                    = wire.Key
	CreateKeyRequest       = wire.CreateKeyRequest
	KeyPage                = wire.KeyPage
	UpdateKeyRequest       = wire.UpdateKeyRequest
	Alias                  = wire.Alias
	AliasPage              = wire.AliasPage
	RotationStatus         = wire.RotationStatus
	RotationFailure        = wire.RotationFailure
	Rotation               = wire.Rotation
	RotationPage           = wire.RotationPage
	Version                = wire.Version
	EncryptResult          = wire.EncryptResult
	DecryptResult          = wire.DecryptResult
	ItemError              = wire.ItemError
	BatchEncryptResult     = wire.BatchEncryptResult
	BatchDecryptResult     = wire.BatchDecryptResult
	DataKeyRequest         = wire.DataKeyRequest
	DataKey                = wire.DataKey
	ReEncryptResult        = wire.ReEncryptResult
	ImportParameters       = wire.ImportParameters
	Principal              = wire.Principal
	TokenInfo              = wire.TokenInfo
	NewToken               = wire.NewToken
	CreatePrincipalRequest = wire.CreatePrincipalRequest
	PrincipalPage          = wire.PrincipalPage
	Statement              = wire.Statement
	PolicyDocument         = wire.PolicyDocument
	Policy                 = wire.Policy
	PolicyPage             = wire.PolicyPage
	AuditRecord            = wire.AuditRecord
	AuditPage              = wire.AuditPage
	AuditVerification      = wire.AuditVerification
	NewAccessKey           = wire.NewAccessKey
	AccessKeyInfo          = wire.AccessKeyInfo
	AccessKeyPage          = wire.AccessKeyPage
)
