package store

import (
	"context"

	"github.com/hsmkms/hsmkms/service"
)

// Counts for metrics. They are read at scrape time, so they must stay one
// cheap statement: the indexes on keys lead with state, so the GROUP BY is
// answered from an index on both dialects.

const sqlCountKeysByState = `SELECT state, COUNT(*) AS n FROM keys GROUP BY state`

// stateCount is one row of sqlCountKeysByState.
type stateCount struct {
	State string `db:"state"`
	N     int    `db:"n"`
}

// CountKeysByState counts keys per state, tombstones (Deleted) and keys
// still being created included. A state without keys is absent from the
// map; an empty store gives an empty, non-nil map.
func (q scheduleRows) CountKeysByState(ctx context.Context) (map[service.KeyState]int, error) {
	var rows []stateCount
	if err := q.sel(ctx, &rows, sqlCountKeysByState); err != nil {
		return nil, internal("count", "keys by state", err)
	}
	out := make(map[service.KeyState]int, len(rows))
	for _, r := range rows {
		out[service.KeyState(r.State)] = r.N
	}
	return out, nil
}
