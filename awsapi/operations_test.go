package awsapi_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/internal/byok"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// must fails the test on err.
func must[T any](t *testing.T, what string) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

// wantErr requires err to be the typed exception E.
func wantErr[E error](t *testing.T, what string, err error) {
	t.Helper()
	var e E
	if !errors.As(err, &e) {
		t.Fatalf("%s: got %v (%T), want %T", what, err, err, e)
	}
}

// TestEveryOperationThroughTheAWSSDK drives every supported operation with
// the real aws-sdk-go-v2 KMS client, and checks what it answers.
func TestEveryOperationThroughTheAWSSDK(t *testing.T) {
	s := start(t)
	c := s.kmsFor(t, "admin")
	ctx := kmstest.Ctx(t)

	// Keys.
	created := must[*kms.CreateKeyOutput](t, "CreateKey")(c.CreateKey(ctx, &kms.CreateKeyInput{
		Description: aws.String("app key"), Tags: []types.Tag{{TagKey: aws.String("env"), TagValue: aws.String("prod")}}}))
	md := created.KeyMetadata
	id := aws.ToString(md.KeyId)
	if aws.ToString(md.Arn) != keyARN(id) || md.KeyState != types.KeyStateEnabled || !md.Enabled ||
		md.KeySpec != types.KeySpecSymmetricDefault || md.KeyUsage != types.KeyUsageTypeEncryptDecrypt ||
		md.Origin != types.OriginTypeAwsKms || md.KeyManager != types.KeyManagerTypeCustomer ||
		aws.ToString(md.AWSAccountId) != account || md.CreationDate == nil ||
		!slices.Equal(md.EncryptionAlgorithms, []types.EncryptionAlgorithmSpec{types.EncryptionAlgorithmSpecSymmetricDefault}) {
		t.Fatalf("CreateKey metadata: %+v", md)
	}
	other := aws.ToString(must[*kms.CreateKeyOutput](t, "CreateKey")(c.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId)
	must[*kms.CreateAliasOutput](t, "CreateAlias")(c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/app"), TargetKeyId: aws.String(id)}))

	// Every KeyId form names the same key.
	for _, ref := range []string{id, keyARN(id), "alias/app", aliasARN("alias/app")} {
		d := must[*kms.DescribeKeyOutput](t, "DescribeKey "+ref)(c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(ref)}))
		if aws.ToString(d.KeyMetadata.KeyId) != id || aws.ToString(d.KeyMetadata.Description) != "app key" {
			t.Errorf("DescribeKey %s: %+v", ref, d.KeyMetadata)
		}
	}
	_, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(uuid.NewString())})
	wantErr[*types.NotFoundException](t, "DescribeKey of an unknown key id", err)
	_, err = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("arn:aws:kms:us-west-2:" + account + ":key/" + id)})
	wantErr[*types.NotFoundException](t, "DescribeKey of another region's ARN", err)

	// Data plane: responses name the key by its ARN.
	pt := []byte("a secret of the application")
	enc := must[*kms.EncryptOutput](t, "Encrypt")(c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(aliasARN("alias/app")),
		Plaintext: pt, EncryptionContext: map[string]string{"purpose": "test"}}))
	if aws.ToString(enc.KeyId) != keyARN(id) || enc.EncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault {
		t.Errorf("Encrypt: KeyId %s, algorithm %s", aws.ToString(enc.KeyId), enc.EncryptionAlgorithm)
	}
	dec := must[*kms.DecryptOutput](t, "Decrypt")(c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob,
		EncryptionContext: map[string]string{"purpose": "test"}}))
	if !bytes.Equal(dec.Plaintext, pt) || aws.ToString(dec.KeyId) != keyARN(id) {
		t.Errorf("Decrypt: %q under %s", dec.Plaintext, aws.ToString(dec.KeyId))
	}
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"purpose": "test"}, KeyId: aws.String(other)})
	wantErr[*types.IncorrectKeyException](t, "Decrypt naming another key", err)
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	wantErr[*types.InvalidCiphertextException](t, "Decrypt without the context", err)
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: pt, EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
	wantErr[*types.InvalidKeyUsageException](t, "Encrypt with an RSA algorithm", err)

	dk := must[*kms.GenerateDataKeyOutput](t, "GenerateDataKey")(c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String("alias/app"), KeySpec: types.DataKeySpecAes256}))
	if len(dk.Plaintext) != 32 || aws.ToString(dk.KeyId) != keyARN(id) {
		t.Errorf("GenerateDataKey: %d bytes under %s", len(dk.Plaintext), aws.ToString(dk.KeyId))
	}
	if back := must[*kms.DecryptOutput](t, "Decrypt data key")(c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob})); !bytes.Equal(back.Plaintext, dk.Plaintext) {
		t.Error("the data key's blob does not decrypt to its plaintext")
	}
	dk16 := must[*kms.GenerateDataKeyOutput](t, "GenerateDataKey 16")(c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(id), NumberOfBytes: aws.Int32(16)}))
	if len(dk16.Plaintext) != 16 {
		t.Errorf("NumberOfBytes 16: %d bytes", len(dk16.Plaintext))
	}
	_, err = c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(id), NumberOfBytes: aws.Int32(16), KeySpec: types.DataKeySpecAes128})
	wantCode(t, "GenerateDataKey with KeySpec and NumberOfBytes", err, "ValidationException")
	np := must[*kms.GenerateDataKeyWithoutPlaintextOutput](t, "GenerateDataKeyWithoutPlaintext")(c.GenerateDataKeyWithoutPlaintext(ctx,
		&kms.GenerateDataKeyWithoutPlaintextInput{KeyId: aws.String(id), KeySpec: types.DataKeySpecAes128}))
	if back := must[*kms.DecryptOutput](t, "Decrypt")(c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: np.CiphertextBlob})); len(back.Plaintext) != 16 || aws.ToString(np.KeyId) != keyARN(id) {
		t.Errorf("GenerateDataKeyWithoutPlaintext: %d bytes under %s", len(back.Plaintext), aws.ToString(np.KeyId))
	}

	re := must[*kms.ReEncryptOutput](t, "ReEncrypt")(c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob,
		SourceEncryptionContext: map[string]string{"purpose": "test"}, SourceKeyId: aws.String("alias/app"), DestinationKeyId: aws.String(other)}))
	if aws.ToString(re.SourceKeyId) != keyARN(id) || aws.ToString(re.KeyId) != keyARN(other) {
		t.Errorf("ReEncrypt: from %s to %s", aws.ToString(re.SourceKeyId), aws.ToString(re.KeyId))
	}
	if back := must[*kms.DecryptOutput](t, "Decrypt re-encrypted")(c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: re.CiphertextBlob})); !bytes.Equal(back.Plaintext, pt) || aws.ToString(back.KeyId) != keyARN(other) {
		t.Errorf("re-encrypted blob: %q under %s", back.Plaintext, aws.ToString(back.KeyId))
	}
	_, err = c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceEncryptionContext: map[string]string{"purpose": "test"},
		SourceKeyId: aws.String(other), DestinationKeyId: aws.String(other)})
	wantErr[*types.IncorrectKeyException](t, "ReEncrypt naming another source key", err)

	rnd := must[*kms.GenerateRandomOutput](t, "GenerateRandom")(c.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(32)}))
	if len(rnd.Plaintext) != 32 {
		t.Errorf("GenerateRandom: %d bytes", len(rnd.Plaintext))
	}
	_, err = c.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(5000)})
	wantCode(t, "GenerateRandom of 5000 bytes", err, "ValidationException")

	// Lifecycle.
	must[*kms.DisableKeyOutput](t, "DisableKey")(c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(id)}))
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: pt})
	wantErr[*types.DisabledException](t, "Encrypt under a disabled key", err)
	must[*kms.EnableKeyOutput](t, "EnableKey")(c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(id)}))
	must[*kms.UpdateKeyDescriptionOutput](t, "UpdateKeyDescription")(c.UpdateKeyDescription(ctx, &kms.UpdateKeyDescriptionInput{KeyId: aws.String(id), Description: aws.String("renamed")}))
	if d := must[*kms.DescribeKeyOutput](t, "DescribeKey")(c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})); aws.ToString(d.KeyMetadata.Description) != "renamed" {
		t.Errorf("description after UpdateKeyDescription: %q", aws.ToString(d.KeyMetadata.Description))
	}

	// Tags, with pagination.
	must[*kms.TagResourceOutput](t, "TagResource")(c.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(id), Tags: []types.Tag{
		{TagKey: aws.String("team"), TagValue: aws.String("pay")}, {TagKey: aws.String("env"), TagValue: aws.String("stage")}}}))
	must[*kms.UntagResourceOutput](t, "UntagResource")(c.UntagResource(ctx, &kms.UntagResourceInput{KeyId: aws.String(id), TagKeys: []string{"team"}}))
	must[*kms.TagResourceOutput](t, "TagResource")(c.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(id), Tags: []types.Tag{{TagKey: aws.String("owner"), TagValue: aws.String("ops")}}}))
	var tags []string
	for p := kms.NewListResourceTagsPaginator(c, &kms.ListResourceTagsInput{KeyId: aws.String(id), Limit: aws.Int32(1)}); p.HasMorePages(); {
		page := must[*kms.ListResourceTagsOutput](t, "ListResourceTags")(p.NextPage(ctx))
		if len(page.Tags) > 1 {
			t.Fatalf("a page of %d tags with Limit 1", len(page.Tags))
		}
		for _, tg := range page.Tags {
			tags = append(tags, aws.ToString(tg.TagKey)+"="+aws.ToString(tg.TagValue))
		}
	}
	if !slices.Equal(tags, []string{"env=stage", "owner=ops"}) {
		t.Errorf("tags: %v", tags)
	}

	// Listing keys, one per page.
	var ids []string
	pages := 0
	for p := kms.NewListKeysPaginator(c, &kms.ListKeysInput{Limit: aws.Int32(1)}); p.HasMorePages(); pages++ {
		page := must[*kms.ListKeysOutput](t, "ListKeys")(p.NextPage(ctx))
		for _, k := range page.Keys {
			if aws.ToString(k.KeyArn) != keyARN(aws.ToString(k.KeyId)) {
				t.Errorf("ListKeys entry %+v", k)
			}
			ids = append(ids, aws.ToString(k.KeyId))
		}
	}
	if want := []string{id, other}; pages < 2 || !sameSet(ids, want) {
		t.Errorf("ListKeys: %v in %d pages, want %v one per page", ids, pages, want)
	}

	// Aliases.
	must[*kms.CreateAliasOutput](t, "CreateAlias")(c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/other"), TargetKeyId: aws.String(keyARN(other))}))
	_, err = c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/other"), TargetKeyId: aws.String(id)})
	wantErr[*types.AlreadyExistsException](t, "CreateAlias of a taken name", err)
	must[*kms.UpdateAliasOutput](t, "UpdateAlias")(c.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: aws.String("alias/other"), TargetKeyId: aws.String(id)}))
	la := must[*kms.ListAliasesOutput](t, "ListAliases")(c.ListAliases(ctx, &kms.ListAliasesInput{KeyId: aws.String(keyARN(id))}))
	var names []string
	for _, a := range la.Aliases {
		if aws.ToString(a.AliasArn) != aliasARN(aws.ToString(a.AliasName)) || aws.ToString(a.TargetKeyId) != id || a.CreationDate == nil {
			t.Errorf("ListAliases entry %+v", a)
		}
		names = append(names, aws.ToString(a.AliasName))
	}
	if !slices.Equal(names, []string{"alias/app", "alias/other"}) || la.Truncated {
		t.Errorf("aliases of the key: %v (truncated %v)", names, la.Truncated)
	}
	p1 := must[*kms.ListAliasesOutput](t, "ListAliases")(c.ListAliases(ctx, &kms.ListAliasesInput{Limit: aws.Int32(1)}))
	if len(p1.Aliases) != 1 || !p1.Truncated || p1.NextMarker == nil {
		t.Errorf("ListAliases Limit 1: %d aliases, truncated %v", len(p1.Aliases), p1.Truncated)
	}
	p2 := must[*kms.ListAliasesOutput](t, "ListAliases")(c.ListAliases(ctx, &kms.ListAliasesInput{Limit: aws.Int32(1), Marker: p1.NextMarker}))
	if len(p2.Aliases) != 1 || aws.ToString(p2.Aliases[0].AliasName) == aws.ToString(p1.Aliases[0].AliasName) {
		t.Errorf("second page of aliases: %+v", p2.Aliases)
	}
	must[*kms.DeleteAliasOutput](t, "DeleteAlias")(c.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String("alias/other")}))
	_, err = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/other")})
	wantErr[*types.NotFoundException](t, "DescribeKey of a deleted alias", err)

	// Rotation.
	must[*kms.EnableKeyRotationOutput](t, "EnableKeyRotation")(c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: aws.String(id), RotationPeriodInDays: aws.Int32(90)}))
	st := must[*kms.GetKeyRotationStatusOutput](t, "GetKeyRotationStatus")(c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: aws.String("alias/app")}))
	if !st.KeyRotationEnabled || aws.ToInt32(st.RotationPeriodInDays) != 90 || st.NextRotationDate == nil || aws.ToString(st.KeyId) != keyARN(id) {
		t.Errorf("rotation status: %+v", st)
	}
	rot := must[*kms.RotateKeyOnDemandOutput](t, "RotateKeyOnDemand")(c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String("alias/app")}))
	if aws.ToString(rot.KeyId) != keyARN(id) {
		t.Errorf("RotateKeyOnDemand: %s", aws.ToString(rot.KeyId))
	}
	// As in AWS, an on-demand rotation leaves the automatic schedule alone;
	// it finishes before the answer, so no OnDemandRotationStartDate.
	after := must[*kms.GetKeyRotationStatusOutput](t, "GetKeyRotationStatus")(c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: aws.String(id)}))
	if after.NextRotationDate == nil || !after.NextRotationDate.Equal(*st.NextRotationDate) || after.OnDemandRotationStartDate != nil {
		t.Errorf("rotation status after RotateKeyOnDemand: next %v (before %v), on-demand start %v", after.NextRotationDate, st.NextRotationDate, after.OnDemandRotationStartDate)
	}
	must[*kms.DisableKeyRotationOutput](t, "DisableKeyRotation")(c.DisableKeyRotation(ctx, &kms.DisableKeyRotationInput{KeyId: aws.String(id)}))
	if st := must[*kms.GetKeyRotationStatusOutput](t, "GetKeyRotationStatus")(c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: aws.String(id)})); st.KeyRotationEnabled {
		t.Error("rotation still enabled after DisableKeyRotation")
	}
	lr := must[*kms.ListKeyRotationsOutput](t, "ListKeyRotations")(c.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: aws.String(id)}))
	if len(lr.Rotations) != 1 || lr.Rotations[0].RotationType != types.RotationTypeOnDemand || lr.Rotations[0].RotationDate == nil {
		t.Errorf("ListKeyRotations: %+v", lr.Rotations)
	}
	if back := must[*kms.DecryptOutput](t, "Decrypt after rotation")(c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob,
		EncryptionContext: map[string]string{"purpose": "test"}})); !bytes.Equal(back.Plaintext, pt) {
		t.Error("a blob of the old version no longer decrypts")
	}

	// Deletion.
	sd := must[*kms.ScheduleKeyDeletionOutput](t, "ScheduleKeyDeletion")(c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(other), PendingWindowInDays: aws.Int32(7)}))
	if sd.KeyState != types.KeyStatePendingDeletion || aws.ToInt32(sd.PendingWindowInDays) != 7 || sd.DeletionDate == nil || aws.ToString(sd.KeyId) != keyARN(other) {
		t.Errorf("ScheduleKeyDeletion: %+v", sd)
	}
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(other), Plaintext: pt})
	wantErr[*types.KMSInvalidStateException](t, "Encrypt under a key pending deletion", err)
	for _, days := range []int32{0, 6, 31} {
		_, err = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(id), PendingWindowInDays: aws.Int32(days)})
		wantCode(t, fmt.Sprintf("ScheduleKeyDeletion of %d days", days), err, "ValidationException")
	}
	if d := must[*kms.DescribeKeyOutput](t, "DescribeKey")(c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})); d.KeyMetadata.KeyState != types.KeyStateEnabled {
		t.Errorf("refused ScheduleKeyDeletions changed the key: %s", d.KeyMetadata.KeyState)
	}
	cd := must[*kms.CancelKeyDeletionOutput](t, "CancelKeyDeletion")(c.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: aws.String(other)}))
	if aws.ToString(cd.KeyId) != keyARN(other) {
		t.Errorf("CancelKeyDeletion: %s", aws.ToString(cd.KeyId))
	}
	if d := must[*kms.DescribeKeyOutput](t, "DescribeKey")(c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(other)})); d.KeyMetadata.KeyState != types.KeyStateDisabled {
		t.Errorf("state after CancelKeyDeletion: %s", d.KeyMetadata.KeyState)
	}

	// Bring your own key.
	ext := must[*kms.CreateKeyOutput](t, "CreateKey EXTERNAL")(c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal}))
	extID := aws.ToString(ext.KeyMetadata.KeyId)
	if ext.KeyMetadata.KeyState != types.KeyStatePendingImport || ext.KeyMetadata.Origin != types.OriginTypeExternal {
		t.Fatalf("EXTERNAL key: %+v", ext.KeyMetadata)
	}
	params := must[*kms.GetParametersForImportOutput](t, "GetParametersForImport")(c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{
		KeyId: aws.String(extID), WrappingAlgorithm: types.AlgorithmSpecRsaAesKeyWrapSha1, WrappingKeySpec: types.WrappingKeySpecRsa3072}))
	pubAny, err := x509.ParsePKIXPublicKey(params.PublicKey)
	if err != nil || params.ParametersValidTo == nil || aws.ToString(params.KeyId) != keyARN(extID) {
		t.Fatalf("import parameters: %v, %+v", err, params)
	}
	material := make([]byte, 32)
	_, _ = rand.Read(material)
	wrapped, err := byok.Wrap("RSA_AES_KEY_WRAP_SHA_1", pubAny.(*rsa.PublicKey), material)
	if err != nil {
		t.Fatal(err)
	}
	must[*kms.ImportKeyMaterialOutput](t, "ImportKeyMaterial")(c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: aws.String(extID),
		ImportToken: params.ImportToken, EncryptedKeyMaterial: wrapped, ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire}))
	extBlob := must[*kms.EncryptOutput](t, "Encrypt under imported material")(c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(extID), Plaintext: pt}))
	if back := must[*kms.DecryptOutput](t, "Decrypt")(c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: extBlob.CiphertextBlob})); !bytes.Equal(back.Plaintext, pt) {
		t.Error("imported key does not round-trip")
	}
	must[*kms.DeleteImportedKeyMaterialOutput](t, "DeleteImportedKeyMaterial")(c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: aws.String(extID)}))
	if d := must[*kms.DescribeKeyOutput](t, "DescribeKey")(c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(extID)})); d.KeyMetadata.KeyState != types.KeyStatePendingImport {
		t.Errorf("state after DeleteImportedKeyMaterial: %s", d.KeyMetadata.KeyState)
	}

	// What hsmkms does not offer is refused by name, changing nothing.
	_, err = c.Sign(ctx, &kms.SignInput{KeyId: aws.String(id), Message: []byte("m"), SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	wantErr[*types.UnsupportedOperationException](t, "Sign", err)
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeSignVerify})
	wantErr[*types.UnsupportedOperationException](t, "CreateKey RSA_2048", err)
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{Policy: aws.String(`{"Version":"2012-10-17"}`)})
	wantErr[*types.UnsupportedOperationException](t, "CreateKey with a key policy", err)
	if n := must[*kms.ListKeysOutput](t, "ListKeys")(c.ListKeys(ctx, &kms.ListKeysInput{})); len(n.Keys) != 3 {
		t.Errorf("refused CreateKeys made keys: %d keys", len(n.Keys))
	}
}

// wantCode requires err to be the AWS exception name (for those the KMS
// SDK has no type of, such as ValidationException).
func wantCode(t *testing.T, what string, err error, name string) {
	t.Helper()
	if got := code(err); got != name {
		t.Fatalf("%s: got %v (code %q), want %s", what, err, got, name)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
