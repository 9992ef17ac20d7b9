package awsapi

import (
	"context"
)

// Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases. AliasName is
// alias/NAME, as in AWS and in the service.

type aliasRequest struct {
	AliasName   string
	TargetKeyId string
}

func aliasChange(update bool) func(*server, context.Context, *aliasRequest) (*empty, error) {
	return func(s *server, ctx context.Context, in *aliasRequest) (*empty, error) {
		if in.AliasName == "" {
			return nil, validationf("AliasName is required")
		}
		target, err := s.ref("TargetKeyId", in.TargetKeyId)
		if err != nil {
			return nil, err
		}
		if update {
			_, err = s.svc.Keys.UpdateAlias(ctx, in.AliasName, target)
		} else {
			_, err = s.svc.Keys.CreateAlias(ctx, in.AliasName, target)
		}
		return &empty{}, err
	}
}

func deleteAlias(s *server, ctx context.Context, in *aliasRequest) (*empty, error) {
	if in.AliasName == "" {
		return nil, validationf("AliasName is required")
	}
	return &empty{}, s.svc.Keys.DeleteAlias(ctx, in.AliasName)
}

type listAliasesRequest struct {
	KeyId  string
	Limit  int
	Marker string
}

type aliasListEntry struct {
	AliasName       string
	AliasArn        string
	TargetKeyId     string
	CreationDate    epoch
	LastUpdatedDate epoch
}

type listAliasesResponse struct {
	Aliases    []aliasListEntry
	NextMarker string `json:",omitempty"`
	Truncated  bool
}

func listAliases(s *server, ctx context.Context, in *listAliasesRequest) (*listAliasesResponse, error) {
	ref, err := s.optionalRef("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	as, next, err := s.svc.Keys.ListAliases(ctx, ref, in.Limit, in.Marker)
	if err != nil {
		return nil, err
	}
	out := &listAliasesResponse{Aliases: make([]aliasListEntry, len(as)), NextMarker: next, Truncated: next != ""}
	for i, a := range as {
		out.Aliases[i] = aliasListEntry{AliasName: a.Name, AliasArn: s.aliasARN(a.Name), TargetKeyId: a.KeyID,
			CreationDate: epoch(a.CreatedAt), LastUpdatedDate: epoch(a.UpdatedAt)}
	}
	return out, nil
}
