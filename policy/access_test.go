package policy

import "testing"

func TestGlob(t *testing.T) {
	cases := []struct {
		pat, s string
		want   bool
	}{
		{"kms:*", "kms:Encrypt", true},
		{"kms:GenerateDataKey*", "kms:GenerateDataKeyWithoutPlaintext", true},
		{"kms:GenerateDataKey*", "kms:Encrypt", false},
		{"kms:Encrypt", "kms:Encrypt", true},
		{"kms:Encrypt", "kms:EncryptX", false},
		{"alias/app-*", "alias/app-billing", true},
		{"alias/app-*", "alias/other", false},
		{"alias/team/*/key", "alias/team/a/b/key", true},
		{"*", "", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "acb", false},
	}
	for _, c := range cases {
		if got := glob(c.pat, c.s); got != c.want {
			t.Errorf("glob(%q, %q) = %v", c.pat, c.s, got)
		}
	}
}

func TestEvaluate(t *testing.T) {
	app := Document{Statements: []Statement{
		{Effect: EffectAllow, Actions: []string{"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"}, Resources: []string{"alias/app-*"}},
	}}
	admin := Document{Statements: []Statement{
		{Effect: EffectAllow, Actions: []string{"kms:*"}, Resources: []string{"*"}},
		{Effect: EffectDeny, Actions: []string{"kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey"}, Resources: []string{"*"}},
	}}
	key := Resource{KeyID: "k1", Aliases: []string{"alias/app-billing"}}
	other := Resource{KeyID: "k2", Aliases: []string{"alias/payroll"}}
	cases := []struct {
		name   string
		docs   []Document
		action string
		r      Resource
		want   Decision
	}{
		{"app encrypts its key", []Document{app}, "kms:Encrypt", key, Allowed},
		{"app data key", []Document{app}, "kms:GenerateDataKeyWithoutPlaintext", key, Allowed},
		{"app on another key", []Document{app}, "kms:Encrypt", other, Denied},
		{"app cannot rotate", []Document{app}, "kms:RotateKey", key, Denied},
		{"no policy", nil, "kms:Encrypt", key, Denied},
		{"key admin rotates", []Document{admin}, "kms:RotateKey", other, Allowed},
		{"key admin cannot decrypt", []Document{admin}, "kms:Decrypt", key, ExplicitDenied},
		{"deny wins across documents", []Document{app, admin}, "kms:Decrypt", key, ExplicitDenied},
		{"key admin creates", []Document{admin}, "kms:CreateKey", Resource{}, Allowed},
		{"key resource by id", []Document{{Statements: []Statement{{Effect: EffectAllow, Actions: []string{"kms:Encrypt"}, Resources: []string{"key/k2"}}}}}, "kms:Encrypt", other, Allowed},
		{"alias being created", []Document{{Statements: []Statement{{Effect: EffectAllow, Actions: []string{"kms:CreateAlias"}, Resources: []string{"alias/app-*"}}}}}, "kms:CreateAlias", Resource{KeyID: "k2", Alias: "alias/app-new"}, Allowed},
	}
	for _, c := range cases {
		if got := Evaluate(c.docs, c.action, c.r); got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, got, c.want)
		}
	}
}

func TestParseValidates(t *testing.T) {
	good := `{"statements":[{"effect":"allow","actions":["kms:Encrypt"],"resources":["alias/app-*"]}]}`
	if _, err := Parse([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"not json":       `{`,
		"unknown field":  `{"statements":[],"x":1}`,
		"no statements":  `{"statements":[]}`,
		"bad effect":     `{"statements":[{"effect":"maybe","actions":["kms:Encrypt"],"resources":["*"]}]}`,
		"unknown action": `{"statements":[{"effect":"allow","actions":["kms:Explode"],"resources":["*"]}]}`,
		"bad resource":   `{"statements":[{"effect":"allow","actions":["kms:Encrypt"],"resources":["arn:aws:kms"]}]}`,
		"no actions":     `{"statements":[{"effect":"allow","actions":[],"resources":["*"]}]}`,
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
