package service

import "context"

// AuditExport streams the chain, once durable, to a sink outside the
// database (package auditexport). It reads the records from the store
// itself, in seq order: the service only says when it committed some, and
// asks before each request's append whether the export has room.
type AuditExport interface {
	// Admit returns nil once one more record may be appended; an error
	// when the export stayed full (its block policy) until ctx ended or
	// its own bound passed: the request then fails closed.
	Admit(ctx context.Context) error
	// Committed says the chain is durable up to seq.
	Committed(seq int64)
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

// committed tells the export, if any, that records up to seq are durable.
func (a *Audit) committed(seq int64) {
	if a.export != nil && seq > 0 {
		a.export.Committed(seq)
	}
}
