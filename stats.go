package wshub

import (
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a hub's counters, for operators: what a metrics
// exporter (the module github.com/wshub/wshub/metrics/wshubprom serves
// them to Prometheus) or a health page reports. Counters count from New
// and never go down; they describe this process only.
type Stats struct {
	// Connections is the number of open connections now.
	Connections int64
	// ConnectionsTotal counts the connections accepted (upgraded).
	ConnectionsTotal uint64
	// Refused counts the upgrade requests answered with an HTTP error,
	// by status code (400, 401, 403, 429, 503).
	Refused map[int]uint64
	// MessagesStored counts the messages this process appended to the
	// store; a resend of a stored cid is not counted again.
	MessagesStored uint64
	// Deliveries counts the frames of stored messages queued to
	// connections (a room message to 500 members is 500 deliveries).
	Deliveries uint64
	// ErrorFrames counts the error frames (cmd 40) sent, by code.
	ErrorFrames map[int]uint64
	// CloseFrames counts the close frames the hub sent, by close code:
	// 1013 for slow consumers, 1002 and 1007 for broken input, 1000 in
	// answer to a client's close, and so on.
	CloseFrames map[int]uint64
	// QueueOverflows counts the connections closed because their send
	// queue was full (each also counts in CloseFrames[1013]).
	QueueOverflows uint64
	// StoreAppend is the latency of Store.Append, the one store call
	// every message makes.
	StoreAppend Histogram
}

// Histogram is a latency distribution: Counts[i] is how many observations
// were at most Bounds[i] seconds (cumulative, as Prometheus has them);
// Count and Sum (seconds) cover every observation.
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

// latencyBounds are the upper bounds of the store latency histogram, in
// seconds: from a memory store's microseconds to a slow disk's fsync.
var latencyBounds = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// hubStats holds a hub's counters. The hot ones (per message) are single
// atomics; those kept per code are maps under mu, counted only on rare
// events (refusals, errors, closes).
type hubStats struct {
	conns, connsTotal        atomic.Int64
	stored, deliveries, over atomic.Uint64

	appendBuckets [15]atomic.Uint64 // one per latencyBounds, then +Inf
	appendCount   atomic.Uint64
	appendNanos   atomic.Uint64

	mu      sync.Mutex
	refused map[int]uint64 // guarded by mu
	errors  map[int]uint64 // guarded by mu
	closes  map[int]uint64 // guarded by mu

	// lastRefusalLog rate-limits the log of refused upgrades: UnixNano of
	// the last line written.
	lastRefusalLog atomic.Int64
	refusalsQuiet  atomic.Int64 // refusals not logged since that line
}

// count adds one to m[code]. The caller does not hold mu.
func (s *hubStats) count(m *map[int]uint64, code int) {
	s.mu.Lock()
	if *m == nil {
		*m = make(map[int]uint64)
	}
	(*m)[code]++
	s.mu.Unlock()
}

// observeAppend records the latency of one Store.Append.
func (s *hubStats) observeAppend(d time.Duration) {
	secs := d.Seconds()
	i := 0
	for i < len(latencyBounds) && secs > latencyBounds[i] {
		i++
	}
	s.appendBuckets[i].Add(1)
	s.appendCount.Add(1)
	s.appendNanos.Add(uint64(max(d, 0)))
}

// Stats returns a snapshot of the hub's counters.
func (h *Hub) Stats() Stats {
	s := &h.stats
	st := Stats{
		Connections:      s.conns.Load(),
		ConnectionsTotal: uint64(s.connsTotal.Load()),
		MessagesStored:   s.stored.Load(),
		Deliveries:       s.deliveries.Load(),
		QueueOverflows:   s.over.Load(),
	}
	s.mu.Lock()
	st.Refused, st.ErrorFrames, st.CloseFrames = maps.Clone(s.refused), maps.Clone(s.errors), maps.Clone(s.closes)
	s.mu.Unlock()
	hist := Histogram{Bounds: latencyBounds, Counts: make([]uint64, len(latencyBounds))}
	var cum uint64
	for i := range latencyBounds {
		cum += s.appendBuckets[i].Load()
		hist.Counts[i] = cum
	}
	hist.Count = cum + s.appendBuckets[len(latencyBounds)].Load()
	hist.Sum = float64(s.appendNanos.Load()) / float64(time.Second)
	st.StoreAppend = hist
	return st
}

// refuseLogEvery is the least time between two log lines about refused
// upgrades; the refusals in between are counted in the next line.
const refuseLogEvery = time.Second

// refuse answers an upgrade request with an HTTP error, counts it, and
// logs it with its reason, at most one line a second (the line says how
// many refusals went unlogged since the last one), so that an operator
// behind a misconfigured proxy sees why clients are turned away, and a
// flood of refusals does not flood the log.
func (h *Hub) refuse(w http.ResponseWriter, r *http.Request, code int, reason string) {
	s := &h.stats
	s.count(&s.refused, code)
	now := time.Now().UnixNano()
	last := s.lastRefusalLog.Load()
	if now-last >= int64(refuseLogEvery) && s.lastRefusalLog.CompareAndSwap(last, now) {
		h.log.Warn("wshub: upgrade refused", slog.Int("status", code), slog.String("reason", reason),
			slog.String("remote", r.RemoteAddr), slog.String("host", r.Host), slog.String("origin", r.Header.Get("Origin")),
			slog.Int64("unlogged_since_last", s.refusalsQuiet.Swap(0)))
	} else {
		s.refusalsQuiet.Add(1)
	}
	http.Error(w, reason, code)
}
