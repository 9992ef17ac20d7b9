package awsapi

import (
	"context"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

// Service is what the protocol needs of the service, part by part: exactly
// the methods its operations call, named after the part of service.Service
// that has them (as the REST layer names them: svc.Keys.CreateKey), so
// that the service may be rearranged with only Parts changing.
type Service struct {
	Access Authenticator
	Crypto Cryptographer
	Keys   KeyRing
	Worker Rotator
	Import Importer
}

// Parts is the Service of svc's parts.
func Parts(svc *service.Service) Service {
	return Service{Access: svc.Access, Crypto: svc.Crypto, Keys: svc.Keys, Worker: svc.Worker, Import: svc.Import}
}

// Authenticator authenticates a signed request (service.Access).
type Authenticator interface {
	AuthenticateAccessKey(ctx context.Context, id string, check func(secret []byte) error) (*service.Caller, error)
}

// Cryptographer is the cryptography (service.Crypto).
type Cryptographer interface {
	Encrypt(ctx context.Context, keyRef string, plaintext []byte, encCtx map[string]string) (*service.CryptoResult, error)
	Decrypt(ctx context.Context, ciphertext []byte, encCtx map[string]string, keyRef string) (*service.CryptoResult, error)
	GenerateDataKey(ctx context.Context, in service.DataKeyInput, withPlaintext bool) (*service.CryptoResult, error)
	ReEncryptFrom(ctx context.Context, ciphertext []byte, srcCtx map[string]string, srcRef, dstRef string, dstCtx map[string]string) (*service.ReEncryptResult, error)
	GenerateRandom(ctx context.Context, n int) ([]byte, error)
}

// KeyRing is the keys, their aliases and rotation settings (service.Keys).
type KeyRing interface {
	CreateKey(ctx context.Context, in service.CreateKeyInput) (*service.Key, error)
	DescribeKey(ctx context.Context, ref string) (*service.Key, error)
	ListKeys(ctx context.Context, limit int, nextToken string) ([]*service.Key, string, error)
	EnableKey(ctx context.Context, ref string) (*service.Key, error)
	DisableKey(ctx context.Context, ref string) (*service.Key, error)
	ScheduleKeyDeletion(ctx context.Context, ref string, days int) (*service.Key, error)
	CancelKeyDeletion(ctx context.Context, ref string) (*service.Key, error)
	UpdateKey(ctx context.Context, ref string, in service.UpdateKeyInput) (*service.Key, error)
	TagKey(ctx context.Context, ref string, set map[string]string, remove []string) (*service.Key, error)

	CreateAlias(ctx context.Context, name, targetRef string) (*service.Alias, error)
	UpdateAlias(ctx context.Context, name, targetRef string) (*service.Alias, error)
	DeleteAlias(ctx context.Context, name string) error
	ListAliases(ctx context.Context, keyRef string, limit int, nextToken string) ([]service.Alias, string, error)

	PutRotationPolicy(ctx context.Context, ref string, in service.RotationPolicyInput) (*service.Key, error)
	GetRotationStatus(ctx context.Context, ref string) (*service.RotationStatus, error)
	ListKeyRotations(ctx context.Context, ref string, limit int, nextToken string) ([]service.Rotation, string, error)
}

// Rotator rotates a key on demand (service.Worker).
type Rotator interface {
	RotateKey(ctx context.Context, ref string) (*service.Version, error)
}

// Importer brings your own key (service.Import).
type Importer interface {
	GetParametersForImport(ctx context.Context, ref, algorithm, keySpec string) (*service.ImportParameters, error)
	ImportKeyMaterial(ctx context.Context, ref, importToken string, wrapped []byte, validTo *time.Time) (*service.Key, error)
	DeleteImportedKeyMaterial(ctx context.Context, ref string) (*service.Key, error)
}
