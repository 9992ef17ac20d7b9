package policy

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Document is an access policy: statements that allow or deny actions on
// resources. Explicit deny wins over allow; no matching allow is a deny.
type Document struct {
	Statements []Statement `json:"statements"`
}

// Statement is one rule of a Document.
type Statement struct {
	Effect    string   `json:"effect"`    // "allow" or "deny"
	Actions   []string `json:"actions"`   // "kms:Encrypt", "kms:GenerateDataKey*", "kms:*"
	Resources []string `json:"resources"` // "key/<id>", "alias/<pattern>", "*"
}

// Effects.
const (
	EffectAllow = "allow"
	EffectDeny  = "deny"
)

// Actions lists every action a statement may name (patterns with '*' are
// matched against it).
var Actions = []string{
	"kms:CreateKey", "kms:DescribeKey", "kms:ListKeys", "kms:UpdateKey",
	"kms:EnableKey", "kms:DisableKey", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
	"kms:RotateKey", "kms:PutRotationPolicy", "kms:GetRotationStatus", "kms:ListKeyRotations",
	"kms:ListKeyVersions", "kms:UpdateKeyVersion",
	"kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias", "kms:ListAliases",
	"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext",
	"kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateRandom",
	"kms:GetParametersForImport", "kms:ImportKeyMaterial", "kms:DeleteImportedKeyMaterial",
	"kms:ManageAccess", "kms:ReadAudit",
}

// Resource is what an action is done to: a key (with its aliases, so that
// alias/<pattern> statements match) or nothing in particular ("*").
type Resource struct {
	KeyID   string   // empty for actions on no key (CreateKey, ListKeys, ...)
	Aliases []string // the key's aliases, with the "alias/" prefix
	Alias   string   // an alias the action creates, moves or deletes
}

// Decision is the outcome of an evaluation.
type Decision int

// Decisions.
const (
	Denied         Decision = iota // no statement allows it
	Allowed                        // an allow matched and no deny did
	ExplicitDenied                 // a deny statement matched
)

// Evaluate decides action on r under all docs of a principal: an explicit
// deny in any document wins; otherwise any matching allow allows.
func Evaluate(docs []Document, action string, r Resource) Decision {
	allowed := false
	for _, d := range docs {
		for _, s := range d.Statements {
			if !s.matchesAction(action) || !s.matchesResource(r) {
				continue
			}
			if s.Effect == EffectDeny {
				return ExplicitDenied
			}
			allowed = true
		}
	}
	if allowed {
		return Allowed
	}
	return Denied
}

func (s Statement) matchesAction(action string) bool {
	for _, a := range s.Actions {
		if glob(a, action) {
			return true
		}
	}
	return false
}

func (s Statement) matchesResource(r Resource) bool {
	for _, pat := range s.Resources {
		switch {
		case pat == "*":
			return true
		case strings.HasPrefix(pat, "key/"):
			if r.KeyID != "" && glob(strings.TrimPrefix(pat, "key/"), r.KeyID) {
				return true
			}
		case strings.HasPrefix(pat, "alias/"):
			if r.Alias != "" && glob(pat, r.Alias) {
				return true
			}
			for _, a := range r.Aliases {
				if glob(pat, a) {
					return true
				}
			}
		}
	}
	return false
}

// glob matches s against pattern, where '*' matches any run of characters
// (including '/': alias names may contain it) and nothing else is special.
func glob(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// Parse reads and validates a policy document: known effects, actions that
// match at least one known action, resources of the three forms.
func Parse(data []byte) (Document, error) {
	var d Document
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return Document{}, fmt.Errorf("policy document is not valid JSON of the form {\"statements\":[...]}")
	}
	return d, d.Validate()
}

// Validate checks a document and names the first bad part.
func (d Document) Validate() error {
	if len(d.Statements) == 0 {
		return fmt.Errorf("policy document has no statements")
	}
	for i, s := range d.Statements {
		if s.Effect != EffectAllow && s.Effect != EffectDeny {
			return fmt.Errorf("statement %d: effect must be allow or deny", i)
		}
		if len(s.Actions) == 0 || len(s.Resources) == 0 {
			return fmt.Errorf("statement %d: actions and resources must not be empty", i)
		}
		for _, a := range s.Actions {
			if !knownAction(a) {
				return fmt.Errorf("statement %d: action %q matches no action", i, a)
			}
		}
		for _, r := range s.Resources {
			if r != "*" && !strings.HasPrefix(r, "key/") && !strings.HasPrefix(r, "alias/") {
				return fmt.Errorf("statement %d: resource %q must be *, key/<id> or alias/<pattern>", i, r)
			}
		}
	}
	return nil
}

func knownAction(pattern string) bool {
	for _, a := range Actions {
		if glob(pattern, a) {
			return true
		}
	}
	return false
}
