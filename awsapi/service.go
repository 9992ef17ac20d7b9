package awsapi

import (
	"context"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

// Service is what the protocol needs of the service: exactly the methods
// its operations call, so that the service may be split or rearranged
// with only the wiring changing. *service.Service implements it.
type Service interface {
	AuthenticateAccessKey(ctx context.Context, id string, check func(secret []byte) error) (*service.Caller, error)

	Encrypt(ctx context.Context, keyRef string, plaintext []byte, encCtx map[string]string) (*service.CryptoResult, error)
	Decrypt(ctx context.Context, ciphertext []byte, encCtx map[string]string, keyRef string) (*service.CryptoResult, error)
	GenerateDataKey(ctx context.Context, in service.DataKeyInput, withPlaintext bool) (*service.CryptoResult, error)
	ReEncryptFrom(ctx context.Context, ciphertext []byte, srcCtx map[string]string, srcRef, dstRef string, dstCtx map[string]string) (*service.ReEncryptResult, error)
	GenerateRandom(ctx context.Context, n int) ([]byte, error)

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
	RotateKey(ctx context.Context, ref string) (*service.Version, error)
	ListKeyRotations(ctx context.Context, ref string, limit int, nextToken string) ([]service.Rotation, string, error)

	GetParametersForImport(ctx context.Context, ref, algorithm, keySpec string) (*service.ImportParameters, error)
	ImportKeyMaterial(ctx context.Context, ref, importToken string, wrapped []byte, validTo *time.Time) (*service.Key, error)
	DeleteImportedKeyMaterial(ctx context.Context, ref string) (*service.Key, error)
}

var _ Service = (*service.Service)(nil)
