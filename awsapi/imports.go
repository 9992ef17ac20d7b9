package awsapi

import (
	"context"
	"time"
)

// Bring your own key: GetParametersForImport, ImportKeyMaterial,
// DeleteImportedKeyMaterial. The import token is the service's (a string);
// on the wire it is a blob of its bytes.

type importParamsRequest struct {
	KeyId             string
	WrappingAlgorithm string
	WrappingKeySpec   string
}

type importParamsResponse struct {
	KeyId             string
	ImportToken       []byte
	PublicKey         []byte
	ParametersValidTo epoch
}

func getParametersForImport(s *server, ctx context.Context, in *importParamsRequest) (*importParamsResponse, error) {
	ref, err := s.ref("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	p, err := s.svc.Import.GetParametersForImport(ctx, ref, in.WrappingAlgorithm, in.WrappingKeySpec)
	if err != nil {
		return nil, err
	}
	return &importParamsResponse{KeyId: s.keyARN(p.KeyID), ImportToken: []byte(p.ImportToken), PublicKey: p.PublicKey,
		ParametersValidTo: epoch(p.ValidTo)}, nil
}

type importRequest struct {
	KeyId                string
	ImportToken          []byte
	EncryptedKeyMaterial []byte
	ValidTo              *epoch
	ExpirationModel      string
	// Several key materials per key (AWS's ImportType, KeyMaterialId,
	// KeyMaterialDescription) are not supported: refused when given.
	ImportType             string
	KeyMaterialId          *string
	KeyMaterialDescription *string
}

func importKeyMaterial(s *server, ctx context.Context, in *importRequest) (*empty, error) {
	if in.ImportType != "" || in.KeyMaterialId != nil || in.KeyMaterialDescription != nil {
		return nil, unsupportedf("several key materials per key (ImportType, KeyMaterialId, KeyMaterialDescription) are not supported")
	}
	ref, err := s.ref("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	var validTo *time.Time
	switch in.ExpirationModel {
	case "", "KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE":
	default:
		return nil, validationf("ExpirationModel must be KEY_MATERIAL_EXPIRES or KEY_MATERIAL_DOES_NOT_EXPIRE")
	}
	switch {
	case in.ExpirationModel == "KEY_MATERIAL_EXPIRES" && in.ValidTo == nil:
		return nil, validationf("ValidTo is required with ExpirationModel KEY_MATERIAL_EXPIRES")
	case in.ExpirationModel == "KEY_MATERIAL_DOES_NOT_EXPIRE" && in.ValidTo != nil:
		return nil, validationf("ValidTo must be omitted with ExpirationModel KEY_MATERIAL_DOES_NOT_EXPIRE")
	case in.ValidTo != nil:
		t := time.Time(*in.ValidTo)
		validTo = &t
	}
	if len(in.ImportToken) == 0 || len(in.EncryptedKeyMaterial) == 0 {
		return nil, validationf("ImportToken and EncryptedKeyMaterial are required")
	}
	_, err = s.svc.Import.ImportKeyMaterial(ctx, ref, string(in.ImportToken), in.EncryptedKeyMaterial, validTo)
	return &empty{}, err
}

// deleteKeyMaterialRequest: KeyMaterialId names one of several key
// materials, which this service does not keep; refused when given.
type deleteKeyMaterialRequest struct {
	KeyId         string
	KeyMaterialId *string
}

func deleteImportedKeyMaterial(s *server, ctx context.Context, in *deleteKeyMaterialRequest) (*empty, error) {
	if in.KeyMaterialId != nil {
		return nil, unsupportedf("KeyMaterialId: several key materials per key are not supported")
	}
	return keyChange(func(s Service) keyOp { return s.Import.DeleteImportedKeyMaterial })(s, ctx, &keyRequest{KeyId: in.KeyId})
}
