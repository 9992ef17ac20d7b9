package kmstest

import (
	"context"
	"fmt"
	"sync"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service"
)

// FaultToken wraps the real token and fails chosen calls: the real token is
// used for everything else (docs/architecture.md, "Tests": wrap the real token, do not fake it).
type FaultToken struct {
	hsm.Token
	mu            sync.Mutex
	fails         map[string][]error
	beforeDestroy func()
}

// NewFaultToken wraps tok.
func NewFaultToken(tok hsm.Token) *FaultToken {
	return &FaultToken{Token: tok, fails: map[string][]error{}}
}

// BeforeNextDestroy runs fn (once) when Destroy is next called, before it
// reaches the token: a test interleaves other work at that point.
func (f *FaultToken) BeforeNextDestroy(fn func()) {
	f.mu.Lock()
	f.beforeDestroy = fn
	f.mu.Unlock()
}

// FailNext makes the next call of method ("GenerateKey", "Encrypt",
// "Decrypt", "SetDecryptOnly", "Destroy", "Random", "Inventory", "Ping")
// return err without reaching the token. Calls queue up.
func (f *FaultToken) FailNext(method string, err error) {
	f.mu.Lock()
	f.fails[method] = append(f.fails[method], err)
	f.mu.Unlock()
}

// Panic, given to FailNext, makes the call panic instead of failing: a bug
// in the code below the handler.
type Panic string

func (p Panic) Error() string { return string(p) }

func (f *FaultToken) fault(method string) error {
	f.mu.Lock()
	q := f.fails[method]
	if len(q) == 0 {
		f.mu.Unlock()
		return nil
	}
	f.fails[method] = q[1:]
	f.mu.Unlock()
	if p, ok := q[0].(Panic); ok {
		panic(string(p))
	}
	return q[0]
}

// AfterCall, given to FailNext, makes the real call and then fails with
// Err: a token that did the work but whose answer was lost.
type AfterCall struct{ Err error }

func (a AfterCall) Error() string { return "after the call: " + a.Err.Error() }

// GenerateKey implements hsm.Token.
func (f *FaultToken) GenerateKey(ctx context.Context, ref hsm.ObjectRef) error {
	err := f.fault("GenerateKey")
	if after, ok := err.(AfterCall); ok {
		if gerr := f.Token.GenerateKey(ctx, ref); gerr != nil {
			return gerr
		}
		return after.Err
	}
	if err != nil {
		return err
	}
	return f.Token.GenerateKey(ctx, ref)
}

// Encrypt implements hsm.Token.
func (f *FaultToken) Encrypt(ctx context.Context, ref hsm.ObjectRef, pt, aad []byte) ([]byte, []byte, error) {
	if err := f.fault("Encrypt"); err != nil {
		return nil, nil, err
	}
	return f.Token.Encrypt(ctx, ref, pt, aad)
}

// Decrypt implements hsm.Token.
func (f *FaultToken) Decrypt(ctx context.Context, ref hsm.ObjectRef, iv, ct, aad []byte) ([]byte, error) {
	if err := f.fault("Decrypt"); err != nil {
		return nil, err
	}
	return f.Token.Decrypt(ctx, ref, iv, ct, aad)
}

// SetDecryptOnly implements hsm.Token.
func (f *FaultToken) SetDecryptOnly(ctx context.Context, ref hsm.ObjectRef) error {
	if err := f.fault("SetDecryptOnly"); err != nil {
		return err
	}
	return f.Token.SetDecryptOnly(ctx, ref)
}

// Destroy implements hsm.Token.
func (f *FaultToken) Destroy(ctx context.Context, ref hsm.ObjectRef) error {
	if err := f.fault("Destroy"); err != nil {
		return err
	}
	f.mu.Lock()
	hook := f.beforeDestroy
	f.beforeDestroy = nil
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return f.Token.Destroy(ctx, ref)
}

// Random implements hsm.Token.
func (f *FaultToken) Random(ctx context.Context, n int) ([]byte, error) {
	if err := f.fault("Random"); err != nil {
		return nil, err
	}
	return f.Token.Random(ctx, n)
}

// Ping implements hsm.Token.
func (f *FaultToken) Ping(ctx context.Context) error {
	if err := f.fault("Ping"); err != nil {
		return err
	}
	return f.Token.Ping(ctx)
}

// Close does not close the shared token.
func (f *FaultToken) Close() error { return nil }

// FaultStore wraps the real store and fails chosen transactions.
type FaultStore struct {
	service.Store
	mu         sync.Mutex
	failTx     []error
	failAppend []error
	txCalled   int
	hold       chan struct{} // the next group commit waits for it to close
	held       chan struct{} // closed when that group commit waits
	refuse     func(*service.AuditEvent) bool
	after      map[string]func() // method -> runs once after its next call in a transaction
}

// AfterNext runs fn once, right after the next call of method
// ("LastAudit" or "GetAlias" inside a transaction, "GetToken",
// "ListVersions", "LastKeyChange" outside one), or right
// before it for "before AppendAudit" (inside a transaction): to let another
// writer act at that moment.
func (f *FaultStore) AfterNext(method string, fn func()) {
	f.mu.Lock()
	if f.after == nil {
		f.after = map[string]func(){}
	}
	f.after[method] = fn
	f.mu.Unlock()
}

func (f *FaultStore) runAfter(method string) {
	f.mu.Lock()
	fn := f.after[method]
	delete(f.after, method)
	f.mu.Unlock()
	if fn != nil {
		fn()
	}
}

// ListVersions implements service.Store.
func (f *FaultStore) ListVersions(ctx context.Context, keyID string) ([]service.Version, error) {
	vs, err := f.Store.ListVersions(ctx, keyID)
	f.runAfter("ListVersions")
	return vs, err
}

// LastKeyChange implements service.Store.
func (f *FaultStore) LastKeyChange(ctx context.Context) (int64, error) {
	seq, err := f.Store.LastKeyChange(ctx)
	f.runAfter("LastKeyChange")
	return seq, err
}

// GetToken implements service.Store.
func (f *FaultStore) GetToken(ctx context.Context, id string) (*service.BearerToken, error) {
	t, err := f.Store.GetToken(ctx, id)
	f.runAfter("GetToken")
	return t, err
}

func (q faultQueries) LastAudit(ctx context.Context, action string) (*service.AuditEvent, error) {
	e, err := q.Queries.LastAudit(ctx, action)
	q.f.runAfter("LastAudit")
	return e, err
}

func (q faultQueries) GetAlias(ctx context.Context, name string) (*service.Alias, error) {
	a, err := q.Queries.GetAlias(ctx, name)
	q.f.runAfter("GetAlias")
	return a, err
}

// NewFaultStore wraps st.
func NewFaultStore(st service.Store) *FaultStore { return &FaultStore{Store: st} }

// FailNextTx makes the next InTx return err without running.
func (f *FaultStore) FailNextTx(err error) {
	f.mu.Lock()
	f.failTx = append(f.failTx, err)
	f.mu.Unlock()
}

// InTx implements service.Store.
func (f *FaultStore) InTx(ctx context.Context, fn func(q service.Queries) error) error {
	f.mu.Lock()
	f.txCalled++
	var err error
	if len(f.failTx) > 0 {
		err, f.failTx = f.failTx[0], f.failTx[1:]
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.Store.InTx(ctx, func(q service.Queries) error {
		return fn(faultQueries{Queries: q, f: f})
	})
}

// FailNextAppend makes the next audit append (inside a transaction or a
// group commit) fail with err after reaching the store: a transaction that
// appends rolls back with everything it wrote.
func (f *FaultStore) FailNextAppend(err error) {
	f.mu.Lock()
	f.failAppend = append(f.failAppend, err)
	f.mu.Unlock()
}

func (f *FaultStore) appendFault() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.failAppend) == 0 {
		return nil
	}
	err := f.failAppend[0]
	f.failAppend = f.failAppend[1:]
	return err
}

// HoldNextGroupCommit makes the next group commit wait until release is
// called; entered is closed once it waits. Records queued meanwhile form
// the following batch.
func (f *FaultStore) HoldNextGroupCommit() (entered <-chan struct{}, release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold, f.held = make(chan struct{}), make(chan struct{})
	hold := f.hold
	return f.held, func() { close(hold) }
}

// RefuseAudit makes a group commit fail when its batch holds a record for
// which refuse is true, as a store that cannot encode that record would.
func (f *FaultStore) RefuseAudit(refuse func(*service.AuditEvent) bool) {
	f.mu.Lock()
	f.refuse = refuse
	f.mu.Unlock()
}

// AppendAudit implements service.Queries (the group commit's path).
func (f *FaultStore) AppendAudit(ctx context.Context, events []*service.AuditEvent, h service.AuditHash) error {
	f.mu.Lock()
	hold, held, refuse := f.hold, f.held, f.refuse
	f.hold, f.held = nil, nil
	f.mu.Unlock()
	if hold != nil {
		close(held)
		<-hold
	}
	if err := f.appendFault(); err != nil {
		return err
	}
	for _, e := range events {
		if refuse != nil && refuse(e) {
			return fmt.Errorf("injected: the store refuses the record of %s", e.Action)
		}
	}
	return f.Store.AppendAudit(ctx, events, h)
}

// faultQueries are the queries of a transaction of a FaultStore.
type faultQueries struct {
	service.Queries
	f *FaultStore
}

func (q faultQueries) AppendAudit(ctx context.Context, events []*service.AuditEvent, h service.AuditHash) error {
	q.f.runAfter("before AppendAudit")
	if err := q.f.appendFault(); err != nil {
		return err
	}
	return q.Queries.AppendAudit(ctx, events, h)
}
