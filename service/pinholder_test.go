package service_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
	"github.com/hsmkms/hsmkms/service"
	"github.com/miekg/pkcs11"
)

// noLocalToken is the test token under a profile that does not trust
// CKA_LOCAL (as for NSS softoken, which reports false for generated
// keys): then only the version's nonce keeps a planted key out.
func noLocalToken(t *testing.T) *hsm.PKCS11 {
	t.Helper()
	kmstest.Token(t)
	env := softhsmtest.Get(t)
	prof, err := hsm.SelectProfile(env.Profile, env.Module)
	if err != nil {
		t.Fatal(err)
	}
	prof.ReportsLocal = false
	tok, err := hsm.Open(kmstest.Ctx(t), hsm.Config{Module: env.Module, InitArgs: env.InitArgs, TokenLabel: env.Label, PIN: env.PIN, Profile: prof})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
	return tok
}

// opens says whether a GCM encryption by the token under ref opens with
// key in Go: whether ref's object is the key.
func opens(t *testing.T, tok hsm.Token, ref hsm.ObjectRef, key []byte) bool {
	t.Helper()
	iv, ct, err := tok.Encrypt(kmstest.Ctx(t), ref, []byte("probe"), nil)
	if err != nil {
		t.Fatalf("encrypt under %s: %v", ref, err)
	}
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCMWithNonceSize(block, len(iv))
	_, err = gcm.Open(nil, iv, ct, nil)
	return err == nil
}

// Issue 16, item 1: someone with the PIN plants a key it knows under the
// name the next version had before names had a nonce (and the audit seal
// key's), then the service rotates (and seals). The new version and the
// seal key are objects the service made; the planted ones are never used,
// and the reconciler removes the planted version object.
func TestPlantedNextVersionIsNotAdopted(t *testing.T) {
	w := newWorld(t)
	tok := noLocalToken(t)
	w.token = kmstest.NewFaultToken(tok)
	w.restart(nil)
	out := kmstest.NewOutsider(t)
	id := w.newKey()

	predicted := hsm.ObjectRef{KeyID: uuid.MustParse(id), Version: 2}
	known, err := out.PlantKnownKey(predicted)
	if err != nil {
		t.Fatal(err)
	}
	if !opens(t, tok, predicted, known) {
		t.Fatal("the attacker does not know the planted key (the test would prove nothing)")
	}
	if _, err := w.svc.Worker.RotateKey(w.ctx, id); err != nil {
		t.Fatal(err)
	}
	v2 := w.ref(id, 2)
	if v2.Legacy() || v2 == predicted {
		t.Fatalf("version 2 is named %s, predictable", v2)
	}
	if opens(t, tok, v2, known) {
		t.Fatal("version 2 encrypts under the planted key")
	}
	w.encrypt(id)
	rep, err := w.svc.Worker.Reconcile(w.ctx)
	if err != nil || rep.ObjectsDestroyed != 0 || len(rep.Kept) != 1 || !strings.HasPrefix(rep.Kept[0], predicted.Label()+":") {
		t.Fatalf("reconcile: %v %+v, want the planted object reported (an object without a row is never destroyed)", err, rep)
	}
	if err := out.Destroy(predicted); err != nil { // the operator, after looking at it
		t.Fatal(err)
	}
	w.check(id)

	// The audit seal key: planted under its old name before the first seal.
	sealName := hsm.ObjectRef{KeyID: service.AuditSealKeyID, Version: 1}
	known, err = out.PlantKnownKey(sealName)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Destroy(sealName)
	_, a := service.StartActivity(w.ctx, uuid.NewString(), "", service.ActGenerateRandom)
	if err := w.svc.Audit.Record(w.ctx, a, service.OutcomeAllowed, ""); err != nil {
		t.Fatal(err)
	}
	if err := w.svc.Audit.SealAudit(w.ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := w.store.ListAudit(w.ctx, service.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	seals := 0
	for _, r := range rows {
		if r.Action != service.ActAuditSeal {
			continue
		}
		seals++
		var d struct{ Key string }
		if err := json.Unmarshal([]byte(r.Detail), &d); err != nil {
			t.Fatal(err)
		}
		ref, err := hsm.ParseLabel(d.Key)
		if err != nil || ref.KeyID != service.AuditSealKeyID || ref.Legacy() {
			t.Fatalf("the seal names key %q (%v), want the seal key with a nonce", d.Key, err)
		}
		if opens(t, tok, ref, known) {
			t.Fatal("the seal key is the planted key")
		}
	}
	if seals != 1 {
		t.Fatalf("%d seals, want 1", seals)
	}
	if v, err := w.svc.Audit.VerifyAudit(w.ctx); err != nil || !v.Intact {
		t.Fatalf("verify: %v %+v", err, v)
	}
}

// Issue 16, item 4: the reconciler checks every attribute of a version's
// template, not only CKA_ENCRYPT. What someone with the PIN switched
// (CKA_DERIVE on, an ECB oracle on tokens without CKA_ALLOWED_MECHANISMS;
// CKA_DECRYPT off; CKA_SIGN on) is set back and counted; an object that
// was replaced by one the token did not generate is reported where the
// token reports CKA_LOCAL truthfully.
func TestReconcilerSetsAttributesBack(t *testing.T) {
	w := newWorld(t)
	out := kmstest.NewOutsider(t)
	id := w.newKey()
	if _, err := w.svc.Worker.RotateKey(w.ctx, id); err != nil {
		t.Fatal(err)
	}
	w.encrypt(id)
	v1, v2 := w.ref(id, 1), w.ref(id, 2)
	for _, c := range []struct {
		ref  hsm.ObjectRef
		attr uint
		v    bool
	}{{v1, pkcs11.CKA_DERIVE, true}, {v2, pkcs11.CKA_DECRYPT, false}, {v2, pkcs11.CKA_SIGN, true}} {
		if err := out.SetBool(c.ref, c.attr, c.v); err != nil {
			t.Fatalf("set 0x%X of %s: %v", c.attr, c.ref, err)
		}
	}
	before := w.svc.Stats().AttributeRepairs
	rep, err := w.svc.Worker.Reconcile(w.ctx)
	if err != nil || rep.AttributesRepaired != 3 || len(rep.OffTemplate) != 0 {
		t.Fatalf("reconcile: %v %+v, want 3 attributes repaired and nothing off the template", err, rep)
	}
	if got := w.svc.Stats().AttributeRepairs - before; got != 3 {
		t.Errorf("Stats().AttributeRepairs grew by %d, want 3", got)
	}
	for _, c := range []struct {
		ref  hsm.ObjectRef
		attr uint
		want bool
	}{{v1, pkcs11.CKA_DERIVE, false}, {v2, pkcs11.CKA_DECRYPT, true}, {v2, pkcs11.CKA_SIGN, false}} {
		if v, err := out.Bool(c.ref, c.attr); err != nil || v != c.want {
			t.Errorf("0x%X of %s = %v, %v after the reconciler; want %v", c.attr, c.ref, v, err, c.want)
		}
	}
	w.check(id)
	if rep, err := w.svc.Worker.Reconcile(w.ctx); err != nil || rep.AttributesRepaired != 0 {
		t.Errorf("a second pass: %v %+v, want nothing to repair", err, rep)
	}

	env := softhsmtest.Get(t)
	prof, err := hsm.SelectProfile(env.Profile, env.Module)
	if err != nil {
		t.Fatal(err)
	}
	if !prof.ReportsLocal {
		t.Logf("profile %s: CKA_LOCAL is not trusted, a replaced object is not told apart by its attributes", prof.Name)
		return
	}
	if err := out.Destroy(v2); err != nil {
		t.Fatal(err)
	}
	if _, err := out.PlantKnownKey(v2); err != nil {
		t.Fatal(err)
	}
	rep, err = w.svc.Worker.Reconcile(w.ctx)
	if err != nil || len(rep.OffTemplate) != 1 || !strings.Contains(rep.OffTemplate[0], v2.Label()) || !strings.Contains(rep.OffTemplate[0], "replaced") {
		t.Fatalf("reconcile after v2 was replaced: %v %+v", err, rep)
	}
	if n := w.svc.Stats().ObjectsOffTemplate; n != 1 {
		t.Errorf("Stats().ObjectsOffTemplate = %d, want 1", n)
	}
}

// Versions made before names had a nonce keep working: their rows' labels
// (and their objects' CKA_ID) have none, and every path names them as
// before: encrypt, decrypt, rotation (decrypt-only), the reconciler.
func TestVersionsWithoutNonceKeepWorking(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kms.db")
	st := kmstest.StoreAt(t, "sqlite:"+path)
	tok := kmstest.NewFaultToken(kmstest.Token(t))
	ctx := kmstest.Ctx(t)
	newSvc := func() *service.Service {
		return service.New(st, tok, service.Config{Logger: kmstest.Logger(), MinRotationInterval: time.Hour})
	}
	svc := newSvc()
	k, err := svc.Keys.CreateKey(ctx, service.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	// Make version 1 what an older kmsd made: object and row without a nonce.
	v, err := st.GetVersion(ctx, k.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	made, _ := hsm.ParseLabel(v.TokenLabel)
	old := hsm.ObjectRef{KeyID: made.KeyID, Version: 1}
	if err := tok.Destroy(ctx, made); err != nil {
		t.Fatal(err)
	}
	if err := tok.GenerateKey(ctx, old); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Destroy(context.Background(), old) })
	raw, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`UPDATE key_versions SET token_label = ? WHERE key_id = ?`, old.Label(), k.ID); err != nil {
		t.Fatal(err)
	}

	svc = newSvc() // nothing cached
	blob, err := svc.Crypto.Encrypt(ctx, k.ID, []byte("old"), nil)
	if err != nil {
		t.Fatalf("encrypt under a version without a nonce: %v", err)
	}
	if _, err := svc.Worker.RotateKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if pt, err := svc.Crypto.Decrypt(ctx, blob.Ciphertext, nil, ""); err != nil || string(pt.Plaintext) != "old" {
		t.Fatalf("decrypt after the rotation: %v", err)
	}
	rep, err := svc.Worker.Reconcile(ctx)
	if err != nil || rep.ObjectsDestroyed != 0 || rep.EncryptRevoked != 0 {
		t.Fatalf("reconcile: %v %+v (the old object is the version's)", err, rep)
	}
	inv, err := tok.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range inv {
		if o.Ref == old && o.Encrypt {
			t.Error("the old version can still encrypt after the rotation")
		}
	}
}
