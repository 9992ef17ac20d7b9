package awsapi

import (
	"context"
	"time"

	"github.com/hsmkms/hsmkms/policy"
	"github.com/hsmkms/hsmkms/service"
)

// Rotation: EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus,
// RotateKeyOnDemand, ListKeyRotations.

const day = 24 * time.Hour

type enableRotationRequest struct {
	KeyId                string
	RotationPeriodInDays int
}

func enableKeyRotation(s *server, ctx context.Context, in *enableRotationRequest) (*empty, error) {
	ref, err := s.ref("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	if in.RotationPeriodInDays < 0 {
		return nil, validationf("RotationPeriodInDays must be positive")
	}
	_, err = s.svc.Keys.PutRotationPolicy(ctx, ref, service.RotationPolicyInput{AutomaticRotation: true,
		RotationInterval: time.Duration(in.RotationPeriodInDays) * day})
	return &empty{}, err
}

func disableKeyRotation(s *server, ctx context.Context, in *keyRequest) (*empty, error) {
	ref, err := s.ref("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	_, err = s.svc.Keys.PutRotationPolicy(ctx, ref, service.RotationPolicyInput{AutomaticRotation: false})
	return &empty{}, err
}

type rotationStatusResponse struct {
	KeyId                string
	KeyRotationEnabled   bool
	RotationPeriodInDays int    `json:",omitempty"`
	NextRotationDate     *epoch `json:",omitempty"`
}

// getKeyRotationStatus: a Suspended rotation (the key is disabled or
// pending deletion) is reported enabled, as AWS does: it resumes with the
// key.
func getKeyRotationStatus(s *server, ctx context.Context, in *keyRequest) (*rotationStatusResponse, error) {
	ref, err := s.ref("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	st, err := s.svc.Keys.GetRotationStatus(ctx, ref)
	if err != nil {
		return nil, err
	}
	out := &rotationStatusResponse{KeyId: s.keyARN(st.KeyID), KeyRotationEnabled: st.Status != policy.RotationStatusDisabled}
	if out.KeyRotationEnabled {
		out.RotationPeriodInDays = int(st.RotationInterval / day)
		out.NextRotationDate = epochPtr(st.NextRotation)
	}
	return out, nil
}

func rotateKeyOnDemand(s *server, ctx context.Context, in *keyRequest) (*keyIDResponse, error) {
	ref, err := s.ref("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	v, err := s.svc.Worker.RotateKey(ctx, ref)
	if err != nil {
		return nil, err
	}
	return &keyIDResponse{s.keyARN(v.KeyID)}, nil
}

type listRotationsRequest struct {
	KeyId  string
	Limit  int
	Marker string
	// IncludeKeyMaterial: ROTATIONS_ONLY (the default) lists what this
	// service lists; ALL_KEY_MATERIAL (imported materials) is refused.
	IncludeKeyMaterial string
}

type rotationEntry struct {
	KeyId        string
	RotationDate epoch
	RotationType string
}

type listRotationsResponse struct {
	Rotations  []rotationEntry
	NextMarker string `json:",omitempty"`
	Truncated  bool
}

func listKeyRotations(s *server, ctx context.Context, in *listRotationsRequest) (*listRotationsResponse, error) {
	if in.IncludeKeyMaterial != "" && in.IncludeKeyMaterial != "ROTATIONS_ONLY" {
		return nil, unsupportedf("IncludeKeyMaterial %s is not supported: only ROTATIONS_ONLY", clip(in.IncludeKeyMaterial))
	}
	ref, err := s.ref("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	rs, next, err := s.svc.Keys.ListKeyRotations(ctx, ref, in.Limit, in.Marker)
	if err != nil {
		return nil, err
	}
	out := &listRotationsResponse{Rotations: make([]rotationEntry, len(rs)), NextMarker: next, Truncated: next != ""}
	for i, r := range rs {
		out.Rotations[i] = rotationEntry{KeyId: r.KeyID, RotationDate: epoch(r.At), RotationType: string(r.Type)}
	}
	return out, nil
}
