package awsapi

import (
	"context"
	"sort"

	"github.com/hsmkms/hsmkms/service"
)

// Keys: CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey,
// ScheduleKeyDeletion, CancelKeyDeletion, UpdateKeyDescription,
// TagResource, UntagResource, ListResourceTags.

type tag struct {
	TagKey   string
	TagValue string
}

// keyMetadata is AWS's KeyMetadata of a key.
type keyMetadata struct {
	AWSAccountId          string
	Arn                   string
	CreationDate          epoch
	CustomerMasterKeySpec string
	DeletionDate          *epoch `json:",omitempty"`
	Description           string
	Enabled               bool
	EncryptionAlgorithms  []string
	KeyId                 string
	KeyManager            string
	KeySpec               string
	KeyState              string
	KeyUsage              string
	MultiRegion           bool
	Origin                string
}

func (s *server) metadata(k *service.Key) keyMetadata {
	origin, manager := "AWS_KMS", "CUSTOMER"
	if k.Origin == service.OriginExternal {
		origin = "EXTERNAL"
	}
	if k.Manager == service.ManagerService {
		manager = "AWS"
	}
	return keyMetadata{AWSAccountId: s.account, Arn: s.keyARN(k.ID), CreationDate: epoch(k.CreatedAt),
		CustomerMasterKeySpec: symmetricDefault, DeletionDate: epochPtr(k.DeletionDate), Description: k.Description,
		Enabled: k.State == service.KeyEnabled, EncryptionAlgorithms: []string{symmetricDefault}, KeyId: k.ID,
		KeyManager: manager, KeySpec: symmetricDefault, KeyState: string(k.State), KeyUsage: "ENCRYPT_DECRYPT",
		Origin: origin}
}

type keyMetadataResponse struct{ KeyMetadata keyMetadata }

type createKeyRequest struct {
	Description           string
	KeyUsage              string
	KeySpec               string
	CustomerMasterKeySpec string
	Origin                string
	Tags                  []tag
	Policy                string
	MultiRegion           bool
	CustomKeyStoreId      string
	XksKeyId              string
	// BypassPolicyLockoutSafetyCheck is accepted either way: there is no
	// key policy here (Policy is refused), so nothing to bypass.
	BypassPolicyLockoutSafetyCheck bool
}

func createKey(s *server, ctx context.Context, in *createKeyRequest) (*keyMetadataResponse, error) {
	switch {
	case in.KeyUsage != "" && in.KeyUsage != "ENCRYPT_DECRYPT":
		return nil, unsupportedf("KeyUsage %s: hsmkms keys are ENCRYPT_DECRYPT only", clip(in.KeyUsage))
	case in.KeySpec != "" && in.KeySpec != symmetricDefault, in.CustomerMasterKeySpec != "" && in.CustomerMasterKeySpec != symmetricDefault:
		return nil, unsupportedf("hsmkms keys are SYMMETRIC_DEFAULT (AES-256-GCM in the HSM) only")
	case in.Policy != "":
		return nil, unsupportedf("key policies are not supported: hsmkms's own policies apply (docs/access.md)")
	case in.MultiRegion:
		return nil, unsupportedf("multi-Region keys are not supported")
	case in.CustomKeyStoreId != "" || in.XksKeyId != "":
		return nil, unsupportedf("custom key stores are not supported")
	}
	var origin service.Origin
	switch in.Origin {
	case "", "AWS_KMS":
		origin = service.OriginHSM
	case "EXTERNAL":
		origin = service.OriginExternal
	default:
		return nil, unsupportedf("Origin %s: hsmkms offers AWS_KMS (generated in the HSM) and EXTERNAL", clip(in.Origin))
	}
	tags, err := tagMap(in.Tags)
	if err != nil {
		return nil, err
	}
	k, err := s.svc.Keys.CreateKey(ctx, service.CreateKeyInput{Description: in.Description, Origin: origin, Tags: tags})
	if err != nil {
		return nil, err
	}
	return &keyMetadataResponse{s.metadata(k)}, nil
}

// tagMap turns AWS's tag list into the service's map; a key given twice
// is refused rather than silently taking one value.
func tagMap(tags []tag) (map[string]string, error) {
	if tags == nil {
		return nil, nil
	}
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		if _, dup := m[t.TagKey]; dup {
			return nil, validationf("tag key %q is given twice", clip(t.TagKey))
		}
		m[t.TagKey] = t.TagValue
	}
	return m, nil
}

type keyRequest struct{ KeyId string }

// describeKeyRequest: grant tokens are accepted and ignored (there are no
// grants: they could only add rights, never take them away).
type describeKeyRequest struct {
	KeyId       string
	GrantTokens []string
}

func describeKey(s *server, ctx context.Context, in *describeKeyRequest) (*keyMetadataResponse, error) {
	ref, err := s.ref("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	k, err := s.svc.Keys.DescribeKey(ctx, ref)
	if err != nil {
		return nil, err
	}
	return &keyMetadataResponse{s.metadata(k)}, nil
}

// pageRequest is AWS's pagination: Limit, and the Marker of the previous
// page's NextMarker (the service's next_token, passed through).
type pageRequest struct {
	Limit  int
	Marker string
	// ResourceOwners: only SELF (the default); keys shared from other
	// accounts do not exist here.
	ResourceOwners []string
}

type keyListEntry struct{ KeyId, KeyArn string }

type listKeysResponse struct {
	Keys       []keyListEntry
	NextMarker string `json:",omitempty"`
	Truncated  bool
}

func listKeys(s *server, ctx context.Context, in *pageRequest) (*listKeysResponse, error) {
	for _, o := range in.ResourceOwners {
		if o != "SELF" {
			return nil, unsupportedf("ResourceOwners %s: only SELF (keys shared through RAM do not exist here)", clip(o))
		}
	}
	keys, next, err := s.svc.Keys.ListKeys(ctx, in.Limit, in.Marker)
	if err != nil {
		return nil, err
	}
	out := &listKeysResponse{Keys: make([]keyListEntry, len(keys)), NextMarker: next, Truncated: next != ""}
	for i, k := range keys {
		out.Keys[i] = keyListEntry{KeyId: k.ID, KeyArn: s.keyARN(k.ID)}
	}
	return out, nil
}

// keyOp changes the key a reference names.
type keyOp func(ctx context.Context, ref string) (*service.Key, error)

// keyChange is an operation that changes a key and answers nothing; of
// names the service's method.
func keyChange(of func(Service) keyOp) func(*server, context.Context, *keyRequest) (*empty, error) {
	return func(s *server, ctx context.Context, in *keyRequest) (*empty, error) {
		ref, err := s.ref("KeyId", in.KeyId)
		if err != nil {
			return nil, err
		}
		_, err = of(s.svc)(ctx, ref)
		return &empty{}, err
	}
}

type scheduleDeletionRequest struct {
	KeyId               string
	PendingWindowInDays *int // absent: the service's default; 0 is out of range, as in AWS
}

type scheduleDeletionResponse struct {
	KeyId               string
	DeletionDate        *epoch `json:",omitempty"`
	KeyState            string
	PendingWindowInDays int
}

func scheduleKeyDeletion(s *server, ctx context.Context, in *scheduleDeletionRequest) (*scheduleDeletionResponse, error) {
	ref, err := s.ref("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	days := 0
	if in.PendingWindowInDays != nil {
		if days = *in.PendingWindowInDays; days == 0 {
			return nil, validationf("PendingWindowInDays must be %d to %d (omit it for %d)",
				service.MinPendingWindowDays, service.MaxPendingWindowDays, service.DefaultPendingWindowDays)
		}
	}
	k, err := s.svc.Keys.ScheduleKeyDeletion(ctx, ref, days)
	if err != nil {
		return nil, err
	}
	out := &scheduleDeletionResponse{KeyId: s.keyARN(k.ID), DeletionDate: epochPtr(k.DeletionDate), KeyState: string(k.State)}
	if k.DeletionDate != nil {
		out.PendingWindowInDays = int(k.DeletionDate.Sub(k.UpdatedAt).Hours()/24 + 0.5)
	}
	return out, nil
}

type keyIDResponse struct{ KeyId string }

func cancelKeyDeletion(s *server, ctx context.Context, in *keyRequest) (*keyIDResponse, error) {
	ref, err := s.ref("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	k, err := s.svc.Keys.CancelKeyDeletion(ctx, ref)
	if err != nil {
		return nil, err
	}
	return &keyIDResponse{s.keyARN(k.ID)}, nil
}

type updateDescriptionRequest struct {
	KeyId       string
	Description *string
}

func updateKeyDescription(s *server, ctx context.Context, in *updateDescriptionRequest) (*empty, error) {
	ref, err := s.ref("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	if in.Description == nil {
		return nil, validationf("Description is required")
	}
	_, err = s.svc.Keys.UpdateKey(ctx, ref, service.UpdateKeyInput{Description: in.Description})
	return &empty{}, err
}

type tagResourceRequest struct {
	KeyId   string
	Tags    []tag
	TagKeys []string
}

func tagResource(s *server, ctx context.Context, in *tagResourceRequest) (*empty, error) {
	ref, err := s.ref("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	if len(in.Tags) == 0 {
		return nil, validationf("Tags must name at least one tag")
	}
	tags, err := tagMap(in.Tags)
	if err != nil {
		return nil, err
	}
	_, err = s.svc.Keys.TagKey(ctx, ref, tags, nil)
	return &empty{}, err
}

func untagResource(s *server, ctx context.Context, in *tagResourceRequest) (*empty, error) {
	ref, err := s.ref("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	if len(in.TagKeys) == 0 {
		return nil, validationf("TagKeys must name at least one tag key")
	}
	_, err = s.svc.Keys.TagKey(ctx, ref, nil, in.TagKeys)
	return &empty{}, err
}

type listTagsRequest struct {
	KeyId  string
	Limit  int
	Marker string
}

type listTagsResponse struct {
	Tags       []tag
	NextMarker string `json:",omitempty"`
	Truncated  bool
}

// listResourceTags pages through a key's tags in key order; the marker is
// the last tag key of the previous page. It is authorised as DescribeKey,
// which shows the tags too.
func listResourceTags(s *server, ctx context.Context, in *listTagsRequest) (*listTagsResponse, error) {
	ref, err := s.ref("KeyId", in.KeyId)
	if err != nil {
		return nil, err
	}
	limit := in.Limit
	if limit == 0 {
		limit = 50
	}
	if limit < 1 || limit > 50 {
		return nil, validationf("Limit must be between 1 and 50")
	}
	k, err := s.svc.Keys.DescribeKey(ctx, ref)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(k.Tags))
	for key := range k.Tags {
		if in.Marker == "" || key > in.Marker {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	out := &listTagsResponse{Tags: []tag{}}
	if len(keys) > limit {
		keys = keys[:limit]
		out.NextMarker, out.Truncated = keys[limit-1], true
	}
	for _, key := range keys {
		out.Tags = append(out.Tags, tag{TagKey: key, TagValue: k.Tags[key]})
	}
	return out, nil
}
