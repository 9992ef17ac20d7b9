package policy

import "time"

// Rotation status values shown by DescribeKey and rotation-status.
const (
	RotationStatusEnabled   = "Enabled"
	RotationStatusDisabled  = "Disabled"
	RotationStatusSuspended = "Suspended"
)

// RotationStatus is Enabled when the policy is on and the key can rotate,
// Suspended when the policy is on but the key is Disabled or
// PendingDeletion, and Disabled otherwise. EXTERNAL keys never rotate.
func RotationStatus(policyEnabled bool, state, origin string) string {
	if !policyEnabled || origin == OriginExternal {
		return RotationStatusDisabled
	}
	if state == StateEnabled {
		return RotationStatusEnabled
	}
	return RotationStatusSuspended
}

// NextRotation is last + interval, where last is the schedule's anchor: the
// last automatic rotation or when automatic rotation was turned on (an
// on-demand rotation is no anchor, as in AWS KMS). When that lies in the
// past (the interval was shortened) it is returned as is: the worker finds
// the key due at once.
func NextRotation(last time.Time, interval time.Duration) time.Time {
	return last.Add(interval)
}

// ResumedNextRotation is the next rotation of a key whose rotation resumes
// at now (re-enabled, deletion cancelled): the schedule restarts from the
// later of last rotation and now, so missed rotations do not come in a burst.
func ResumedNextRotation(last, now time.Time, interval time.Duration) time.Time {
	next := last.Add(interval)
	if next.Before(now) {
		return now.Add(interval)
	}
	return next
}
