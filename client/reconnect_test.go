package client_test

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/client"
)

// refuser is a server that refuses every connection and records when each
// attempt arrived.
type refuser struct {
	url string

	mu       sync.Mutex
	arrivals []time.Time // guarded by mu
}

func (r *refuser) arrived() {
	r.mu.Lock()
	r.arrivals = append(r.arrivals, time.Now())
	r.mu.Unlock()
}

func (r *refuser) times() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.arrivals...)
}

// refuseHTTP answers every request with 503 before any upgrade.
func refuseHTTP(t *testing.T) *refuser {
	r := &refuser{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		r.arrived()
		http.Error(w, "try later", http.StatusServiceUnavailable)
	})}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Close() })
	r.url = "ws://" + ln.Addr().String() + "/ws"
	return r
}

// refuseTCP accepts every TCP connection and closes it at once.
func refuseTCP(t *testing.T) *refuser {
	r := &refuser{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{}) // closed by the accept loop when it returns
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.arrived()
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	r.url = "ws://" + ln.Addr().String() + "/ws"
	return r
}

// TestClient_ReconnectDelaysGrowToTheCeiling: against a server that keeps
// refusing, the Go client's delays between attempts grow from Base towards
// Max and never pass the ceiling of their attempt, and the client really
// waits them out (the server sees the attempts at least that far apart).
//
// Delays are drawn with full jitter from [0, Ceiling(attempt)), so each one
// alone may be tiny; the check that they grow is on the last three
// together: with Base 1 ms they are drawn below 256, 300 and 300 ms, and
// sum to more than 10 ms except with probability under 1e-5, whereas a
// backoff stuck at its first ceiling keeps every delay under Base and the
// three under 3 ms.
func TestClient_ReconnectDelaysGrowToTheCeiling(t *testing.T) {
	for _, tt := range []struct {
		name  string
		start func(*testing.T) *refuser
	}{
		{"HTTP 503", refuseHTTP},
		{"TCP closed at accept", refuseTCP},
	} {
		t.Run(tt.name, func(t *testing.T) {
			backoff := client.Backoff{Base: time.Millisecond, Max: 300 * time.Millisecond}
			const retries = 11 // ceilings 1, 2, 4, ..., 256, then 300, 300 ms
			srv := tt.start(t)

			type retry struct {
				attempt int
				delay   time.Duration
			}
			var mu sync.Mutex
			var retriesSeen []retry // guarded by mu
			c, err := client.New(srv.url, client.Options{
				Token:   "alice",
				Backoff: backoff,
				OnReconnecting: func(attempt int, delay time.Duration) {
					mu.Lock()
					retriesSeen = append(retriesSeen, retry{attempt, delay})
					mu.Unlock()
				},
			})
			require.NoError(t, err)
			runErr := make(chan error, 1)
			go func() { runErr <- c.Run(context.Background()) }()
			require.Eventually(t, func() bool { return len(srv.times()) > retries }, 30*time.Second, 5*time.Millisecond,
				"the client did not retry %d times", retries)
			require.NoError(t, c.Close())
			require.NoError(t, <-runErr)

			arrivals := srv.times()
			mu.Lock()
			defer mu.Unlock()
			require.GreaterOrEqual(t, len(retriesSeen), retries)
			require.Greater(t, len(arrivals), retries)
			var delays []time.Duration
			for i, r := range retriesSeen[:retries] {
				k := i + 1
				require.Equal(t, k, r.attempt, "attempts are counted 1, 2, 3, ...")
				assert.Less(t, r.delay, backoff.Ceiling(k), "attempt %d: delay above its ceiling", k)
				assert.Less(t, r.delay, backoff.Max, "attempt %d: delay above Max", k)
				gap := arrivals[k].Sub(arrivals[k-1])
				assert.GreaterOrEqual(t, gap, r.delay, "attempt %d came %v after the previous one, before its delay", k, gap)
				delays = append(delays, r.delay)
			}
			t.Logf("delays: %v", delays)
			first := delays[0] + delays[1] + delays[2]
			last := delays[retries-3] + delays[retries-2] + delays[retries-1]
			assert.Greater(t, last, 10*backoff.Base,
				"the reconnect delays did not grow: the last three sum to %v (the first three: %v)", last, first)
			assert.Greater(t, last, first, "the reconnect delays did not grow")
		})
	}
}
