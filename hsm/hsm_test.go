package hsm

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
	"github.com/miekg/pkcs11"
)

// TestMain gives the test binary its throwaway SoftHSM token and closes
// the shared PKCS11 at the end.
func TestMain(m *testing.M) {
	if os.Getenv(pinHolderEnv) != "" {
		os.Exit(pinHolderMain()) // another process with the PIN: pinholder_process_test.go
	}
	if os.Getenv(racerEnv) != "" {
		os.Exit(racerMain()) // another process making fixed-name keys: fixed_process_test.go
	}
	os.Exit(softhsmtest.Run(closing{m}))
}

type closing struct{ m *testing.M }

func (c closing) Run() int {
	code := c.m.Run()
	closeShared()
	return code
}

var shared struct {
	sync.Mutex
	p *PKCS11
}

// sharedToken is the PKCS11 most tests use, opened once (like kmsd opens
// it once per process). It is pinged first, so that a reset left by an
// earlier test (recovery tests kill its sessions) is recovered from before
// this test counts searches or resets.
func sharedToken(t testing.TB) *PKCS11 {
	t.Helper()
	env := softhsmtest.Get(t)
	shared.Lock()
	defer shared.Unlock()
	if shared.p == nil {
		p, err := Open(testCtx(t), config(env))
		if err != nil {
			t.Fatalf("open shared token: %v", err)
		}
		shared.p = p
	}
	if err := shared.p.Ping(testCtx(t)); err != nil {
		t.Fatalf("ping shared token: %v", err)
	}
	return shared.p
}

// closeShared closes the shared PKCS11 (a test that needs the process to
// hold no login calls it; the next sharedToken opens it again).
func closeShared() {
	shared.Lock()
	defer shared.Unlock()
	if shared.p != nil {
		shared.p.Close()
		shared.p = nil
	}
}

// config is the Config of the test token: module, initialisation
// arguments, label, PIN and profile as the environment chose them.
func config(env *softhsmtest.Env) Config {
	prof, err := SelectProfile(env.Profile, env.Module)
	if err != nil {
		panic(err) // KMS_HSM_PROFILE names no profile: no test can run
	}
	return Config{Module: env.Module, InitArgs: env.InitArgs, TokenLabel: env.Label, PIN: env.PIN, Profile: prof}
}

// openToken opens a PKCS11 of its own, changed by edit, closed at the end.
func openToken(t testing.TB, edit func(*Config)) *PKCS11 {
	t.Helper()
	cfg := config(softhsmtest.Get(t))
	if edit != nil {
		edit(&cfg)
	}
	p, err := Open(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("open token: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// testCtx ends a little before the test's deadline (or after a minute).
func testCtx(t testing.TB) context.Context {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	if tt, ok := t.(*testing.T); ok {
		if d, ok := tt.Deadline(); ok {
			deadline = d.Add(-5 * time.Second)
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

func newRef() ObjectRef { return ObjectRef{KeyID: uuid.New(), Version: 1} }

// generated makes a key version in p's token and destroys it at the end.
func generated(t testing.TB, p *PKCS11) ObjectRef {
	t.Helper()
	ref := newRef()
	if err := p.GenerateKey(testCtx(t), ref); err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	t.Cleanup(func() { p.Destroy(context.Background(), ref) })
	return ref
}

// raw is a session beside p's pool, on p's module context: someone else
// with the PIN in the same process, to change the token behind p's back.
type raw struct {
	t    testing.TB
	c    *pkcs11.Ctx
	sh   pkcs11.SessionHandle
	slot uint
	init []pkcs11.InitializeOption // p's C_Initialize arguments
	gone bool                      // the module was reset: sh may name someone else's session now
}

func rawSession(t testing.TB, p *PKCS11) *raw {
	t.Helper()
	c, slot, _ := p.current()
	sh, err := c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatalf("raw C_OpenSession: %v", err)
	}
	if err := c.Login(sh, pkcs11.CKU_USER, softhsmtest.Get(t).PIN); err != nil && err != pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		t.Fatalf("raw C_Login: %v", err)
	}
	r := &raw{t: t, c: c, sh: sh, slot: slot, init: p.initArgs.options()}
	t.Cleanup(func() {
		if !r.gone {
			c.CloseSession(sh)
		}
	})
	return r
}

// find returns every secret key with ref's CKA_ID.
func (r *raw) find(ref ObjectRef) []pkcs11.ObjectHandle {
	r.t.Helper()
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_ID, ref.ID()),
	}
	if err := r.c.FindObjectsInit(r.sh, tmpl); err != nil {
		r.t.Fatalf("raw C_FindObjectsInit: %v", err)
	}
	defer r.c.FindObjectsFinal(r.sh)
	hs, _, err := r.c.FindObjects(r.sh, 10)
	if err != nil {
		r.t.Fatalf("raw C_FindObjects: %v", err)
	}
	return hs
}

// one returns the single object with ref's CKA_ID.
func (r *raw) one(ref ObjectRef) pkcs11.ObjectHandle {
	r.t.Helper()
	hs := r.find(ref)
	if len(hs) != 1 {
		r.t.Fatalf("%d objects with the id of %s, want 1", len(hs), ref)
	}
	return hs[0]
}

// generate makes an AES key with ref's id and label outside p (a stray,
// tampered or duplicate object); edits replace attributes of the template.
func (r *raw) generate(ref ObjectRef, edits ...*pkcs11.Attribute) pkcs11.ObjectHandle {
	r.t.Helper()
	tmpl := keyTemplate(ref)
next:
	for _, e := range edits {
		for i, a := range tmpl {
			if a.Type == e.Type {
				tmpl[i] = e
				continue next
			}
		}
		tmpl = append(tmpl, e)
	}
	h, err := r.c.GenerateKey(r.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl)
	if err != nil {
		r.t.Fatalf("raw C_GenerateKey: %v", err)
	}
	r.t.Cleanup(func() {
		if !r.gone {
			r.c.DestroyObject(r.sh, h)
		}
	})
	return h
}

// inventoryOf returns the inventory entries of ref.
func inventoryOf(t testing.TB, p *PKCS11, ref ObjectRef) []ObjectInfo {
	t.Helper()
	inv, err := p.Inventory(testCtx(t))
	if err != nil {
		t.Fatalf("Inventory: %v", err)
	}
	var out []ObjectInfo
	for _, o := range inv {
		if o.Ref == ref {
			out = append(out, o)
		}
	}
	return out
}
