package hsm

import "sync/atomic"

// counters are what Stats reports.
type counters struct {
	searches, cacheHits, cacheMisses, resets, reinits, sessionsOpened, sessionsClosed atomic.Uint64
}

// Stats are counters of the token layer, for metrics and tests. Searches is
// the one to watch: it must not grow with request traffic (a search costs
// milliseconds with many objects, an encryption microseconds).
type Stats struct {
	Searches       uint64 // C_FindObjects runs (never on a warm request path)
	CacheHits      uint64 // handle lookups answered from memory
	CacheMisses    uint64
	Resets         uint64 // recoveries after dead sessions or a token reset
	Reinits        uint64 // module finalized and initialised again after a storage fault
	SessionsOpened uint64
	SessionsOpen   int // opened and not yet closed or dropped
	SessionsIdle   int
	SessionsInUse  int
	MaxSessions    int
}

// Stats returns the current counters.
func (p *PKCS11) Stats() Stats {
	idle, inUse := p.pool.usage()
	opened := p.stats.sessionsOpened.Load()
	return Stats{
		Searches: p.stats.searches.Load(), CacheHits: p.stats.cacheHits.Load(),
		CacheMisses: p.stats.cacheMisses.Load(), Resets: p.stats.resets.Load(), Reinits: p.stats.reinits.Load(),
		SessionsOpened: opened, SessionsOpen: int(opened - p.stats.sessionsClosed.Load()),
		SessionsIdle: idle, SessionsInUse: inUse, MaxSessions: p.cfg.MaxSessions,
	}
}
