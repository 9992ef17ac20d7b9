package awsapi

import (
	"reflect"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// sdkInputs are the AWS SDK's input types of every supported operation:
// the members a real client may send.
var sdkInputs = map[string]any{
	"Encrypt": kms.EncryptInput{}, "Decrypt": kms.DecryptInput{}, "GenerateDataKey": kms.GenerateDataKeyInput{},
	"GenerateDataKeyWithoutPlaintext": kms.GenerateDataKeyWithoutPlaintextInput{}, "ReEncrypt": kms.ReEncryptInput{},
	"GenerateRandom": kms.GenerateRandomInput{}, "CreateKey": kms.CreateKeyInput{}, "DescribeKey": kms.DescribeKeyInput{},
	"ListKeys": kms.ListKeysInput{}, "EnableKey": kms.EnableKeyInput{}, "DisableKey": kms.DisableKeyInput{},
	"ScheduleKeyDeletion": kms.ScheduleKeyDeletionInput{}, "CancelKeyDeletion": kms.CancelKeyDeletionInput{},
	"UpdateKeyDescription": kms.UpdateKeyDescriptionInput{}, "TagResource": kms.TagResourceInput{},
	"UntagResource": kms.UntagResourceInput{}, "ListResourceTags": kms.ListResourceTagsInput{},
	"CreateAlias": kms.CreateAliasInput{}, "UpdateAlias": kms.UpdateAliasInput{}, "DeleteAlias": kms.DeleteAliasInput{},
	"ListAliases": kms.ListAliasesInput{}, "EnableKeyRotation": kms.EnableKeyRotationInput{},
	"DisableKeyRotation": kms.DisableKeyRotationInput{}, "GetKeyRotationStatus": kms.GetKeyRotationStatusInput{},
	"RotateKeyOnDemand": kms.RotateKeyOnDemandInput{}, "ListKeyRotations": kms.ListKeyRotationsInput{},
	"GetParametersForImport": kms.GetParametersForImportInput{}, "ImportKeyMaterial": kms.ImportKeyMaterialInput{},
	"DeleteImportedKeyMaterial": kms.DeleteImportedKeyMaterialInput{},
}

// TestMembersMatchTheSDK: the decoder refuses members it does not know,
// so every member the AWS SDK can send for a supported operation must be
// known: accepted, or refused by the handler with a clear
// UnsupportedOperationException. A member of a newer SDK that is missing
// here would be refused as "unknown" and break that client.
func TestMembersMatchTheSDK(t *testing.T) {
	for name, op := range operations {
		sdk, ok := sdkInputs[name]
		if !ok {
			t.Errorf("%s: no SDK input type listed in sdkInputs", name)
			continue
		}
		var ours []string
		for f := range op.input.Fields() {
			ours = append(ours, f.Name)
		}
		for f := range reflect.TypeOf(sdk).Fields() {
			if f.IsExported() && !slices.Contains(ours, f.Name) {
				t.Errorf("%s: the SDK sends %s, which %s does not know (it would be refused as unknown)", name, f.Name, op.input)
			}
		}
	}
}
