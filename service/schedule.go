package service

import (
	"errors"
	"time"

	"github.com/hsmkms/hsmkms/policy"
)

// rotationAnchor is where k's automatic schedule counts from: its last
// automatic rotation or when rotation was turned on; keys that predate the
// anchor fall back to the last rotation, then creation.
func rotationAnchor(k *Key) time.Time {
	switch {
	case k.RotationAnchor != nil:
		return *k.RotationAnchor
	case k.LastRotation != nil:
		return *k.LastRotation
	}
	return k.CreatedAt
}

// scheduleAfterRotation updates k's schedule and counters for a rotation
// promoted at now. An automatic rotation restarts the schedule; an
// on-demand one leaves it alone (as in AWS KMS) and uses up one of the
// quota. Either success clears the last failure.
func scheduleAfterRotation(k *Key, typ RotationType, now time.Time) {
	k.RotationFailure = nil
	if typ == RotationOnDemand {
		k.OnDemandRotations++
		return
	}
	k.RotationAnchor = &now
	if k.RotationEnabled {
		next := policy.NextRotation(now, k.RotationInterval)
		k.NextRotation = &next
	}
}

// OnDemandRotationsRemaining is how many on-demand rotations k has left;
// nil when the quota is unlimited.
func (s *Keys) OnDemandRotationsRemaining(k *Key) *int {
	if s.cfg.MaxOnDemandRotations < 0 {
		return nil
	}
	n := max(s.cfg.MaxOnDemandRotations-k.OnDemandRotations, 0)
	return &n
}

// checkOnDemandQuota refuses an on-demand rotation of a key that has used
// its quota. Called under the key's lease, which orders it with every other
// rotation of the key.
func (s *Keys) checkOnDemandQuota(k *Key) error {
	if left := s.OnDemandRotationsRemaining(k); left != nil && *left == 0 {
		return errorf(ErrLimitExceeded, "key %s has used all %d of its on-demand rotations; automatic rotation is not limited",
			k.ID, s.cfg.MaxOnDemandRotations)
	}
	return nil
}

// Reasons of failed automatic rotations (metric hsmkms_rotation_failures_total).
const (
	FailureLimitExceeded = "limit_exceeded" // e.g. the key at MaxVersionsPerKey
	FailureInvalidState  = "invalid_state"
	FailureUnavailable   = "unavailable" // token or database; retried at the next tick
	FailureInternal      = "internal"
)

// FailureReasons lists every reason, so that each counter exists from the
// start (an alert on a rate needs the zero).
var FailureReasons = []string{FailureLimitExceeded, FailureInvalidState, FailureUnavailable, FailureInternal}

// failureReason classifies why an automatic rotation failed.
func failureReason(err error) string {
	switch {
	case errors.Is(err, ErrLimitExceeded):
		return FailureLimitExceeded
	case errors.Is(err, ErrInvalidState), errors.Is(err, ErrDisabled):
		return FailureInvalidState
	case errors.Is(err, ErrUnavailable):
		return FailureUnavailable
	}
	return FailureInternal
}

// failureMessage is what clients see of a failed automatic rotation: a
// domain error's message is client-safe by construction; anything else is
// an internal error, whose details only the server log has.
func failureMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error; the server log has the details"
}
