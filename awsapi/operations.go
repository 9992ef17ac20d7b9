package awsapi

import (
	"github.com/hsmkms/hsmkms/service"
)

// operations are the supported operations by X-Amz-Target name, each with
// the action the service authorises it as (the audit record's action).
// Every other name is UnsupportedOperationException.
var operations = map[string]operation{
	"Encrypt":                         op(service.ActEncrypt, encrypt),
	"Decrypt":                         op(service.ActDecrypt, decrypt),
	"GenerateDataKey":                 op(service.ActGenerateDataKey, dataKey(true)),
	"GenerateDataKeyWithoutPlaintext": op(service.ActGenerateDataKeyNoP, dataKey(false)),
	"ReEncrypt":                       op("kms:ReEncrypt", reEncrypt),
	"GenerateRandom":                  op(service.ActGenerateRandom, generateRandom),

	"CreateKey":            op(service.ActCreateKey, createKey),
	"DescribeKey":          op(service.ActDescribeKey, describeKey),
	"ListKeys":             op(service.ActListKeys, listKeys),
	"EnableKey":            op(service.ActEnableKey, keyChange(func(s Service) keyOp { return s.Keys.EnableKey })),
	"DisableKey":           op(service.ActDisableKey, keyChange(func(s Service) keyOp { return s.Keys.DisableKey })),
	"ScheduleKeyDeletion":  op(service.ActScheduleDeletion, scheduleKeyDeletion),
	"CancelKeyDeletion":    op(service.ActCancelDeletion, cancelKeyDeletion),
	"UpdateKeyDescription": op(service.ActUpdateKey, updateKeyDescription),
	"TagResource":          op(service.ActUpdateKey, tagResource),
	"UntagResource":        op(service.ActUpdateKey, untagResource),
	"ListResourceTags":     op(service.ActDescribeKey, listResourceTags),

	"CreateAlias": op(service.ActCreateAlias, aliasChange(false)),
	"UpdateAlias": op(service.ActUpdateAlias, aliasChange(true)),
	"DeleteAlias": op(service.ActDeleteAlias, deleteAlias),
	"ListAliases": op(service.ActListAliases, listAliases),

	"EnableKeyRotation":    op(service.ActPutRotationPolicy, enableKeyRotation),
	"DisableKeyRotation":   op(service.ActPutRotationPolicy, disableKeyRotation),
	"GetKeyRotationStatus": op(service.ActGetRotationStatus, getKeyRotationStatus),
	"RotateKeyOnDemand":    op(service.ActRotateKey, rotateKeyOnDemand),
	"ListKeyRotations":     op(service.ActListKeyRotations, listKeyRotations),

	"GetParametersForImport":    op(service.ActGetParametersForImport, getParametersForImport),
	"ImportKeyMaterial":         op(service.ActImportKeyMaterial, importKeyMaterial),
	"DeleteImportedKeyMaterial": op(service.ActDeleteImportedKeyMaterial, deleteImportedKeyMaterial),
}
