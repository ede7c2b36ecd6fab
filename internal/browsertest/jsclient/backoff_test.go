package jsclient_test

import (
	"fmt"
	"math"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBackoff_GrowsCappedAndJittered runs wshub.js's backoff functions in
// the browser: the ceiling doubles from base up to max, every delay lies in
// [0, ceiling), and delays of one attempt are spread out (full jitter).
func TestBackoff_GrowsCappedAndJittered(t *testing.T) {
	tab := newBrowser(t)
	srv := newPageServer(t, nil)
	open(t, tab, srv.URL)

	type attempt struct {
		Attempt  int     `json:"attempt"`
		Ceiling  float64 `json:"ceiling"`
		Min      float64 `json:"min"`
		Max      float64 `json:"max"`
		Mean     float64 `json:"mean"`
		Distinct int     `json:"distinct"`
		Top      float64 `json:"top"`
		Zero     float64 `json:"zero"`
	}
	var got struct {
		Attempts []attempt `json:"attempts"`
		Defaults []float64 `json:"defaults"`
	}
	eval(t, tab, `(() => {
		const opts = {base: 100, max: 5000};
		const attempts = [];
		for (let a = 1; a <= 12; a++) {
			const ds = [];
			for (let i = 0; i < 400; i++) ds.push(M.backoffDelay(a, opts));
			attempts.push({
				attempt: a,
				ceiling: M.backoffCeiling(a, opts),
				min: Math.min(...ds),
				max: Math.max(...ds),
				mean: ds.reduce((x, y) => x + y, 0) / ds.length,
				distinct: new Set(ds).size,
				top: M.backoffDelay(a, opts, () => 0.999999),
				zero: M.backoffDelay(a, opts, () => 0),
			});
		}
		const defaults = [1, 2, 3, 4, 7, 8, 30].map((a) => M.backoffCeiling(a));
		return {attempts, defaults};
	})()`, &got)

	require.Len(t, got.Attempts, 12)
	for i, a := range got.Attempts {
		want := math.Min(5000, 100*math.Pow(2, float64(i)))
		assert.Equal(t, want, a.Ceiling, "ceiling of attempt %d", a.Attempt)
		assert.GreaterOrEqual(t, a.Min, 0.0, "attempt %d", a.Attempt)
		assert.Less(t, a.Max, a.Ceiling, "attempt %d stays under its ceiling", a.Attempt)
		assert.LessOrEqual(t, a.Max, 5000.0, "attempt %d stays under the cap", a.Attempt)
		assert.Greater(t, a.Distinct, 50, "attempt %d is jittered", a.Attempt)
		assert.InDelta(t, a.Ceiling, a.Top, 1, "random near 1 gives the ceiling")
		assert.Zero(t, a.Zero, "random 0 gives no delay (full jitter)")
		// The mean of a uniform [0, c) is c/2; 400 samples land well
		// within 20% of it.
		assert.InDelta(t, a.Ceiling/2, a.Mean, a.Ceiling*0.1, "mean of attempt %d", a.Attempt)
		if i > 0 {
			prev := got.Attempts[i-1]
			assert.GreaterOrEqual(t, a.Ceiling, prev.Ceiling, "ceilings never shrink")
			if prev.Ceiling < 5000 {
				assert.Greater(t, a.Mean, prev.Mean, "delays grow until the cap")
			}
		}
	}
	// Defaults: 0.5 s doubling to a 30 s cap.
	assert.Equal(t, []float64{500, 1000, 2000, 4000, 30000, 30000, 30000}, got.Defaults)
}

// TestClient_ReconnectUsesBackoff points a client at a port where nothing
// listens: it keeps trying, announcing each attempt with a delay under that
// attempt's ceiling, with attempts counting up.
func TestClient_ReconnectUsesBackoff(t *testing.T) {
	tab := newBrowser(t)
	srv := newPageServer(t, nil)
	open(t, tab, srv.URL)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "ws://" + ln.Addr().String() + "/ws"
	require.NoError(t, ln.Close())

	eval(t, tab, fmt.Sprintf(`window.c = track(new M.WSHubClient(%q, {token: 'alice', backoff: {base: 40, max: 160}})), true`, dead), nil)
	waitFor(t, tab, `count('reconnecting') >= 6`, `log`)
	eval(t, tab, `c.close(), true`, nil)

	var events []struct {
		Attempt int     `json:"attempt"`
		Delay   float64 `json:"delay"`
	}
	eval(t, tab, `log.filter((e) => e.t === 'reconnecting').map((e) => e.d)`, &events)
	require.GreaterOrEqual(t, len(events), 6)
	for i, e := range events {
		assert.Equal(t, i+1, e.Attempt)
		ceiling := math.Min(160, 40*math.Pow(2, float64(i)))
		assert.GreaterOrEqual(t, e.Delay, 0.0)
		assert.Less(t, e.Delay, ceiling, "attempt %d", e.Attempt)
	}
	var state string
	eval(t, tab, `c.readyState`, &state)
	assert.Equal(t, "closed", state)
}
