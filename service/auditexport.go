package service

import "context"

// AuditExport streams the chain, once durable, to a sink outside the
// database (package auditexport), in seq order: the service hands over
// the records it committed (the export reads the others, the seals and
// other replicas' records, from the store), and asks before each
// request's append whether the export has room.
type AuditExport interface {
	// Admit returns nil once one more record may be appended; an error
	// when the export stayed full (its block policy) until ctx ended or
	// its own bound passed: the request then fails closed.
	Admit(ctx context.Context) error
	// Committed hands over records whose transaction committed, in seq
	// order; they are not changed afterwards.
	Committed(events []*AuditEvent)
}

// admit asks the export, if any, for room for a request's record.
func (a *Audit) admit(ctx context.Context) error {
	if a.export == nil {
		return nil
	}
	if err := a.export.Admit(ctx); err != nil {
		return errorf(ErrUnavailable, "the audit export is not taking records (its sink is full or failing); retry later")
	}
	return nil
}

// committed hands the export, if any, records that committed.
func (a *Audit) committed(events ...*AuditEvent) {
	if a.export != nil && len(events) > 0 {
		a.export.Committed(events)
	}
}
