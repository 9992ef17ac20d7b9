package service

import (
	"context"
	"sync"
	"sync/atomic"
)

// counters are what Stats reports. They count events of this process only;
// state shared by replicas (keys by state) is read from the store instead.
type counters struct {
	rotationsAutomatic, rotationsOnDemand atomic.Uint64
	attributeRepairs                      atomic.Uint64 // reconciler: attributes set back
	offTemplate                           atomic.Int64  // reconciler, last pass: len(OffTemplate)
	encryptions                           atomic.Uint64 // GCM encryptions flushed to the store
	maxEncryptions                        atomic.Int64  // the highest version count a flush returned
	destructionsRefused                   atomic.Int64  // destructions and orphans kept (evidence.go)
	rotationFailures                      sync.Map      // reason -> *atomic.Uint64
}

// rotationFailed counts one failed automatic rotation by its reason.
func (c *counters) rotationFailed(err error) {
	n, _ := c.rotationFailures.LoadOrStore(failureReason(err), new(atomic.Uint64))
	n.(*atomic.Uint64).Add(1)
}

// rotated counts one rotation that reached the promoted step (the new
// version is primary), by type.
func (c *counters) rotated(typ RotationType) {
	switch typ {
	case RotationAutomatic:
		c.rotationsAutomatic.Add(1)
	case RotationOnDemand:
		c.rotationsOnDemand.Add(1)
	}
}

// Stats is a snapshot of the service's counters, for metrics and tests.
type Stats struct {
	// Rotations counts rotations promoted by this process, by type
	// (AUTOMATIC, ON_DEMAND); both keys are always present.
	Rotations map[RotationType]uint64
	// AttributeRepairs counts token object attributes the reconciler of
	// this process set back to a version's template.
	AttributeRepairs uint64
	// ObjectsOffTemplate is how many objects of live versions the last
	// reconciler pass found off the template in what it cannot repair
	// (ReconcileReport.OffTemplate).
	ObjectsOffTemplate int64
	// Encryptions counts the AES-GCM encryptions this process counted and
	// added to the store; MaxVersionEncryptions is the highest count of a
	// version those additions returned (to alert well before the limit).
	Encryptions           uint64
	MaxVersionEncryptions int64
	// DestructionsRefused counts the token objects this process kept
	// although the database asked for their destruction without sealed
	// evidence of a request whose window passed, or has no row for them
	// (evidence.go). Anything above zero is an alarm.
	DestructionsRefused int64
	// RotationFailures counts failed automatic rotations of this process
	// by reason; every one of FailureReasons is present.
	RotationFailures map[string]uint64
}

// Stats returns the current counters. It is cheap and touches neither the
// token nor the store.
func (s *Worker) Stats() Stats {
	failures := make(map[string]uint64, len(FailureReasons))
	for _, r := range FailureReasons {
		failures[r] = 0
		if n, ok := s.stats.rotationFailures.Load(r); ok {
			failures[r] = n.(*atomic.Uint64).Load()
		}
	}
	return Stats{RotationFailures: failures, Rotations: map[RotationType]uint64{
		RotationAutomatic: s.stats.rotationsAutomatic.Load(),
		RotationOnDemand:  s.stats.rotationsOnDemand.Load(),
	}, AttributeRepairs: s.stats.attributeRepairs.Load(), ObjectsOffTemplate: s.stats.offTemplate.Load(),
		Encryptions: s.stats.encryptions.Load(), MaxVersionEncryptions: s.stats.maxEncryptions.Load(),
		DestructionsRefused: s.stats.destructionsRefused.Load()}
}

// KeysByState counts keys per state, tombstones (Deleted) included, with
// one store query. States without keys are absent from the map. Callers on
// a hot path (a metrics scrape) should cache the answer: it reads the
// whole keys table's state column.
func (s *Worker) KeysByState(ctx context.Context) (map[KeyState]int, error) {
	n, err := s.store.CountKeysByState(ctx)
	if err != nil {
		return nil, s.storeErr(err)
	}
	return n, nil
}
