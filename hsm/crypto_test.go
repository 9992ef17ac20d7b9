package hsm

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hsmkms/hsmkms/internal/softhsmtest"
	"github.com/miekg/pkcs11"
)

func TestEncryptDecryptRoundTrip(t *testing.T) {
	p := sharedToken(t)
	ref := generated(t, p)
	ctx := testCtx(t)
	for _, tc := range []struct {
		name      string
		plaintext []byte
		aad       []byte
	}{
		{"empty plaintext", nil, []byte("ctx")},
		{"one byte", []byte{0x42}, []byte("ctx")},
		{"64 bytes", bytes.Repeat([]byte{7}, 64), []byte("header|context")},
		{"4 KiB", bytes.Repeat([]byte("abcd"), 1024), []byte("ctx")},
		{"no aad", []byte("data key"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iv, ct, err := p.Encrypt(ctx, ref, tc.plaintext, tc.aad)
			if err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
			if len(iv) != 12 {
				t.Errorf("IV is %d bytes, want 12", len(iv))
			}
			if len(ct) != len(tc.plaintext)+16 {
				t.Errorf("ciphertext is %d bytes, want plaintext+16 = %d", len(ct), len(tc.plaintext)+16)
			}
			pt, err := p.Decrypt(ctx, ref, iv, ct, tc.aad)
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			if !bytes.Equal(pt, tc.plaintext) {
				t.Errorf("Decrypt = %x, want %x", pt, tc.plaintext)
			}
			iv2, ct2, err := p.Encrypt(ctx, ref, tc.plaintext, tc.aad)
			if err != nil {
				t.Fatalf("second Encrypt: %v", err)
			}
			if bytes.Equal(iv, iv2) || bytes.Equal(ct, ct2) {
				t.Error("two encryptions of the same plaintext share IV or ciphertext")
			}
		})
	}
}

// TestDecryptFailures: every bad input is ErrDecryptFailed, never a panic,
// and the one session of the pool stays usable after each (SoftHSM ends the
// operation on a failed C_Decrypt).
func TestDecryptFailures(t *testing.T) {
	p := openToken(t, func(c *Config) { c.MaxSessions = 1 })
	ref, other := generated(t, p), generated(t, p)
	ctx := testCtx(t)
	aad := []byte("key-id|v1|context")
	iv, ct, err := p.Encrypt(ctx, ref, []byte("sixty-four bytes of plaintext, give or take a few for the test"), aad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[(i+len(c))%len(c)] ^= 0x01
		return c
	}
	opened := p.Stats().SessionsOpened
	for _, tc := range []struct {
		name    string
		ref     ObjectRef
		iv, ct  []byte
		aad     []byte
		checked bool // refused before calling the token
	}{
		{"wrong aad", ref, iv, ct, []byte("key-id|v2|context"), false},
		{"missing aad", ref, iv, ct, nil, false},
		{"wrong iv", ref, flip(iv, 0), ct, aad, false},
		{"16-byte iv", ref, append(bytes.Clone(iv), 0, 0, 0, 0), ct, aad, false},
		{"flipped ciphertext byte", ref, iv, flip(ct, 0), aad, false},
		{"flipped tag byte", ref, iv, flip(ct, -1), aad, false},
		{"truncated by one", ref, iv, ct[:len(ct)-1], aad, false},
		{"tag only", ref, iv, ct[len(ct)-16:], aad, false},
		{"appended byte", ref, iv, append(bytes.Clone(ct), 0), aad, false},
		{"wrong key", other, iv, ct, aad, false},
		{"shorter than the tag", ref, iv, ct[:15], aad, true},
		{"empty ciphertext", ref, iv, nil, aad, true},
		{"8-byte iv", ref, iv[:8], ct, aad, true},
		{"empty iv", ref, nil, ct, aad, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			searches := p.Stats().Searches
			pt, err := p.Decrypt(ctx, tc.ref, tc.iv, tc.ct, tc.aad)
			if !errors.Is(err, ErrDecryptFailed) {
				t.Fatalf("Decrypt = %q, %v; want ErrDecryptFailed", pt, err)
			}
			if pt != nil {
				t.Errorf("Decrypt returned %d bytes with the error", len(pt))
			}
			if got := p.Stats().Searches; got != searches {
				t.Errorf("a failed decryption searched the token (%d searches)", got-searches)
			}
			// The session is still usable.
			if _, err := p.Decrypt(ctx, ref, iv, ct, aad); err != nil {
				t.Fatalf("Decrypt after the failure: %v", err)
			}
		})
	}
	if got := p.Stats().SessionsOpened; got != opened {
		t.Errorf("failed decryptions opened %d new sessions; the one session should stay usable", got-opened)
	}
}

func TestEncryptUnknownObject(t *testing.T) {
	p := sharedToken(t)
	ref := newRef()
	if _, _, err := p.Encrypt(testCtx(t), ref, []byte("x"), nil); !errors.Is(err, ErrObjectNotFound) {
		t.Errorf("Encrypt = %v, want ErrObjectNotFound", err)
	}
	if _, err := p.Decrypt(testCtx(t), ref, make([]byte, 12), make([]byte, 20), nil); !errors.Is(err, ErrObjectNotFound) {
		t.Errorf("Decrypt = %v, want ErrObjectNotFound", err)
	}
	// Not found is not cached: once the object exists, it is found.
	if err := p.GenerateKey(testCtx(t), ref); err != nil {
		t.Fatal(err)
	}
	defer p.Destroy(testCtx(t), ref)
	p.forgetAny(ref)
	if _, _, err := p.Encrypt(testCtx(t), ref, []byte("x"), nil); err != nil {
		t.Errorf("Encrypt after GenerateKey: %v", err)
	}
}

// TestRequestPathNeverSearches: once a handle is cached, encrypt and
// decrypt do not search the token.
func TestRequestPathNeverSearches(t *testing.T) {
	p := sharedToken(t)
	ref := newRef()
	// Generated through another PKCS11, so p's cache does not know it.
	if err := openToken(t, nil).GenerateKey(testCtx(t), ref); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Destroy(testCtx(t), ref) })
	ctx := testCtx(t)
	before := p.Stats()
	iv, ct, err := p.Encrypt(ctx, ref, make([]byte, 64), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Stats().Searches - before.Searches; got != 1 {
		t.Fatalf("first encrypt made %d searches, want 1", got)
	}
	warm := p.Stats()
	for i := 0; i < 100; i++ {
		if _, _, err := p.Encrypt(ctx, ref, make([]byte, 64), []byte("aad")); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Decrypt(ctx, ref, iv, ct, []byte("aad")); err != nil {
			t.Fatal(err)
		}
	}
	after := p.Stats()
	if after.Searches != warm.Searches {
		t.Errorf("200 warm calls made %d searches, want 0", after.Searches-warm.Searches)
	}
	if hits := after.CacheHits - warm.CacheHits; hits < 200 {
		t.Errorf("%d cache hits for 200 warm calls", hits)
	}
}

// TestSingleFlight: concurrent misses of one handle make one search.
func TestSingleFlight(t *testing.T) {
	p := sharedToken(t)
	ref := newRef()
	if err := openToken(t, nil).GenerateKey(testCtx(t), ref); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Destroy(testCtx(t), ref) })
	ctx := testCtx(t)
	before := p.Stats().Searches
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, _, err := p.Encrypt(ctx, ref, []byte("x"), nil)
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := p.Stats().Searches - before; got != 1 {
		t.Errorf("16 concurrent misses made %d searches, want 1", got)
	}
}

func TestRandom(t *testing.T) {
	p := sharedToken(t)
	ctx := testCtx(t)
	for _, n := range []int{1, 12, 32, MaxRandom} {
		b, err := p.Random(ctx, n)
		if err != nil || len(b) != n {
			t.Errorf("Random(%d) = %d bytes, %v", n, len(b), err)
		}
	}
	for _, n := range []int{-1, 0, MaxRandom + 1} {
		if b, err := p.Random(ctx, n); err == nil {
			t.Errorf("Random(%d) = %d bytes, want an error", n, len(b))
		}
	}
	a, _ := p.Random(ctx, 32)
	b, _ := p.Random(ctx, 32)
	if bytes.Equal(a, b) {
		t.Error("two Random(32) calls returned the same bytes")
	}
}

// TestTokenGeneratedIVFailsClosed: SoftHSM uses the IV it is given, so a
// profile saying the token generates IVs is refused at Open, and, should it
// be set anyway, every encryption fails rather than reuse the zeroed IV.
func TestTokenGeneratedIVFailsClosed(t *testing.T) {
	cfg := config(softhsmtest.Get(t))
	cfg.Profile.TokenGeneratesIV = true
	if p, err := Open(testCtx(t), cfg); err == nil {
		p.Close()
		t.Fatal("Open accepted a token-generated IV profile on a token that does not generate IVs")
	} else if !strings.Contains(err.Error(), "does not generate GCM IVs") {
		t.Fatalf("Open: %v, want a message saying the token does not generate IVs", err)
	}

	p := openToken(t, nil)
	ref := generated(t, p)
	p.cfg.Profile.TokenGeneratesIV = true
	iv, ct, err := p.Encrypt(testCtx(t), ref, []byte("x"), nil)
	if !errors.Is(err, errNoTokenIV) || iv != nil || ct != nil {
		t.Fatalf("Encrypt with a token that ignored the request: %x %x %v, want errNoTokenIV and nothing", iv, ct, err)
	}
}

// TestGCMBuffersNeverTrustTheSizeQuery: the data path sizes GCM buffers
// itself (NSS softoken's size query leaves out the tag); a buffer the
// token finds too small is enlarged once to the length it reports, within
// a bound, and the result decrypts; beyond the bound it is an error. A
// token whose GCM lengths are wrong (Profile.GCMLengthsWrong) reports no
// usable length, and the too small buffer stays an error.
func TestGCMBuffersNeverTrustTheSizeQuery(t *testing.T) {
	p := sharedToken(t)
	ref := generated(t, p)
	ctx := testCtx(t)
	for _, n := range []int{0, 1, 16, 4096} {
		pt := bytes.Repeat([]byte{7}, n)
		iv, ct, err := p.Encrypt(ctx, ref, pt, []byte("aad"))
		if err != nil || len(ct) != n+16 {
			t.Fatalf("Encrypt of %d bytes: %d bytes, %v", n, len(ct), err)
		}
		if got, err := p.Decrypt(ctx, ref, iv, ct, []byte("aad")); err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("Decrypt of %d bytes: %v", n, err)
		}
	}
	for _, tc := range []struct {
		name  string
		slack int
		ok    bool
	}{{"enlarged once", 64, !p.cfg.Profile.GCMLengthsWrong}, {"beyond the bound", 8, false}} {
		t.Run(tc.name, func(t *testing.T) {
			pt := []byte("sized by the caller")
			var ct []byte
			var used pkcs11.SessionHandle
			closed := p.stats.sessionsClosed.Load()
			err := p.withHandle(ctx, ref, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
				used = sh
				params, mech := p.gcm(make([]byte, 12), nil)
				defer params.Free()
				if err := c.EncryptInit(sh, mech, h); err != nil {
					return err
				}
				var err error
				ct, err = p.direct.crypt(fnEncrypt, sh, pt, len(pt), tc.slack) // no room for the tag
				return err
			})
			if !tc.ok {
				if !hasCode(err, []uint{pkcs11.CKR_BUFFER_TOO_SMALL}) {
					t.Fatalf("crypt beyond the bound = %v, want CKR_BUFFER_TOO_SMALL", err)
				}
				// Its operation is still active: the session was closed,
				// not pooled (a later call would meet CKR_OPERATION_ACTIVE
				// and pay a reset, which hides the difference).
				if got := p.stats.sessionsClosed.Load(); got <= closed || idleHas(p, used) {
					t.Fatalf("after the failed call: %d sessions closed (was %d), session pooled: %v; want it closed",
						got, closed, idleHas(p, used))
				}
				return
			}
			if !idleHas(p, used) {
				t.Errorf("the session of a call that succeeded was not pooled")
			}
			if err != nil || len(ct) != len(pt)+16 {
				t.Fatalf("crypt = %d bytes, %v; want %d", len(ct), err, len(pt)+16)
			}
			if got, err := p.Decrypt(ctx, ref, make([]byte, 12), ct, nil); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("Decrypt = %q, %v", got, err)
			}
		})
	}
	// The next calls work.
	if _, _, err := p.Encrypt(ctx, ref, []byte("after"), nil); err != nil {
		t.Fatal(err)
	}
}

// idleHas reports whether the session h is in p's idle pool.
func idleHas(p *PKCS11, h pkcs11.SessionHandle) bool {
	p.pool.mu.Lock()
	defer p.pool.mu.Unlock()
	return slices.ContainsFunc(p.pool.idle, func(s session) bool { return s.h == h })
}

// A length the token writes back is a CK_ULONG: compared unsigned, one of
// 2^63 or more never passes for a small buffer (a signed compare made it
// negative, and it passed).
func TestTokenLengthsCompareUnsigned(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		size int
		want bool
	}{
		{0, 0, true},
		{16, 16, true},
		{17, 16, false},
		{1 << 63, 16, false},
		{1<<63 + 16, 16, false},
		{1<<64 - 1, 16, false},
		{1<<64 - 1, 1<<63 - 1, false},
		{0, -1, false},
	} {
		if got := fits(tc.n, tc.size); got != tc.want {
			t.Errorf("fits(%d, %d) = %v, want %v", tc.n, tc.size, got, tc.want)
		}
	}
}

// An output of the wrong length is refused, and what it held (plaintext,
// for a decryption) is wiped, not left to the garbage collector.
func TestWrongLengthOutputIsWiped(t *testing.T) {
	buf := []byte("plaintext the token returned")
	out, err := exactly(buf, len(buf)-1, "AES-GCM decryption")
	if err == nil || out != nil {
		t.Fatalf("exactly of a wrong length = %q, %v; want nil and an error", out, err)
	}
	if !bytes.Equal(buf, make([]byte, len(buf))) {
		t.Errorf("the refused output was not wiped: %q", buf)
	}
	ok := []byte("right")
	if out, err := exactly(ok, len(ok), "AES-GCM decryption"); err != nil || !bytes.Equal(out, []byte("right")) {
		t.Errorf("exactly of the right length = %q, %v", out, err)
	}
}
