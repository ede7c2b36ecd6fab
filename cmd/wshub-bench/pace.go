//go:build linux

package main

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// pace calls send(i, k) for message k (k < count) of each of n senders
// i, at t0 + (k + i/n)/rate: every sender at rate a second, the senders
// spread evenly over each period, until stop is closed. It returns when
// every message was sent or stop was closed; a late call (the thread was
// not running at its time) is made at once.
//
// One goroutine, on an OS thread of its own, sleeps in nanosleep(2) with a
// timer slack of 1 ns between the calls. A Go timer per sender does not
// keep such a schedule: when the process has nothing else to do, the
// runtime waits for its next timer in epoll_wait, whose timeout is in
// milliseconds (go.dev/issue/53824), so the senders due within one
// millisecond or more all fire together: bursts of tens of messages at a
// time, whose last ones wait for the first ones in every queue on their
// way (measured in docs/benchmarks.md, "Sends on time").
func pace(n int, stop <-chan struct{}, t0 time.Time, rate float64, count int, send func(i, k int)) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0) // this thread only
	gap := float64(time.Second) / rate / float64(n)
	for k := range count {
		for i := range n {
			due := t0.Add(time.Duration(float64(k*n+i) * gap))
			if !sleepUntil(due, stop) {
				return
			}
			send(i, k)
		}
	}
}

// sleepUntil sleeps until due or until stop is closed, and reports
// whether stop is still open. Long waits go to a Go timer (its late
// wake-up is taken up by the nanosleep that follows); the last 2 ms to
// nanosleep(2) on the calling thread.
func sleepUntil(due time.Time, stop <-chan struct{}) bool {
	const fine = 2 * time.Millisecond
	if w := time.Until(due); w > 2*fine {
		t := time.NewTimer(w - fine)
		select {
		case <-t.C:
		case <-stop:
			t.Stop()
			return false
		}
	}
	if w := time.Until(due); w > 0 {
		ts := unix.NsecToTimespec(int64(w))
		for unix.Nanosleep(&ts, &ts) == unix.EINTR {
		}
	}
	select {
	case <-stop:
		return false
	default:
		return true
	}
}
