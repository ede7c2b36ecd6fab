package client

import (
	"math/rand/v2"
	"time"
)

// Default backoff bounds (Backoff's zero value uses them).
const (
	DefaultBackoffBase = 500 * time.Millisecond
	DefaultBackoffMax  = 30 * time.Second
)

// Backoff computes reconnect delays: exponential growth with full jitter.
//
// The delay before retry number attempt (1 for the first retry) is drawn
// uniformly from [0, Ceiling(attempt)), where the ceiling starts at Base and
// doubles with every attempt up to Max. Full jitter (rather than a fixed
// delay plus a little noise) spreads the retries of many clients that lost
// their connection at the same moment — a hub restart drops every client at
// once — over the whole window, so they do not come back in synchronized
// waves that knock the restarted hub over again.
//
// The zero value uses DefaultBackoffBase and DefaultBackoffMax.
type Backoff struct {
	Base time.Duration // ceiling of the first delay; 0 means DefaultBackoffBase
	Max  time.Duration // cap of the ceiling; 0 means DefaultBackoffMax
}

func (b Backoff) bounds() (base, maxd time.Duration) {
	base, maxd = b.Base, b.Max
	if base <= 0 {
		base = DefaultBackoffBase
	}
	if maxd <= 0 {
		maxd = DefaultBackoffMax
	}
	if maxd < base {
		maxd = base
	}
	return base, maxd
}

// Ceiling returns the upper bound (exclusive) of the delay before retry
// number attempt: min(Max, Base·2^(attempt-1)). An attempt below 1 counts
// as 1.
func (b Backoff) Ceiling(attempt int) time.Duration {
	base, maxd := b.bounds()
	if attempt < 1 {
		attempt = 1
	}
	d := base
	for i := 1; i < attempt; i++ {
		if d >= maxd/2 {
			return maxd
		}
		d *= 2
	}
	return min(d, maxd)
}

// Next returns the delay before retry number attempt (1 for the first
// retry), drawn uniformly from [0, Ceiling(attempt)) with rnd. rnd must not
// be used by another goroutine at the same time; a nil rnd uses the
// goroutine-safe top-level functions of math/rand/v2.
func (b Backoff) Next(attempt int, rnd *rand.Rand) time.Duration {
	c := int64(b.Ceiling(attempt))
	if rnd == nil {
		return time.Duration(rand.Int64N(c))
	}
	return time.Duration(rnd.Int64N(c))
}

// atLeast returns d, raised to floor (a server's Retry-After) but never
// above Max: a server cannot make the client wait longer than its backoff
// allows, nor retry sooner than it asked within that bound.
func (b Backoff) atLeast(d, floor time.Duration) time.Duration {
	_, maxd := b.bounds()
	return max(d, min(floor, maxd))
}
