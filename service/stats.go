package service

import (
	"context"
	"sync/atomic"
)

// counters are what Stats reports. They count events of this process only;
// state shared by replicas (keys by state) is read from the store instead.
type counters struct {
	rotationsAutomatic, rotationsOnDemand atomic.Uint64
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
}

// Stats returns the current counters. It is cheap and touches neither the
// token nor the store.
func (s *Worker) Stats() Stats {
	return Stats{Rotations: map[RotationType]uint64{
		RotationAutomatic: s.stats.rotationsAutomatic.Load(),
		RotationOnDemand:  s.stats.rotationsOnDemand.Load(),
	}}
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
