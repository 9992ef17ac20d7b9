package service

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/hsmkms/hsmkms/policy"
)

// Caller is who makes a request: an authenticated principal with its policy
// documents, or the system itself (the worker, start-up provisioning).
type Caller struct {
	Principal string
	// Credential names what authenticated the caller, never a secret:
	// "token:<id>" (a bearer token's id), "access_key:<AKIA...>" or
	// "certificate:<subject>"; the audit record keeps it.
	Credential string
	Docs       []policy.Document
	system     bool
}

// Activity is what a request did, filled in as it goes: StartActivity
// begins it with who and where, the service notes the action's key and
// version, and the audit part writes it as the request's record (Audit.Record,
// or a management change's own transaction). Its fields are the service's:
// the API only starts it, reads what was noted, and hands it to Record.
type Activity struct {
	requestID  string
	principal  string
	credential string
	source     string
	action     string
	keyID      string
	keyVersion int
	detail     map[string]string

	// recorded is set by the audit part once the record committed
	// together with a change (management actions): Audit.Record then does
	// not write it again.
	recorded bool
	// appended is the record once appended in a change's transaction.
	appended *AuditEvent
}

// StartActivity begins the audit activity of one request and returns ctx
// carrying it. The principal is the caller's, once WithCaller names it.
func StartActivity(ctx context.Context, requestID, source, action string) (context.Context, *Activity) {
	a := &Activity{requestID: requestID, source: source, action: action}
	if c := CallerFrom(ctx); c != nil {
		a.principal, a.credential = c.Principal, c.Credential
	}
	return withActivity(ctx, a), a
}

// Noted returns the key and version the request touched (for the request
// log); "" and 0 when none.
func (a *Activity) Noted() (keyID string, version int) {
	if a == nil {
		return "", 0
	}
	return a.keyID, a.keyVersion
}

// StartBatchItem begins the activity of item i of a batch request whose
// activity is parent: the same request id, principal and source, the item's
// own action and key, and "batch_item" i in the detail. Each item is
// recorded on its own (Audit.Record).
func StartBatchItem(ctx context.Context, parent *Activity, action string, i int) (context.Context, *Activity) {
	a := &Activity{action: action, detail: map[string]string{"batch_item": strconv.Itoa(i)}}
	if parent != nil {
		a.requestID, a.principal, a.credential, a.source = parent.requestID, parent.principal, parent.credential, parent.source
	}
	return withActivity(ctx, a), a
}

type callerKey struct{}
type activityKey struct{}

// WithCaller returns ctx carrying the authenticated caller, and names it as
// the principal of ctx's activity.
func WithCaller(ctx context.Context, c *Caller) context.Context {
	if a := activityFrom(ctx); a != nil && c != nil {
		a.principal, a.credential = c.Principal, c.Credential
	}
	return context.WithValue(ctx, callerKey{}, c)
}

// AsSystem returns ctx for work the service does on its own behalf (the
// worker, provisioning, kmsd init): every action is allowed.
func AsSystem(ctx context.Context) context.Context {
	return WithCaller(ctx, &Caller{Principal: "system", system: true})
}

// CallerFrom returns the caller of ctx, or nil.
func CallerFrom(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}

// withActivity returns ctx carrying a, which the service fills in.
func withActivity(ctx context.Context, a *Activity) context.Context {
	return context.WithValue(ctx, activityKey{}, a)
}

func activityFrom(ctx context.Context) *Activity {
	a, _ := ctx.Value(activityKey{}).(*Activity)
	return a
}

// SummaryActivity is the record of many refused requests from one source
// counted together (the API's summaries of failed authentication): no
// principal, the count and span in detail.
func SummaryActivity(source, action string, detail map[string]string) *Activity {
	return &Activity{source: source, action: action, detail: detail}
}

// systemActivity is the audit record of work the service does by itself.
func systemActivity(action, keyID string, detail ...string) *Activity {
	a := &Activity{principal: "system", action: action, keyID: keyID}
	for i := 0; i+1 < len(detail); i += 2 {
		if a.detail == nil {
			a.detail = map[string]string{}
		}
		a.detail[detail[i]] = detail[i+1]
	}
	return a
}

// note records the key (and version, when known) an action touched.
func note(ctx context.Context, keyID string, version int) {
	if a := activityFrom(ctx); a != nil {
		if keyID != "" {
			a.keyID = keyID
		}
		if version != 0 {
			a.keyVersion = version
		}
	}
}

// noteDetail adds a detail to the request's audit record (names, never
// secrets).
func noteDetail(ctx context.Context, k, v string) {
	if a := activityFrom(ctx); a != nil {
		if a.detail == nil {
			a.detail = map[string]string{}
		}
		a.detail[k] = v
	}
}

// Actions the service authorises (policy.Actions lists them all).
const (
	ActCreateKey                 = "kms:CreateKey"
	ActDescribeKey               = "kms:DescribeKey"
	ActListKeys                  = "kms:ListKeys"
	ActUpdateKey                 = "kms:UpdateKey"
	ActEnableKey                 = "kms:EnableKey"
	ActDisableKey                = "kms:DisableKey"
	ActScheduleDeletion          = "kms:ScheduleKeyDeletion"
	ActCancelDeletion            = "kms:CancelKeyDeletion"
	ActRotateKey                 = "kms:RotateKey"
	ActPutRotationPolicy         = "kms:PutRotationPolicy"
	ActGetRotationStatus         = "kms:GetRotationStatus"
	ActListKeyRotations          = "kms:ListKeyRotations"
	ActListKeyVersions           = "kms:ListKeyVersions"
	ActUpdateKeyVersion          = "kms:UpdateKeyVersion"
	ActCreateAlias               = "kms:CreateAlias"
	ActUpdateAlias               = "kms:UpdateAlias"
	ActDeleteAlias               = "kms:DeleteAlias"
	ActListAliases               = "kms:ListAliases"
	ActEncrypt                   = "kms:Encrypt"
	ActDecrypt                   = "kms:Decrypt"
	ActGenerateDataKey           = "kms:GenerateDataKey"
	ActGenerateDataKeyNoP        = "kms:GenerateDataKeyWithoutPlaintext"
	ActReEncryptFrom             = "kms:ReEncryptFrom"
	ActReEncryptTo               = "kms:ReEncryptTo"
	ActGenerateRandom            = "kms:GenerateRandom"
	ActGetParametersForImport    = "kms:GetParametersForImport"
	ActImportKeyMaterial         = "kms:ImportKeyMaterial"
	ActDeleteImportedKeyMaterial = "kms:DeleteImportedKeyMaterial"
	ActManageAccess              = "kms:ManageAccess"
	ActReadAudit                 = "kms:ReadAudit"
)

// allow decides action on r for the caller of ctx. No caller is a denial:
// the service fails closed.
func allow(ctx context.Context, action string, r policy.Resource) error {
	c := CallerFrom(ctx)
	if c != nil && c.system {
		return nil
	}
	if c == nil {
		return errorf(ErrAccessDenied, "no authenticated caller may %s", action)
	}
	switch policy.Evaluate(c.Docs, action, r) {
	case policy.Allowed:
		return nil
	case policy.ExplicitDenied:
		return errorf(ErrAccessDenied, "principal %q is explicitly denied %s on %s", c.Principal, action, describe(r))
	}
	return errorf(ErrAccessDenied, "principal %q is not allowed %s on %s", c.Principal, action, describe(r))
}

// describe names the resource as the caller named it: a key named by an
// alias is not told by its id, or a caller could learn alias targets from
// refusals.
func describe(r policy.Resource) string {
	switch {
	case r.Alias != "":
		return r.Alias
	case r.KeyID != "":
		return "key " + r.KeyID
	}
	return "this service"
}

// access resolves ref (a key id or alias) and authorises action on the key,
// matching statements on its id, on the alias it was named by and on every
// alias it has. It returns the key's view. A key that does not exist is
// reported as not found only to callers who would have been allowed the
// action on it: others learn nothing about which keys exist.
func (s *Keys) access(ctx context.Context, action, ref string) (*keyView, error) {
	return s.accessExcept(ctx, action, ref, "")
}

// accessExcept is access in which the alias except grants nothing: neither
// as the name ref gives nor as one of the key's aliases. Alias changes use
// it, so that the right on the alias being created, moved or deleted never
// stands in for the right on a key (each is checked on its own).
func (s *Keys) accessExcept(ctx context.Context, action, ref, except string) (*keyView, error) {
	id, err := s.resolveID(ctx, ref)
	via := ""
	if strings.HasPrefix(ref, AliasPrefix) && ref != except {
		via = ref
	}
	if errors.Is(err, ErrNotFound) {
		if aerr := allow(ctx, action, policy.Resource{Alias: via}); aerr != nil {
			return nil, aerr
		}
		if !isManagedAlias(ref) || !createsManaged[action] {
			return nil, err
		}
		// First use of a service-managed default key by a principal
		// allowed to use it: the service creates it.
		if id, err = s.createManaged(ctx, ref); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}
	v, err := s.viewByID(ctx, id)
	if errors.Is(err, ErrNotFound) {
		if aerr := allow(ctx, action, policy.Resource{KeyID: id, Alias: via}); aerr != nil {
			return nil, aerr
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	note(ctx, id, 0)
	if err := allow(ctx, action, policy.Resource{KeyID: id, Aliases: without(v.aliases, except), Alias: via}); err != nil {
		return nil, err
	}
	return v, nil
}

// without returns names less except (names itself when except is absent).
func without(names []string, except string) []string {
	if except == "" || !slices.Contains(names, except) {
		return names
	}
	out := make([]string, 0, len(names)-1)
	for _, n := range names {
		if n != except {
			out = append(out, n)
		}
	}
	return out
}
