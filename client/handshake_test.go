package client_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/client"
	"github.com/wshub/wshub/hubtest"
)

// gate is an HTTP server in front of a real hub: it answers the first
// refuse WebSocket handshakes itself with status (and Retry-After, when
// set), then hands every request to the hub. It counts the handshakes.
type gate struct {
	url        string
	status     int
	retryAfter string
	refuse     int32

	handshakes atomic.Int32
}

func newGate(t *testing.T, status int, retryAfter string, refuse int32) *gate {
	t.Helper()
	hub := hubtest.New(t, wshub.Options{})
	g := &gate{status: status, retryAfter: retryAfter, refuse: refuse}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) && g.handshakes.Add(1) <= g.refuse {
			if g.retryAfter != "" {
				w.Header().Set("Retry-After", g.retryAfter)
			}
			http.Error(w, "not now", g.status)
			return
		}
		hub.Hub.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.url = "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	return g
}

// retries records OnReconnecting and the handshake errors of OnError.
type retries struct {
	mu      sync.Mutex
	delays  []time.Duration
	refusal []*client.HandshakeError
}

func (r *retries) options(opts client.Options) client.Options {
	opts.OnReconnecting = func(_ int, d time.Duration) { r.mu.Lock(); r.delays = append(r.delays, d); r.mu.Unlock() }
	opts.OnError = func(err error) {
		if he, ok := err.(*client.HandshakeError); ok {
			r.mu.Lock()
			r.refusal = append(r.refusal, he)
			r.mu.Unlock()
		}
	}
	return opts
}

// A hub (or its authentication backend) that is busy for a moment answers
// the handshake with 429 or 5xx, often with Retry-After. The client keeps
// trying and connects once it is let through; Retry-After raises each
// delay to that much, but never above Backoff.Max.
func TestClient_RefusedHandshakeIsRetriedHonouringRetryAfter(t *testing.T) {
	backoff := client.Backoff{Base: time.Millisecond, Max: 100 * time.Millisecond}
	inAnHour := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	for _, tt := range []struct {
		status     int
		retryAfter string
		want       time.Duration // RetryAfter as parsed; 0: none
	}{
		{503, "1", time.Second},
		{429, inAnHour, time.Hour},
		{500, "", 0},
		{502, "", 0},
		{504, "2", 2 * time.Second},
	} {
		name := fmt.Sprint(tt.status)
		if tt.retryAfter != "" {
			name += " Retry-After"
		}
		t.Run(name, func(t *testing.T) {
			const refuse = 3
			g := newGate(t, tt.status, tt.retryAfter, refuse)
			var r retries
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			c, err := client.Dial(ctx, g.url, r.options(client.Options{Token: "alice", Backoff: backoff}))
			require.NoError(t, err, "the client did not get through")
			t.Cleanup(func() { _ = c.Close() })
			assert.Equal(t, "alice", c.Welcome().UserID)
			assert.EqualValues(t, refuse+1, g.handshakes.Load())

			r.mu.Lock()
			defer r.mu.Unlock()
			require.Len(t, r.refusal, refuse, "each refusal is reported to OnError")
			for _, he := range r.refusal {
				assert.Equal(t, tt.status, he.StatusCode)
				assert.InDelta(t, float64(tt.want), float64(he.RetryAfter), float64(time.Minute))
				assert.NotErrorIs(t, he, wshub.ErrUnauthorized)
				assert.NotErrorIs(t, he, client.ErrForbidden)
			}
			require.Len(t, r.delays, refuse)
			for i, d := range r.delays {
				if tt.want > 0 {
					assert.Equal(t, backoff.Max, d, "retry %d: Retry-After %s, bounded by Backoff.Max", i+1, tt.retryAfter)
				} else {
					assert.Less(t, d, backoff.Ceiling(i+1), "retry %d: the plain backoff", i+1)
				}
			}
		})
	}
}

// HTTP 401 (Authenticate refused the token) and 403 (the origin policy
// refused the page) would be refused again: the client stops after the
// first attempt with an error that says which.
func TestClient_UnauthorizedAndForbiddenStopAfterOneAttempt(t *testing.T) {
	for _, tt := range []struct {
		name   string
		opts   client.Options
		status int
		target error
	}{
		{"401 no token", client.Options{}, http.StatusUnauthorized, wshub.ErrUnauthorized},
		{"403 foreign origin", client.Options{Token: "alice",
			Header: http.Header{"Origin": {"https://elsewhere.example"}}}, http.StatusForbidden, client.ErrForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := newGate(t, 0, "", 0) // the real hub answers
			var r retries
			opts := tt.opts
			opts.Backoff = fastBackoff
			c, err := client.New(g.url, r.options(opts))
			require.NoError(t, err)
			runErr := make(chan error, 1)
			go func() { runErr <- c.Run(context.Background()) }()
			select {
			case err = <-runErr:
			case <-time.After(wait):
				_ = c.Close()
				t.Fatalf("Run did not stop after HTTP %d", tt.status)
			}
			require.ErrorIs(t, err, tt.target)
			var he *client.HandshakeError
			require.ErrorAs(t, err, &he)
			assert.Equal(t, tt.status, he.StatusCode)
			assert.NotContains(t, err.Error(), "alice", "the token stays out of errors")
			assert.Equal(t, client.StateClosed, c.State())
			assert.ErrorIs(t, c.Err(), tt.target)
			assert.EqualValues(t, 1, g.handshakes.Load(), "exactly one attempt")
			r.mu.Lock()
			assert.Empty(t, r.delays, "no reconnect scheduled")
			r.mu.Unlock()
		})
	}
}

// ReconnectAlways keeps trying after 403 too (say, while an operator fixes
// the origin policy).
func TestClient_ReconnectAlwaysRetriesForbidden(t *testing.T) {
	g := newGate(t, http.StatusForbidden, "", 1<<30)
	c, err := client.New(g.url, client.Options{Token: "alice", Backoff: fastBackoff, ReconnectAlways: true})
	require.NoError(t, err)
	go func() { _ = c.Run(context.Background()) }()
	require.Eventually(t, func() bool { return g.handshakes.Load() >= 3 }, wait, 5*time.Millisecond)
	require.NoError(t, c.Close())
}
