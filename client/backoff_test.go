package client_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/client"
)

func TestBackoff_ZeroValueUsesDefaults(t *testing.T) {
	var b client.Backoff
	assert.Equal(t, 500*time.Millisecond, b.Ceiling(1))
	assert.Equal(t, time.Second, b.Ceiling(2))
	assert.Equal(t, 2*time.Second, b.Ceiling(3))
	assert.Equal(t, 30*time.Second, b.Ceiling(7), "0.5 s · 2^6 = 32 s is capped")
	assert.Equal(t, 30*time.Second, b.Ceiling(1000), "huge attempts do not overflow")
	assert.Equal(t, 500*time.Millisecond, b.Ceiling(0), "attempts below 1 count as 1")
}

func TestBackoff_DelaysGrowAndStayUnderTheCap(t *testing.T) {
	b := client.Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second}
	rnd := rand.New(rand.NewPCG(1, 2))
	const samples = 2000
	prevMean := time.Duration(0)
	for attempt := 1; attempt <= 12; attempt++ {
		ceiling := b.Ceiling(attempt)
		require.LessOrEqual(t, ceiling, b.Max)
		var sum, maxSeen time.Duration
		for range samples {
			d := b.Next(attempt, rnd)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.Less(t, d, ceiling, "attempt %d", attempt)
			sum += d
			maxSeen = max(maxSeen, d)
		}
		mean := sum / samples
		// Full jitter: uniform over [0, ceiling), so the mean is about
		// half the ceiling and the largest sample close to it.
		assert.InDelta(t, float64(ceiling)/2, float64(mean), float64(ceiling)/10, "attempt %d mean", attempt)
		assert.Greater(t, maxSeen, ceiling*9/10, "attempt %d max", attempt)
		if attempt == 1 || b.Ceiling(attempt-1) < b.Max {
			assert.Greater(t, mean, prevMean, "attempt %d: delays grow", attempt)
		} else {
			assert.InDelta(t, float64(prevMean), float64(mean), float64(b.Max)/10, "attempt %d: capped", attempt)
		}
		prevMean = mean
	}
}

// Many clients that lost their connection at the same moment must not
// retry in lockstep: with separate random sources their delays spread
// over the whole window.
func TestBackoff_ClientsDoNotRetryInLockstep(t *testing.T) {
	b := client.Backoff{} // defaults: 0.5 s doubling to 30 s
	const clients = 1000
	for _, attempt := range []int{1, 4, 10} {
		ceiling := b.Ceiling(attempt)
		const buckets = 10
		var hist [buckets]int
		distinct := make(map[time.Duration]bool)
		for i := range clients {
			rnd := rand.New(rand.NewPCG(uint64(i), 0x5eed))
			d := b.Next(attempt, rnd)
			distinct[d] = true
			hist[int(d*buckets/ceiling)]++
		}
		assert.Greater(t, len(distinct), clients*99/100, "attempt %d: delays are distinct", attempt)
		for i, n := range hist {
			// Uniform: about 100 per bucket; no bucket empty or holding a crowd.
			assert.Greater(t, n, clients/buckets/2, "attempt %d bucket %d", attempt, i)
			assert.Less(t, n, clients/buckets*2, "attempt %d bucket %d", attempt, i)
		}
	}
}

func TestBackoff_NilRandIsUsable(t *testing.T) {
	b := client.Backoff{Base: time.Millisecond, Max: 4 * time.Millisecond}
	for attempt := 1; attempt < 10; attempt++ {
		d := b.Next(attempt, nil)
		assert.GreaterOrEqual(t, d, time.Duration(0))
		assert.Less(t, d, 4*time.Millisecond)
	}
}
