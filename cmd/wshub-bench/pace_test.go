package main

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pace makes every call once, in order, and spreads them evenly: with a
// message due every 100 µs, the gaps between calls are about that, not
// bursts at millisecond steps with nothing in between (as a Go timer per
// sender gives when the process idles: gaps of ~0 and ~1 ms).
func TestPace_SpreadsTheSendsEvenly(t *testing.T) {
	const n, rate, count = 100, 100.0, 30 // a call every 100 µs for 0.3 s
	type call struct{ i, k int }
	var calls []call
	var at []time.Time
	stop := make(chan struct{})
	start := time.Now().Add(5 * time.Millisecond)
	pace(n, stop, start, rate, count, func(i, k int) {
		at = append(at, time.Now())
		calls = append(calls, call{i, k})
	})
	require.Len(t, calls, n*count)
	for j, c := range calls {
		require.Equal(t, call{j % n, j / n}, c, "call %d", j)
	}
	assert.False(t, at[0].Before(start), "the first call came before its time")

	gaps := make([]time.Duration, 0, len(at)-1)
	for j := 1; j < len(at); j++ {
		gaps = append(gaps, at[j].Sub(at[j-1]))
	}
	slices.Sort(gaps)
	median := gaps[len(gaps)/2]
	t.Logf("gaps between calls: p10 %v, median %v, p90 %v", gaps[len(gaps)/10], median, gaps[len(gaps)*9/10])
	assert.Greater(t, median, 30*time.Microsecond, "the calls come in bursts")
}

// pace returns once stop is closed, without the calls still due.
func TestPace_StopsWhenStopCloses(t *testing.T) {
	stop := make(chan struct{})
	calls := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		pace(10, stop, time.Now(), 10, 1000, func(int, int) { calls++ }) // 100 s of calls
	}()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("pace did not return after stop closed")
	}
	assert.Greater(t, calls, 0)
	assert.Less(t, calls, 10*1000)
}

// A paced sender whose window is full skips its turn (counted), and holds
// up none of the others; every writerDone is closed at the end.
func TestPaceWrites_AFullWindowSkipsItsTurn(t *testing.T) {
	tl := &tally{}
	conns := make([]*lconn, 3)
	for i := range conns {
		conns[i] = newLconn(i, "u", tl)
		conns[i].window = make(chan struct{}, 1)
		conns[i].window <- struct{}{} // full: no receipt will come
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		paceWrites(tl, conns, make(chan struct{}), time.Now(), 1000, 4)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("paceWrites waited for a full window")
	}
	assert.EqualValues(t, 3*4, tl.skipped.Load())
	assert.Zero(t, tl.sent.Load())
	for _, c := range conns {
		select {
		case <-c.writerDone:
		default:
			t.Fatal("a writerDone is still open")
		}
	}
}
