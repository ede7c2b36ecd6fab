package jsclient_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
)

// gate sits in front of a real hub at the page's own /ws: it refuses the
// first refuse WebSocket handshakes with status (and Retry-After when set),
// and answers the client's status probes (plain GETs) the same way until
// then; everything else goes to the hub. It counts both.
type gate struct {
	hub        *wshub.Hub
	status     int
	retryAfter string
	refuse     int32

	handshakes atomic.Int32
	probes     atomic.Int32
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var refused bool
	if websocket.IsWebSocketUpgrade(r) {
		refused = g.handshakes.Add(1) <= g.refuse
	} else {
		g.probes.Add(1)
		refused = g.handshakes.Load() <= g.refuse
	}
	if !refused {
		g.hub.ServeHTTP(w, r)
		return
	}
	if g.retryAfter != "" {
		w.Header().Set("Retry-After", g.retryAfter)
	}
	http.Error(w, "not now", g.status)
}

// closeEvent is the detail of a 'close' event.
type closeEvent struct {
	Code          int     `json:"code"`
	Reason        string  `json:"reason"`
	WillReconnect bool    `json:"willReconnect"`
	Status        int     `json:"status"`
	RetryAfter    float64 `json:"retryAfter"`
}

// A hub (or its authentication backend) that is busy answers the handshake
// with 429 or 5xx, often with Retry-After. The browser hides the status, so
// the client asks for it (a plain GET of the same URL); it keeps trying,
// raises each delay to Retry-After (never above backoff.max), and
// connects once let through.
func TestClient_RefusedHandshakeIsRetriedHonouringRetryAfter(t *testing.T) {
	tab := newBrowser(t)
	for _, tt := range []struct {
		status     int
		retryAfter string
		wantMS     float64 // Retry-After in ms; 0: none
	}{
		{503, "1", 1000},
		{429, "2", 2000},
		{500, "", 0},
		{502, "", 0},
		{504, "", 0},
	} {
		name := fmt.Sprint(tt.status)
		if tt.retryAfter != "" {
			name += " Retry-After"
		}
		t.Run(name, func(t *testing.T) {
			const refuse = 3
			hub := hubtest.New(t, wshub.Options{})
			g := &gate{hub: hub.Hub, status: tt.status, retryAfter: tt.retryAfter, refuse: refuse}
			srv := newPageServer(t, g)
			open(t, tab, srv.URL)
			eval(t, tab, `window.c = track(new M.WSHubClient('/ws', {token: 'alice', backoff: {base: 10, max: 200}})), true`, nil)
			waitFor(t, tab, `c.readyState === 'open'`, `log`)
			var user string
			eval(t, tab, `c.userId`, &user)
			assert.Equal(t, "alice", user)
			assert.EqualValues(t, refuse+1, g.handshakes.Load())
			assert.EqualValues(t, refuse, g.probes.Load(), "one status probe per refused handshake")

			var closes []closeEvent
			eval(t, tab, `log.filter((e) => e.t === 'close').map((e) => e.d)`, &closes)
			require.Len(t, closes, refuse)
			for _, ev := range closes {
				assert.Equal(t, tt.status, ev.Status)
				assert.Equal(t, tt.wantMS, ev.RetryAfter)
				assert.True(t, ev.WillReconnect)
				assert.Equal(t, fmt.Sprint("HTTP ", tt.status), ev.Reason)
			}
			var delays []float64
			eval(t, tab, `log.filter((e) => e.t === 'reconnecting').map((e) => e.d.delay)`, &delays)
			require.Len(t, delays, refuse)
			for i, d := range delays {
				if tt.wantMS > 0 {
					assert.Equal(t, 200.0, d, "retry %d: Retry-After %s, bounded by backoff.max", i+1, tt.retryAfter)
				} else {
					assert.Less(t, d, 10*float64(int(1)<<i), "retry %d: the plain backoff", i+1)
				}
			}
			eval(t, tab, `c.close(), true`, nil)
		})
	}
}

// HTTP 401 (the token is refused) and 403 (the hub's origin policy refuses
// the page) would be refused again: the client stops after one attempt,
// in the closed state, with the status in lastClose.
func TestClient_UnauthorizedAndForbiddenStopAfterOneAttempt(t *testing.T) {
	tab := newBrowser(t)
	for _, tt := range []struct {
		name   string
		opts   wshub.Options
		token  string
		status int
	}{
		{"401 no token", wshub.Options{}, "", http.StatusUnauthorized},
		{"403 origin refused", wshub.Options{CheckOrigin: func(*http.Request) bool { return false }}, "alice", http.StatusForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hub := hubtest.New(t, tt.opts)
			g := &gate{hub: hub.Hub} // the hub itself answers
			srv := newPageServer(t, g)
			open(t, tab, srv.URL)
			eval(t, tab, fmt.Sprintf(`window.c = track(new M.WSHubClient('/ws', {token: %q, backoff: {base: 10, max: 20}})), true`, tt.token), nil)
			waitFor(t, tab, `c.readyState === 'closed'`, `log`)
			var last closeEvent
			eval(t, tab, `c.lastClose`, &last)
			assert.Equal(t, tt.status, last.Status)
			assert.Equal(t, fmt.Sprint("HTTP ", tt.status), last.Reason)
			assert.False(t, last.WillReconnect)
			// Many backoff periods later still one attempt.
			time.Sleep(300 * time.Millisecond)
			assert.EqualValues(t, 1, g.handshakes.Load(), "exactly one attempt")
			assert.EqualValues(t, 1, g.probes.Load())
			var n int
			eval(t, tab, `count('reconnecting')`, &n)
			assert.Zero(t, n)
			// The page may ask (after getting a new token, say).
			eval(t, tab, `c.reconnect(), true`, nil)
			waitFor(t, tab, `count('close') === 2 && c.readyState === 'closed'`, `log`)
			assert.EqualValues(t, 2, g.handshakes.Load())
		})
	}
}
