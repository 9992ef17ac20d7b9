package hsm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/miekg/pkcs11"
)

// Fixed names. An object whose name has no nonce (the service's MAC keys,
// the audit seal key of an installation from before nonces) has the same
// CKA_ID in every process that makes it, and PKCS#11 has no "create if
// absent": two processes that both find nothing both generate, and from
// then on every lookup finds two objects and fails closed. A lock in the
// database does not help when the processes use different databases (two
// installations sharing a token), so the token itself arbitrates:
//
//   - After generating, the maker searches again at once and once more
//     after a settling time. If it sees more than one object it destroys
//     the one it made (its own handle proves that), waits a random time
//     and starts over; a maker that saw no rival keeps its object, and a
//     later maker finds it and takes it.
//   - The second search is needed because a token's view can lag another
//     process's write: SoftHSM 2.6 re-reads its object directory only when
//     a generation counter changed since this process last wrote, so the
//     second of two makers does not see the first's object (both counted
//     their write into one counter). The first, whose view is fresh, sees
//     the second's object and backs off. The settling time covers a rival
//     between its search and its generation (ten times this call's own
//     search and generation, at least settleMin). NSS softoken replaces an
//     object of the same id instead (Profile.ReplacesDuplicateID): there
//     the settling time keeps the maker from using a value a rival is
//     about to overwrite.
//   - An object found alone that does not pass check may be a rival's
//     between its creation and its read-back, and is waited on the same
//     way before it is refused.
//   - Two or more objects found before generating are a race in progress
//     (a rival about to destroy its own) or a token left broken by an
//     older release. The maker waits and looks again, a bounded number of
//     times, then fails closed with ErrAmbiguousObject naming the object:
//     which data was keyed with which of two such keys cannot be known,
//     so the operator decides (docs/operations.md, "Two objects under one
//     name").

const (
	// fixedAttempts bounds the rounds of generateFixed.
	fixedAttempts = 6
	// halfMadeAttempts bounds the rounds that wait for an object between
	// its creation and its read-back (milliseconds on SoftHSM).
	halfMadeAttempts = 3
	// settleMin and settleMax bound the settling time after a generation.
	settleMin = 50 * time.Millisecond
	settleMax = 2 * time.Second
)

// errRival: another object with the name appeared; start over.
var errRival = errors.New("hsm: another process made an object with the same id")

// generateFixed is generate for a name without a nonce. The caller holds
// mgmt. An object found alone is taken if check accepts it (the token
// attests that it generated it) and left for the operator otherwise.
func (p *PKCS11) generateFixed(ctx context.Context, ref ObjectRef, mech []*pkcs11.Mechanism, tmpl []*pkcs11.Attribute,
	check func(*pkcs11.Ctx, pkcs11.SessionHandle, pkcs11.ObjectHandle, ObjectRef) error) error {
	for attempt := 1; ; attempt++ {
		h, gen, settle, taken, err := p.makeFixed(ctx, ref, mech, tmpl, check)
		if err == nil && settle > 0 {
			err = p.confirmFixed(ctx, ref, h, gen, settle)
		}
		switch {
		case err == nil:
			if _, _, now := p.current(); now == gen {
				p.cache(ref, cachedHandle{h: h, gen: gen}) // else the next use finds it again
			}
			return nil
		case errors.Is(err, errRival) && attempt == fixedAttempts:
			return fmt.Errorf("%w: %s (still after %d attempts: %s)", ErrAmbiguousObject, ref, attempt, ambiguousHint)
		case errors.Is(err, errRival):
		case errors.Is(err, ErrAttributeMismatch) && taken && attempt < halfMadeAttempts:
			// Perhaps a rival's object between its creation and its
			// read-back: SoftHSM makes an object from the template, then
			// sets its value and CKA_ALWAYS_SENSITIVE, CKA_LOCAL and
			// CKA_NEVER_EXTRACTABLE in a second step. One that still does
			// not match after the rounds is left for the operator.
		default:
			return p.translate("generate "+ref.String(), err)
		}
		// A random wait, longer each round, so that two makers that both
		// backed off do not meet again.
		wait := settleMin << (attempt - 1)
		if err := sleepCtx(ctx, wait/2+rand.N(wait)); err != nil {
			return err
		}
	}
}

// makeFixed is one round of generateFixed on one session: the search and,
// when it finds nothing, the generation and the read-back. settle is the
// settling time when this call made the object (0 when it took one);
// taken says the object checked was found, not made.
func (p *PKCS11) makeFixed(ctx context.Context, ref ObjectRef, mech []*pkcs11.Mechanism, tmpl []*pkcs11.Attribute,
	check func(*pkcs11.Ctx, pkcs11.SessionHandle, pkcs11.ObjectHandle, ObjectRef) error) (h pkcs11.ObjectHandle, gen uint64, settle time.Duration, taken bool, err error) {
	_, _, gen = p.current()
	start := time.Now()
	err = p.doGen(ctx, gen, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		hs, err := p.findIn(c, sh, ref)
		switch {
		case err != nil:
			return err
		case len(hs) > 1:
			return errRival
		case len(hs) == 1:
			h, taken = hs[0], true
			return check(c, sh, h, ref) // left for the operator when it fails
		}
		taken = false // a retried unit
		if h, err = generateChecked(c, sh, mech, tmpl, ref, check); err != nil {
			return err
		}
		settle = min(max(10*time.Since(start), settleMin), settleMax)
		return nil
	})
	if hasCode(err, staleHandleCodes) {
		err = errRival // a module reset: look again
	}
	return h, gen, settle, taken, err
}

// confirmFixed searches for ref's objects at once and after settle; when
// it sees more than one it destroys h, the one this call made, and
// answers errRival. A module reset in between (gen changed) leaves h
// unproven: the next round looks again.
func (p *PKCS11) confirmFixed(ctx context.Context, ref ObjectRef, h pkcs11.ObjectHandle, gen uint64, settle time.Duration) error {
	for i := 0; i < 2; i++ {
		if i == 1 {
			if err := sleepCtx(ctx, settle); err != nil {
				return err
			}
		}
		err := p.doGen(ctx, gen, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
			hs, err := p.findIn(c, sh, ref)
			if err != nil || len(hs) == 1 {
				return err
			}
			if err := c.DestroyObject(sh, h); err != nil && !hasCode(err, staleHandleCodes) {
				return err
			}
			return errRival // none: someone destroyed it meanwhile; look again
		})
		if hasCode(err, staleHandleCodes) {
			return errRival
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ambiguousHint tells the operator what two objects under a name without
// a nonce mean and where the remedy is.
const ambiguousHint = "two processes made this fixed-name object at once, e.g. two installations " +
	"sharing the token before this release; see docs/operations.md, \"Two objects under one name\""
