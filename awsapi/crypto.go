package awsapi

import (
	"context"

	"github.com/hsmkms/hsmkms/service"
)

// Data plane: Encrypt, Decrypt, GenerateDataKey(WithoutPlaintext),
// ReEncrypt, GenerateRandom. Blobs are the service's own ciphertext blobs
// (they name their key), so Decrypt needs no KeyId.

type encryptRequest struct {
	KeyId               string
	Plaintext           []byte
	EncryptionContext   map[string]string
	EncryptionAlgorithm string
	GrantTokens         []string
	DryRun              bool
}

type encryptResponse struct {
	CiphertextBlob      []byte
	KeyId               string
	EncryptionAlgorithm string
}

// refuseDryRun: a dry run would have to answer DryRunOperationException
// after every check, without acting; hsmkms does not offer it.
func refuseDryRun(dry bool) error {
	if dry {
		return unsupportedf("DryRun is not supported")
	}
	return nil
}

func encrypt(s *server, ctx context.Context, in *encryptRequest) (*encryptResponse, error) {
	ref, err := s.ref("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	if err := checkAlgorithm("EncryptionAlgorithm", in.EncryptionAlgorithm); err != nil {
		return nil, err
	}
	if err := refuseDryRun(in.DryRun); err != nil {
		return nil, err
	}
	r, err := s.svc.Crypto.Encrypt(ctx, ref, in.Plaintext, in.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return &encryptResponse{CiphertextBlob: r.Ciphertext, KeyId: s.keyARN(r.KeyID), EncryptionAlgorithm: symmetricDefault}, nil
}

type decryptRequest struct {
	CiphertextBlob      []byte
	EncryptionContext   map[string]string
	KeyId               string
	EncryptionAlgorithm string
	GrantTokens         []string
	Recipient           *recipient
	DryRun              bool
	DryRunModifiers     []string // only with DryRun, which is refused
}

type decryptResponse struct {
	KeyId               string
	Plaintext           []byte
	EncryptionAlgorithm string
}

func decrypt(s *server, ctx context.Context, in *decryptRequest) (*decryptResponse, error) {
	ref, err := s.optionalRef("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	if err := checkAlgorithm("EncryptionAlgorithm", in.EncryptionAlgorithm); err != nil {
		return nil, err
	}
	if in.Recipient != nil {
		return nil, unsupportedf("Recipient (enclave attestation) is not supported")
	}
	if err := refuseDryRun(in.DryRun); err != nil {
		return nil, err
	}
	if len(in.CiphertextBlob) == 0 {
		return nil, validationf("CiphertextBlob is required")
	}
	r, err := s.svc.Crypto.Decrypt(ctx, in.CiphertextBlob, in.EncryptionContext, ref)
	if err != nil {
		return nil, err
	}
	return &decryptResponse{KeyId: s.keyARN(r.KeyID), Plaintext: r.Plaintext, EncryptionAlgorithm: symmetricDefault}, nil
}

type dataKeyRequest struct {
	KeyId             string
	KeySpec           string
	NumberOfBytes     int
	EncryptionContext map[string]string
	GrantTokens       []string
	Recipient         *recipient
	DryRun            bool
}

type dataKeyResponse struct {
	CiphertextBlob []byte
	Plaintext      []byte `json:",omitempty"`
	KeyId          string
}

func dataKey(withPlaintext bool) func(*server, context.Context, *dataKeyRequest) (*dataKeyResponse, error) {
	return func(s *server, ctx context.Context, in *dataKeyRequest) (*dataKeyResponse, error) {
		ref, err := s.ref("KeyId", in.KeyId)
		if err != nil {
			return nil, err
		}
		if in.Recipient != nil {
			return nil, unsupportedf("Recipient (enclave attestation) is not supported")
		}
		if err := refuseDryRun(in.DryRun); err != nil {
			return nil, err
		}
		r, err := s.svc.Crypto.GenerateDataKey(ctx, service.DataKeyInput{KeyRef: ref, KeySpec: in.KeySpec,
			NumberOfBytes: in.NumberOfBytes, Context: in.EncryptionContext}, withPlaintext)
		if err != nil {
			return nil, err
		}
		return &dataKeyResponse{CiphertextBlob: r.Ciphertext, Plaintext: r.Plaintext, KeyId: s.keyARN(r.KeyID)}, nil
	}
}

type reEncryptRequest struct {
	CiphertextBlob                 []byte
	SourceEncryptionContext        map[string]string
	SourceKeyId                    string
	DestinationKeyId               string
	DestinationEncryptionContext   map[string]string
	SourceEncryptionAlgorithm      string
	DestinationEncryptionAlgorithm string
	GrantTokens                    []string
	DryRun                         bool
	DryRunModifiers                []string // only with DryRun, which is refused
}

type reEncryptResponse struct {
	CiphertextBlob                 []byte
	SourceKeyId                    string
	KeyId                          string
	SourceEncryptionAlgorithm      string
	DestinationEncryptionAlgorithm string
}

func reEncrypt(s *server, ctx context.Context, in *reEncryptRequest) (*reEncryptResponse, error) {
	src, err := s.optionalRef("SourceKeyId", in.SourceKeyId)
	if err != nil {
		return nil, err
	}
	dst, err := s.ref("DestinationKeyId", in.DestinationKeyId)
	if err != nil {
		return nil, err
	}
	if err := checkAlgorithm("SourceEncryptionAlgorithm", in.SourceEncryptionAlgorithm); err != nil {
		return nil, err
	}
	if err := checkAlgorithm("DestinationEncryptionAlgorithm", in.DestinationEncryptionAlgorithm); err != nil {
		return nil, err
	}
	if err := refuseDryRun(in.DryRun); err != nil {
		return nil, err
	}
	if len(in.CiphertextBlob) == 0 {
		return nil, validationf("CiphertextBlob is required")
	}
	r, err := s.svc.Crypto.ReEncryptFrom(ctx, in.CiphertextBlob, in.SourceEncryptionContext, src, dst, in.DestinationEncryptionContext)
	if err != nil {
		return nil, err
	}
	return &reEncryptResponse{CiphertextBlob: r.Destination.Ciphertext, SourceKeyId: s.keyARN(r.Source.KeyID),
		KeyId: s.keyARN(r.Destination.KeyID), SourceEncryptionAlgorithm: symmetricDefault,
		DestinationEncryptionAlgorithm: symmetricDefault}, nil
}

// recipient is AWS's RecipientInfo (Nitro Enclaves attestation): read so
// that a real one is refused as unsupported, not as an unknown member.
type recipient struct {
	KeyEncryptionAlgorithm string
	AttestationDocument    []byte
}

type randomRequest struct {
	NumberOfBytes    int
	CustomKeyStoreId string
	Recipient        *recipient
}

type randomResponse struct{ Plaintext []byte }

func generateRandom(s *server, ctx context.Context, in *randomRequest) (*randomResponse, error) {
	if in.CustomKeyStoreId != "" {
		return nil, unsupportedf("custom key stores are not supported")
	}
	if in.Recipient != nil {
		return nil, unsupportedf("Recipient (enclave attestation) is not supported")
	}
	b, err := s.svc.Crypto.GenerateRandom(ctx, in.NumberOfBytes)
	if err != nil {
		return nil, err
	}
	return &randomResponse{b}, nil
}
