package awsapi_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/hsmkms/hsmkms/client"
	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// Issue 16, item 9, on the AWS protocol: alias changes signed with an
// access key are authorised on the alias name, the key it leaves and the
// key it joins (the same service methods as the REST API).
func TestAliasChangesNeedTheAliasAndBothKeysOverAWS(t *testing.T) {
	s := start(t)
	ctx := kmstest.Ctx(t)
	admin := s.kmsFor(t, "admin")
	payments := mustKey(t, admin, "alias/payments-main")
	if _, err := admin.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/app-shared"), TargetKeyId: payments}); err != nil {
		t.Fatal(err)
	}
	mine := mustKey(t, admin, "alias/app-mine")
	for name, stmts := range map[string][]client.Statement{
		"mover": {{Effect: "allow", Actions: []string{"kms:UpdateAlias", "kms:CreateAlias", "kms:DeleteAlias"}, Resources: []string{"alias/app-*"}}},
		"owner": {{Effect: "allow", Actions: []string{"kms:*"}, Resources: []string{"key/" + aws.ToString(mine)}}},
	} {
		if _, err := s.admin.PutPolicy(ctx, name, client.PolicyDocument{Statements: stmts}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.admin.CreatePrincipal(ctx, client.CreatePrincipalRequest{Name: name, Policies: []string{name}}); err != nil {
			t.Fatal(err)
		}
	}
	mover, owner := s.kmsFor(t, "mover"), s.kmsFor(t, "owner")

	_, err := mover.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: aws.String("alias/payments-main"), TargetKeyId: mine})
	wantCode(t, "UpdateAlias of alias/payments-main by a principal allowed on alias/app-*", err, "AccessDeniedException")
	_, err = mover.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String("alias/app-shared")})
	wantCode(t, "DeleteAlias of alias/app-shared off a key the caller has no other right on", err, "AccessDeniedException")
	_, err = owner.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/payments-prod"), TargetKeyId: mine})
	wantCode(t, "CreateAlias of alias/payments-prod by a principal allowed kms:* on its key only", err, "AccessDeniedException")

	d, err := admin.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/payments-main")})
	if err != nil || aws.ToString(d.KeyMetadata.KeyId) != aws.ToString(payments) {
		t.Fatalf("alias/payments-main after the refusals: %v %v, want %s", d, err, aws.ToString(payments))
	}
	l, err := admin.ListAliases(ctx, &kms.ListAliasesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range l.Aliases {
		if aws.ToString(a.AliasName) == "alias/payments-prod" {
			t.Error("alias/payments-prod was created")
		}
		if aws.ToString(a.AliasName) == "alias/app-shared" && aws.ToString(a.TargetKeyId) != aws.ToString(payments) {
			t.Error("alias/app-shared left the payments key")
		}
	}
}
