package hsm

import (
	"context"
	"errors"
	"fmt"
	"github.com/google/uuid"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

// TestPoolExhaustion: with every session held, a call fails with
// ErrUnavailable at its deadline or at the pool timeout, never hangs.
func TestPoolExhaustion(t *testing.T) {
	p := openToken(t, func(c *Config) { c.MaxSessions = 2; c.PoolWaitTimeout = 3 * time.Second })
	ref := generated(t, p)
	var held []session
	for i := 0; i < 2; i++ {
		s, err := p.pool.get(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, s)
	}
	if st := p.Stats(); st.SessionsInUse != 2 {
		t.Errorf("Stats.SessionsInUse = %d, want 2", st.SessionsInUse)
	}

	// The caller's deadline (50ms) ends the wait, long before the pool's.
	ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := p.Encrypt(ctx, ref, []byte("x"), nil)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Encrypt at its deadline = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Encrypt took %v to give up; its deadline was 50ms", d)
	}

	// Without a deadline, the pool's timeout ends the wait.
	p.pool.wait = 200 * time.Millisecond
	start = time.Now()
	if _, err := p.Random(testCtx(t), 8); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Random with the pool exhausted = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 10*time.Second {
		t.Errorf("Random gave up after %v, want about the 200ms pool timeout", d)
	}

	for _, s := range held {
		p.pool.put(s, nil)
	}
	if _, _, err := p.Encrypt(testCtx(t), ref, []byte("x"), nil); err != nil {
		t.Errorf("Encrypt once sessions are free: %v", err)
	}
}

// TestPoolReusesSessions: sessions are opened lazily, kept and reused, and
// never exceed MaxSessions.
func TestPoolReusesSessions(t *testing.T) {
	p := openToken(t, func(c *Config) { c.MaxSessions = 4 })
	ref := generated(t, p)
	ctx := testCtx(t)
	for i := 0; i < 50; i++ {
		if _, _, err := p.Encrypt(ctx, ref, []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if st := p.Stats(); st.SessionsOpened != 1 || st.SessionsOpen != 1 {
		t.Errorf("sequential calls: %d sessions opened, %d open; want 1 and 1", st.SessionsOpened, st.SessionsOpen)
	}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, _, err := p.Encrypt(ctx, ref, []byte("x"), nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if st := p.Stats(); st.SessionsOpen > 4 || st.SessionsOpened > 4 || st.SessionsInUse != 0 {
		t.Errorf("after 16 goroutines: %+v; want at most 4 sessions ever, none in use", st)
	}
}

// TestConcurrency: 16 goroutines encrypt and decrypt while key management
// (generate, set decrypt-only, inventory, destroy) runs beside them. Run
// with -race. SoftHSM 2.6.1 would fail some C_GenerateKey calls if searches
// and creation were not serialised (pitfalls item 30).
func TestConcurrency(t *testing.T) {
	p := sharedToken(t)
	ctx := testCtx(t)
	keys := []ObjectRef{generated(t, p), generated(t, p), generated(t, p)}
	stop := make(chan struct{})
	var ops atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			ref := keys[g%len(keys)]
			aad := []byte(fmt.Sprintf("goroutine %d", g))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				pt := []byte(fmt.Sprintf("message %d of %d", i, g))
				iv, ct, err := p.Encrypt(ctx, ref, pt, aad)
				if err == nil {
					var got []byte
					if got, err = p.Decrypt(ctx, ref, iv, ct, aad); err == nil && string(got) != string(pt) {
						err = fmt.Errorf("round trip gave %q, want %q", got, pt)
					}
				}
				if err != nil {
					errs <- err
					return
				}
				ops.Add(1)
			}
		}(g)
	}
	for i := 0; i < 30; i++ {
		ref, err := NewRef(uuid.New(), 1) // as the service names versions
		if err == nil {
			err = p.GenerateKey(ctx, ref)
		}
		if err == nil {
			_, _, err = p.Encrypt(ctx, ref, []byte("new"), nil)
		}
		if err == nil {
			err = p.SetDecryptOnly(ctx, ref)
		}
		if err == nil && i%10 == 0 {
			_, err = p.Inventory(ctx)
		}
		if err == nil {
			err = p.Destroy(ctx, ref)
		}
		if err != nil {
			t.Errorf("key management #%d: %v", i, err)
			break
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("data path: %v", err)
	}
	if ops.Load() == 0 {
		t.Error("no data-path operation completed")
	}
	t.Logf("%d encrypt+decrypt round trips beside 30 key lifecycles", ops.Load())
}

// A call that failed with an operation still active on its session (a
// size query whose buffer could not be allocated, CKR_BUFFER_TOO_SMALL)
// does not hand that session to the next call, which would meet
// CKR_OPERATION_ACTIVE and reset the whole pool.
func TestSessionWithActiveOperationIsNotReused(t *testing.T) {
	p := openToken(t, func(c *Config) { c.MaxSessions = 1 })
	ref := generated(t, p)
	ctx := testCtx(t)
	if _, _, err := p.Encrypt(ctx, ref, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	before := p.Stats()
	err := p.withHandle(ctx, ref, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		params, mech := p.gcm(make([]byte, 12), nil)
		defer params.Free()
		if err := c.EncryptInit(sh, mech, h); err != nil {
			return err
		}
		return errors.New("injected: the output buffer could not be allocated")
	})
	if err == nil {
		t.Fatal("the injected failure was lost")
	}
	if _, _, err := p.Encrypt(ctx, ref, []byte("x"), nil); err != nil {
		t.Fatalf("encrypt after the failure: %v", err)
	}
	if after := p.Stats(); after.Resets != before.Resets {
		t.Errorf("the next call met the active operation: %d resets", after.Resets-before.Resets)
	}
}

// A call that panics (a bug below the pool) still returns its slot: with
// one session, the next call works, and nothing is left in use.
func TestPanickingCallReturnsItsSlot(t *testing.T) {
	p := openToken(t, func(c *Config) { c.MaxSessions = 1; c.PoolWaitTimeout = 2 * time.Second })
	ctx := testCtx(t)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the panic was swallowed")
			}
		}()
		_ = p.do(ctx, func(*pkcs11.Ctx, pkcs11.SessionHandle) error { panic("injected bug") })
	}()
	if st := p.Stats(); st.SessionsInUse != 0 {
		t.Fatalf("%d sessions in use after the panic", st.SessionsInUse)
	}
	if _, err := p.Random(ctx, 8); err != nil {
		t.Fatalf("the next call, with the only session: %v", err)
	}
}
