package jsclient_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
)

// presence is an item of watch() / roomPresence() or the detail of a
// 'presence' event.
type presence struct {
	UserID string `json:"userid"`
	Online bool   `json:"online"`
	TS     int64  `json:"ts"`
}

// Against a real hub: watch() resolves with the current states and each
// change comes as a 'presence' event with its time; roomPresence() lists a
// room's members (members only: HubError 403). When the hub drops alice's
// socket and bob leaves meanwhile, the client watches again by itself on
// the new socket and reports bob's fresh state (ts 0); the watch is live
// again: bob's return is an event.
func TestClient_WatchAndPresence(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{CheckOrigin: func(*http.Request) bool { return true }})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, srv.Hub.Join(ctx, "alice", "r"))
	require.NoError(t, srv.Hub.Join(ctx, "bob", "r"))
	tab := newBrowser(t)
	page := newPageServer(t, nil)
	open(t, tab, page.URL)
	eval(t, tab, fmt.Sprintf(`window.presences = [];
		window.a = track(new M.WSHubClient(%[1]q, {token: 'alice', backoff: {base: 60000, max: 60000}, random: () => 0.99}));
		window.b = new M.WSHubClient(%[1]q, {token: 'bob'});
		a.on('presence', (d) => presences.push(d)), true`, srv.URL), nil)
	waitFor(t, tab, `a.readyState === 'open' && b.readyState === 'open'`, `log`)

	var got []presence
	eval(t, tab, `a.watch(['bob', 'carol'])`, &got)
	assert.ElementsMatch(t, []presence{{UserID: "bob", Online: true}, {UserID: "carol"}}, got)

	eval(t, tab, fmt.Sprintf(`window.c = new M.WSHubClient(%q, {token: 'carol'}), true`, srv.URL), nil)
	waitFor(t, tab, `presences.length === 1`, `presences`)
	eval(t, tab, `c.close(), true`, nil)
	waitFor(t, tab, `presences.length === 2`, `presences`)
	eval(t, tab, `presences`, &got)
	for i := range got {
		assert.Greater(t, got[i].TS, time.Now().Add(-time.Minute).UnixMilli(), "a change carries its time")
		got[i].TS = 0
	}
	assert.Equal(t, []presence{{UserID: "carol", Online: true}, {UserID: "carol"}}, got)

	eval(t, tab, `a.roomPresence('r')`, &got)
	assert.ElementsMatch(t, []presence{{UserID: "alice", Online: true}, {UserID: "bob", Online: true}}, got)
	var code int
	eval(t, tab, `a.roomPresence('s').then(() => 0, (e) => e.code)`, &code)
	assert.Equal(t, 403, code, "members only")

	// The hub drops alice's socket; bob leaves before she is back (her
	// next attempt is a minute away until connect() says now).
	eval(t, tab, `window.opens = count('open'), true`, nil)
	for _, n := range srv.Hub.Conns("alice") {
		n.Close(websocket.CloseGoingAway, "restart")
	}
	waitFor(t, tab, `a.readyState === 'reconnecting'`, `log`)
	eval(t, tab, `b.close(), true`, nil)
	eventually(t, func() bool {
		on, err := srv.Hub.Online(context.Background(), "bob")
		return err == nil && !on[0]
	}, "the hub has bob offline")
	eval(t, tab, `a.connect(), true`, nil)
	waitFor(t, tab, `count('open') > opens && presences.length === 4`, `[log, presences]`)
	eval(t, tab, `presences.slice(2)`, &got)
	assert.ElementsMatch(t, []presence{{UserID: "bob"}, {UserID: "carol"}}, got, "the fresh states of the re-watch, ts 0")
	eval(t, tab, `window.b = new M.WSHubClient(b.url, {token: 'bob'}), true`, nil)
	waitFor(t, tab, `presences.length === 5`, `presences`)
	var last presence
	eval(t, tab, `presences[4]`, &last)
	assert.Equal(t, "bob", last.UserID)
	assert.True(t, last.Online)
	assert.NotZero(t, last.TS, "a change, on the renewed watch")
	eval(t, tab, `a.close(), b.close(), true`, nil)
}

// presenceHub is a scripted hub that answers every cmd 21 with the states
// in online, echoing the cid, and lets the test push frames or drop the
// socket.
type presenceHub struct {
	fakeHub
	mu       sync.Mutex
	online   map[string]bool
	answered int // guarded by mu: cmd 21 frames answered, over all connections
	push     chan string
	drop     chan struct{}
}

func newPresenceHub() *presenceHub {
	h := &presenceHub{online: map[string]bool{}, push: make(chan string, 16), drop: make(chan struct{}, 1)}
	h.script = func(_ int, c *websocket.Conn) {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case s := <-h.push:
				if c.WriteMessage(websocket.TextMessage, []byte(s)) != nil {
					return
				}
			case <-h.drop:
				_ = c.Close()
				return
			case <-tick.C:
				for _, a := range h.unanswered() {
					if err := c.WriteMessage(websocket.TextMessage, []byte(a)); err != nil {
						return
					}
				}
			}
		}
	}
	return h
}

func (h *presenceHub) set(user string, online bool) {
	h.mu.Lock()
	h.online[user] = online
	h.mu.Unlock()
}

// unanswered returns the answers to the cmd 21 frames not answered yet
// (a frame read just before this connection's script started included)
// and counts them answered.
func (h *presenceHub) unanswered() []string {
	reqs := h.received(21)
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, f := range reqs[h.answered:] {
		out = append(out, h.answer(f))
	}
	h.answered = len(reqs)
	return out
}

// answer is the reply to f. Called with h.mu held.
func (h *presenceHub) answer(f wshub.Frame) string {
	items := ""
	for i, id := range f.IDs {
		if i > 0 {
			items += ","
		}
		items += fmt.Sprintf(`{"cmd":21,"userid":%q,"online":%t}`, id, h.online[id])
	}
	return fmt.Sprintf(`{"cmd":21,"cid":%q,"items":[%s]}`, f.CID, items)
}

// The wire as SPEC.md has it: watch() sends {"cmd":21,"ids":[...]} with a
// cid and resolves with the reply carrying it; a change before the reply
// is an event, not the answer; a watch made while not connected goes out
// on connect; after a dropped socket the list is sent again unasked and
// the states of that reply come as events; watch([]) sends "ids":[] and
// clears what is sent after the next reconnect.
func TestClient_PresenceWire(t *testing.T) {
	h := newPresenceHub()
	h.set("bob", true)
	page := newPageServer(t, h)
	tab := newBrowser(t)
	open(t, tab, page.URL)
	eval(t, tab, fmt.Sprintf(`window.presences = [];
		window.a = track(new M.WSHubClient(%q, {token: 'alice', connect: false, backoff: {base: 10, max: 50}}));
		a.on('presence', (d) => presences.push(d));
		window.w = a.watch(['bob', 'carol']), a.connect(), true`, wsURL(page.URL)), nil)
	var got []presence
	eval(t, tab, `w`, &got)
	assert.Equal(t, []presence{{UserID: "bob", Online: true}, {UserID: "carol"}}, got, "asked on connect")
	reqs := h.received(21)
	require.Len(t, reqs, 1)
	assert.Equal(t, []string{"bob", "carol"}, reqs[0].IDs)
	assert.NotEmpty(t, reqs[0].CID)

	h.push <- `{"cmd":21,"userid":"carol","online":true,"ts":1700000000000}`
	waitFor(t, tab, `presences.length === 1`, `presences`)
	var first presence
	eval(t, tab, `presences[0]`, &first)
	assert.Equal(t, presence{UserID: "carol", Online: true, TS: 1700000000000}, first)

	h.set("bob", false)
	h.set("carol", true)
	h.drop <- struct{}{}
	waitFor(t, tab, `presences.length === 3`, `[log, presences]`)
	eval(t, tab, `presences.slice(1)`, &got)
	assert.Equal(t, []presence{{UserID: "bob"}, {UserID: "carol", Online: true}}, got)
	reqs = h.received(21)
	require.Len(t, reqs, 2)
	assert.Equal(t, []string{"bob", "carol"}, reqs[1].IDs, "the same list, unasked")
	assert.NotEqual(t, reqs[0].CID, reqs[1].CID)

	eval(t, tab, `a.watch([])`, &got)
	assert.Empty(t, got)
	var watching []string
	eval(t, tab, `a.watching()`, &watching)
	assert.Empty(t, watching)
	eval(t, tab, `window.opens = count('open'), true`, nil)
	h.drop <- struct{}{}
	waitFor(t, tab, `count('open') > opens`, `log`)
	// A marker round trip: the hub has read what the client sent on open.
	eval(t, tab, `a.watch(['dave'])`, &got)
	assert.Equal(t, []presence{{UserID: "dave"}}, got)
	reqs = h.received(21)
	require.Len(t, reqs, 4, "no re-watch of an empty list")
	assert.Equal(t, []string{"dave"}, reqs[3].IDs)
	var n int
	eval(t, tab, `presences.length`, &n)
	assert.Equal(t, 3, n)
	eval(t, tab, `a.close(), true`, nil)
}
