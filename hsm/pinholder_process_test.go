package hsm

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"math/big"
	"os"
	"os/exec"
	"testing"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/internal/byok"
	"github.com/hsmkms/hsmkms/internal/softhsmtest"
	"github.com/miekg/pkcs11"
)

// pinHolderEnv makes the test binary, started again by a test, the other
// process with the user PIN instead of running tests (TestMain).
const pinHolderEnv = "HSMKMS_TEST_PIN_HOLDER"

// pinHolderJob is what the other process tries: recover the material of a
// pending import from wrapped, given the wrapping key's CKA_ID.
type pinHolderJob struct {
	Module, InitArgs string
	Label, PIN       string
	LacksCopyable    bool   // the token does not know CKA_COPYABLE
	WrapID           []byte // CKA_ID of the wrapping key pair
	Wrapped          []byte // RSA-AES key wrap: RSA-OAEP(ephemeral) || KWP(material)
	RSALen           int
	KWP              uint // the token's AES-KWP mechanism
}

// pinHolderResult is what it found and recovered.
type pinHolderResult struct {
	Found              int    // wrapping private keys it can see
	Direct, Nested     []byte // material recovered by either route
	DirectErr, NestErr string
	Setup              string // a failure before any attempt
}

// pinHolderMain is the other process: its own C_Initialize, session and
// C_Login with the PIN, on the test token. Route "direct": C_UnwrapKey
// of the ephemeral key straight into a readable key; in an RSA-OAEP
// import this is the material itself. Route "nested": the ephemeral key
// unwrapped as a sensitive key allowed to unwrap (what an unwrap template
// without nested templates must allow), then the material under it with
// the attacker's own template. The result goes to stdout as JSON.
func pinHolderMain() int {
	var job pinHolderJob
	var res pinHolderResult
	defer func() { json.NewEncoder(os.Stdout).Encode(res) }()
	if err := json.Unmarshal([]byte(os.Getenv(pinHolderEnv)), &job); err != nil {
		res.Setup = err.Error()
		return 0
	}
	c := pkcs11.New(job.Module)
	if c == nil {
		res.Setup = "load module"
		return 0
	}
	args := newInitArgs(job.InitArgs)
	defer args.free()
	if err := c.Initialize(args.options()...); err != nil {
		res.Setup = err.Error()
		return 0
	}
	defer c.Finalize()
	slots, _ := c.GetSlotList(true)
	var sh pkcs11.SessionHandle
	opened := false
	for _, s := range slots {
		if ti, err := c.GetTokenInfo(s); err == nil && ti.Label == job.Label {
			h, err := c.OpenSession(s, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
			if err != nil {
				res.Setup = err.Error()
				return 0
			}
			if err := c.Login(h, pkcs11.CKU_USER, job.PIN); err != nil {
				res.Setup = err.Error()
				return 0
			}
			sh, opened = h, true
		}
	}
	if !opened {
		res.Setup = "token not found"
		return 0
	}
	privs, err := findByID(c, sh, job.WrapID, pkcs11.CKO_PRIVATE_KEY, 4)
	if err != nil {
		res.Setup = err.Error()
		return 0
	}
	res.Found = len(privs)
	readable := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	}
	value := func(h pkcs11.ObjectHandle) ([]byte, error) {
		v, err := c.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
		if err != nil {
			return nil, err
		}
		return v[0].Value, nil
	}
	rsaPart, kwpPart := job.Wrapped[:job.RSALen], job.Wrapped[job.RSALen:]
	for _, priv := range privs {
		eph, err := c.UnwrapKey(sh, []*pkcs11.Mechanism{oaep(false)}, priv, rsaPart, append(readable, pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true)))
		if err == nil {
			var m pkcs11.ObjectHandle
			if m, err = c.UnwrapKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(job.KWP, nil)}, eph, kwpPart, readable); err == nil {
				res.Direct, err = value(m)
			}
		}
		if err != nil {
			res.DirectErr = err.Error()
		}
		nested := []*pkcs11.Attribute{ // what an unwrap template must let through
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
			pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		}
		if !job.LacksCopyable {
			nested = append(nested, pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false))
		}
		eph, err = c.UnwrapKey(sh, []*pkcs11.Mechanism{oaep(false)}, priv, rsaPart, append(nested,
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false)))
		if err == nil {
			var m pkcs11.ObjectHandle
			if m, err = c.UnwrapKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(job.KWP, nil)}, eph, kwpPart, readable); err == nil {
				res.Nested, err = value(m)
			}
		}
		if err != nil {
			res.NestErr = err.Error()
		}
	}
	return 0
}

// runPinHolder starts the other process on job and returns its result.
func runPinHolder(t *testing.T, job pinHolderJob) pinHolderResult {
	t.Helper()
	env := softhsmtest.Get(t)
	job.Module, job.InitArgs, job.Label, job.PIN = env.Module, env.InitArgs, env.Label, env.PIN
	b, _ := json.Marshal(job)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), pinHolderEnv+"="+string(b))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the PIN holder's process: %v: %s", err, out)
	}
	var res pinHolderResult
	if err := json.Unmarshal(bytes.TrimSpace(out[bytes.LastIndexByte(bytes.TrimSpace(out), '\n')+1:]), &res); err != nil {
		t.Fatalf("the PIN holder's answer %q: %v", out, err)
	}
	if res.Setup != "" {
		t.Fatalf("the PIN holder's process: %s", res.Setup)
	}
	return res
}

// tokenWrappingKey makes an RSA key pair as token objects, as wrapping
// keys were before they became session objects; extra goes into the
// private key's template. It returns the public key and the CKA_ID.
func tokenWrappingKey(t *testing.T, r *raw, extra ...*pkcs11.Attribute) (*rsa.PublicKey, []byte) {
	t.Helper()
	id := []byte("wrap:control-" + uuid.NewString())
	return tokenWrappingKeyWithID(t, r, id, extra...), id
}

// tokenWrappingKeyWithID is tokenWrappingKey with the CKA_ID id.
func tokenWrappingKeyWithID(t *testing.T, r *raw, id []byte, extra ...*pkcs11.Attribute) *rsa.PublicKey {
	t.Helper()
	pub := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, 2048),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	priv := append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}, extra...)
	ph, vh, err := r.c.GenerateKeyPair(r.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.c.DestroyObject(r.sh, ph); r.c.DestroyObject(r.sh, vh) })
	attrs, err := r.c.GetAttributeValue(r.sh, ph, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil)})
	if err != nil {
		t.Fatal(err)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(attrs[0].Value), E: int(new(big.Int).SetBytes(attrs[1].Value).Int64())}
}

// Item 2: while an import is pending, nobody but this process can recover
// the customer's material from the wrapped bytes, by either route. The
// controls show that the attacker's process does recover it from a token
// wrapping key as this service made them before (both routes), and from
// a token wrapping key with CKA_UNWRAP_TEMPLATE and CKA_MODIFIABLE=false
// (the nested route): a wrapping key must not be a token object.
func TestPendingImportMaterialStaysInside(t *testing.T) {
	p := sharedToken(t)
	ctx := testCtx(t)
	const alg = RSAAESKeyWrapSHA1 // what SoftHSM offers: the two-step route
	if !p.supportsWrapping(alg) {
		t.Skipf("the token does not offer %s", alg)
	}
	material := make([]byte, 32)
	rand.Read(material)
	r := rawSession(t, p)

	t.Run("control: token wrapping key as before", func(t *testing.T) {
		pub, id := tokenWrappingKey(t, r)
		wrapped, _ := byok.Wrap(alg, pub, material)
		res := runPinHolder(t, pinHolderJob{WrapID: id, Wrapped: wrapped, RSALen: 256, KWP: p.cfg.Profile.KWPMechanism, LacksCopyable: p.cfg.Profile.LacksCopyable})
		if res.Found != 1 || !bytes.Equal(res.Direct, material) || !bytes.Equal(res.Nested, material) {
			t.Fatalf("the attack does not work on the old wrapping key (so it proves nothing): %+v", res)
		}
	})
	t.Run("control: token wrapping key with an unwrap template", func(t *testing.T) {
		ut, release := attrTemplate(p.unwrapTemplate())
		defer release()
		pub, id := tokenWrappingKey(t, r, pkcs11.NewAttribute(pkcs11.CKA_UNWRAP_TEMPLATE, ut), pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false))
		wrapped, _ := byok.Wrap(alg, pub, material)
		res := runPinHolder(t, pinHolderJob{WrapID: id, Wrapped: wrapped, RSALen: 256, KWP: p.cfg.Profile.KWPMechanism, LacksCopyable: p.cfg.Profile.LacksCopyable})
		// A token that ignores the template (NSS softoken) leaves both open.
		if res.Found != 1 || (res.Direct != nil) != p.cfg.Profile.IgnoresUnwrapTemplate || !bytes.Equal(res.Nested, material) {
			t.Fatalf("want the direct route refused (unless the token ignores the template) and the nested one open: %+v", res)
		}
	})
	t.Run("the wrapping key of this service", func(t *testing.T) {
		id := uuid.NewString()
		pub, err := p.GenerateWrappingKey(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.DestroyWrappingKey(testCtx(t), id) })
		wrapped, _ := byok.Wrap(alg, pub, material)
		_, ckaID := wrapRef(id)
		res := runPinHolder(t, pinHolderJob{WrapID: ckaID, Wrapped: wrapped, RSALen: WrappingBits / 8, KWP: p.cfg.Profile.KWPMechanism, LacksCopyable: p.cfg.Profile.LacksCopyable})
		if res.Found != 0 || res.Direct != nil || res.Nested != nil {
			t.Fatalf("another process with the PIN: %+v", res)
		}
		// In this process (kmsd itself) the key is visible, and its unwrap
		// template refuses a readable key.
		priv, err := findPrivate(r.c, r.sh, ckaID)
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.c.UnwrapKey(r.sh, []*pkcs11.Mechanism{oaep(false)}, priv, wrapped[:WrappingBits/8], []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)})
		if !p.cfg.Profile.IgnoresUnwrapTemplate && !hasCode(err, []uint{pkcs11.CKR_TEMPLATE_INCONSISTENT}) {
			t.Errorf("a readable unwrap with the wrapping key = %v, want CKR_TEMPLATE_INCONSISTENT", err)
		}
		for _, a := range []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true), pkcs11.NewAttribute(pkcs11.CKA_UNWRAP_TEMPLATE, nil)} {
			if err := r.c.SetAttributeValue(r.sh, priv, []*pkcs11.Attribute{a}); err == nil {
				t.Errorf("attribute 0x%X of the wrapping key was changed", a.Type)
			}
		}
		// The import itself still works, and a token key planted under
		// the wrapping key's id is not used.
		tokenWrappingKeyWithID(t, r, ckaID)
		ref := newRef()
		if err := p.Import(ctx, id, alg, wrapped, ref); err != nil {
			t.Fatalf("import: %v", err)
		}
		t.Cleanup(func() { p.Destroy(testCtx(t), ref) })
		if n := len(inventoryOf(t, p, ref)); n != 1 {
			t.Errorf("the import made %d objects, want 1", n)
		}
	})
}
