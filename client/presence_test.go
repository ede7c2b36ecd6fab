package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/client"
	"github.com/wshub/wshub/hubtest"
)

// presences records OnPresence calls on a channel.
type presences chan client.Presence

func (ps presences) options(opts client.Options) client.Options {
	opts.OnPresence = func(p client.Presence) { ps <- p }
	return opts
}

// next returns the next presence event, failing after wait.
func (ps presences) next(t *testing.T) client.Presence {
	t.Helper()
	select {
	case p := <-ps:
		return p
	case <-time.After(wait):
		t.Fatal("no presence event within", wait)
		return client.Presence{}
	}
}

// none requires that no presence event is pending.
func (ps presences) none(t *testing.T) {
	t.Helper()
	select {
	case p := <-ps:
		t.Fatalf("unexpected presence event %+v", p)
	default:
	}
}

// transition returns the next event with its TS checked and cleared: a
// transition carries the server time.
func (ps presences) transition(t *testing.T) client.Presence {
	t.Helper()
	p := ps.next(t)
	assert.Greater(t, p.TS, time.Now().Add(-time.Minute).UnixMilli(), "a transition carries its time: %+v", p)
	p.TS = 0
	return p
}

func watch(t *testing.T, c *client.Client, ids ...string) []client.Presence {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ps, err := c.Watch(ctx, ids...)
	require.NoError(t, err)
	return ps
}

func TestClient_WatchReportsStatesThenTransitions(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	ev := make(presences, 16)
	alice := dial(t, srv.URL, "alice", ev.options(client.Options{}))
	bob := dial(t, srv.URL, "bob", client.Options{})

	assert.ElementsMatch(t, []client.Presence{{UserID: "bob", Online: true}, {UserID: "carol", Online: false}},
		watch(t, alice, "bob", "carol"))
	assert.Equal(t, []string{"bob", "carol"}, alice.Watching())
	ev.none(t)

	carol := dial(t, srv.URL, "carol", client.Options{})
	assert.Equal(t, client.Presence{UserID: "carol", Online: true}, ev.transition(t))
	// A second connection of a user already online is no transition.
	dial(t, srv.URL, "bob", client.Options{})
	require.NoError(t, bob.Close())
	require.NoError(t, carol.Close())
	assert.Equal(t, client.Presence{UserID: "carol", Online: false}, ev.transition(t))
	ev.none(t)
	assert.Zero(t, alice.Pending(), "nothing waits")
}

func TestClient_WatchReplacesTheList(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	ev := make(presences, 16)
	alice := dial(t, srv.URL, "alice", ev.options(client.Options{}))
	bob := dial(t, srv.URL, "bob", client.Options{})

	watch(t, alice, "bob")
	assert.Equal(t, []client.Presence{{UserID: "carol"}}, watch(t, alice, "carol"))
	require.NoError(t, bob.Close()) // no longer watched: no event
	dial(t, srv.URL, "carol", client.Options{})
	assert.Equal(t, client.Presence{UserID: "carol", Online: true}, ev.transition(t), "carol's is the first event")

	assert.Empty(t, watch(t, alice), "watching nobody")
	assert.Empty(t, alice.Watching())
	dial(t, srv.URL, "bob", client.Options{})
	// A message sent after bob came back arrives with nothing before it.
	dave := dial(t, srv.URL, "dave", client.Options{})
	send(t, dave, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "alice", Content: "after"})
	assert.Equal(t, "after", recv(t, alice).Content)
	ev.none(t)

	ctx := context.Background()
	_, err := alice.Watch(ctx, make([]string, client.MaxWatch+1)...)
	assert.ErrorIs(t, err, wshub.ErrBadRequest)
	_, err = alice.Watch(ctx, "bob", "")
	assert.ErrorIs(t, err, wshub.ErrBadRequest)
}

func TestClient_RoomPresence(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice := dial(t, srv.URL, "alice", client.Options{})
	bob := dial(t, srv.URL, "bob", client.Options{})
	carol := dial(t, srv.URL, "carol", client.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, c := range []*client.Client{alice, bob} {
		_, err := c.Join(ctx, "r")
		require.NoError(t, err)
	}
	ps, err := alice.RoomPresence(ctx, "r")
	require.NoError(t, err)
	assert.ElementsMatch(t, []client.Presence{{UserID: "alice", Online: true}, {UserID: "bob", Online: true}}, ps)

	_, err = carol.RoomPresence(ctx, "r")
	assert.ErrorIs(t, err, wshub.ErrNotMember, "members only")
	var se *client.ServerError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 403, se.Code)
	_, err = carol.RoomPresence(ctx, "")
	assert.ErrorIs(t, err, wshub.ErrMissingDst)
	assert.Empty(t, carol.Watching(), "RoomPresence watches nothing")
	assert.Zero(t, alice.Pending())
}

// The hub keeps a watch per connection. alice's connection breaks; while
// she is away bob goes offline (she cannot hear it). Back on a new
// connection, her client watches bob again by itself and reports his
// fresh state; the watch is live again: bob's return is a transition.
func TestClient_WatchIsRenewedAfterAReconnect(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	p := startProxy(t, strings.TrimPrefix(srv.URL[:strings.LastIndex(srv.URL, "/")], "ws://"))
	ev := make(presences, 16)
	var cb events
	alice := dial(t, "ws://"+p.addr()+"/ws", "alice", cb.options(ev.options(client.Options{Backoff: fastBackoff})))
	bob := dial(t, srv.URL, "bob", client.Options{})
	assert.Equal(t, []client.Presence{{UserID: "bob", Online: true}}, watch(t, alice, "bob"))

	p.refuse(true)
	p.cut()
	require.Eventually(t, func() bool { return alice.State() != client.StateOpen }, wait, 5*time.Millisecond)
	require.NoError(t, bob.Close())
	require.Eventually(t, func() bool {
		on, err := srv.Hub.Online(context.Background(), "bob")
		return err == nil && !on[0]
	}, wait, 5*time.Millisecond, "the hub has bob offline")
	p.refuse(false)

	assert.Equal(t, client.Presence{UserID: "bob", Online: false}, ev.next(t), "the fresh state, TS 0")
	assert.GreaterOrEqual(t, cb.openCount(), 2)
	dial(t, srv.URL, "bob", client.Options{})
	assert.Equal(t, client.Presence{UserID: "bob", Online: true}, ev.transition(t))
	ev.none(t)
}

// fakeHub is a scripted hub on a real socket: it sends the welcome frame,
// hands every frame it reads to frames and writes what the test puts on
// out. closeConn ends the current connection.
type fakeHub struct {
	url       string
	frames    chan map[string]any
	out       chan string
	closeConn chan struct{}
}

func startFakeHub(t *testing.T) *fakeHub {
	t.Helper()
	h := &fakeHub{frames: make(chan map[string]any, 64), out: make(chan string, 64), closeConn: make(chan struct{}, 1)}
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		if ws.WriteMessage(websocket.TextMessage, []byte(`{"cmd":20,"userid":"alice","id":"c1"}`)) != nil {
			return
		}
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			for {
				_, b, err := ws.ReadMessage()
				if err != nil {
					return
				}
				var f map[string]any
				if json.Unmarshal(b, &f) == nil && f["cmd"] != float64(wshub.CmdPing) {
					h.frames <- f
				}
			}
		}()
		for {
			select {
			case s := <-h.out:
				if ws.WriteMessage(websocket.TextMessage, []byte(s)) != nil {
					return
				}
			case <-h.closeConn:
				_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye"), time.Now().Add(time.Second))
				return
			case <-readDone:
				return
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	h.url = "ws" + strings.TrimPrefix(srv.URL, "http")
	return h
}

func (h *fakeHub) next(t *testing.T) map[string]any {
	t.Helper()
	select {
	case f := <-h.frames:
		return f
	case <-time.After(wait):
		t.Fatal("the fake hub read nothing within", wait)
		return nil
	}
}

// The wire as SPEC.md has it, whatever the real hub does: the request and
// its reply matched by the echoed cid, a transition, the re-watch the
// client sends by itself on the next connection and the states of its
// reply reported as events, and the empty list that clears a watch.
func TestClient_PresenceWire(t *testing.T) {
	h := startFakeHub(t)
	ev := make(presences, 16)
	var cb events
	alice := dial(t, h.url, "alice", cb.options(ev.options(client.Options{Backoff: fastBackoff})))

	type res struct {
		ps  []client.Presence
		err error
	}
	done := make(chan res, 1)
	go func() {
		ps, err := alice.Watch(context.Background(), "bob", "carol")
		done <- res{ps, err}
	}()
	f := h.next(t)
	assert.Equal(t, float64(21), f["cmd"])
	assert.Equal(t, []any{"bob", "carol"}, f["ids"])
	cid, _ := f["cid"].(string)
	require.NotEmpty(t, cid)
	// A transition before the reply is an event, not the reply.
	h.out <- `{"cmd":21,"userid":"carol","online":true,"ts":1700000000000}`
	h.out <- `{"cmd":21,"cid":"` + cid + `","items":[{"cmd":21,"userid":"bob","online":true},{"cmd":21,"userid":"carol","online":false}]}`
	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, []client.Presence{{UserID: "bob", Online: true}, {UserID: "carol"}}, r.ps)
	assert.Equal(t, client.Presence{UserID: "carol", Online: true, TS: 1700000000000}, ev.next(t))

	h.closeConn <- struct{}{}
	f = h.next(t)
	assert.Equal(t, float64(21), f["cmd"], "watched again on the new connection")
	assert.Equal(t, []any{"bob", "carol"}, f["ids"])
	cid, _ = f["cid"].(string)
	require.NotEmpty(t, cid)
	h.out <- `{"cmd":21,"cid":"` + cid + `","items":[{"cmd":21,"userid":"bob","online":false},{"cmd":21,"userid":"carol","online":true}]}`
	assert.Equal(t, client.Presence{UserID: "bob", Online: false}, ev.next(t))
	assert.Equal(t, client.Presence{UserID: "carol", Online: true}, ev.next(t))

	go func() {
		ps, err := alice.Watch(context.Background())
		done <- res{ps, err}
	}()
	f = h.next(t)
	assert.Equal(t, []any{}, f["ids"], "an empty list, present on the wire")
	h.out <- `{"cmd":21,"cid":"` + f["cid"].(string) + `"}`
	r = <-done
	require.NoError(t, r.err)
	assert.Empty(t, r.ps)
	h.closeConn <- struct{}{}
	require.Eventually(t, func() bool { return cb.openCount() == 3 }, wait, 5*time.Millisecond)
	// Nothing watched: no re-watch on this connection. The next frame the
	// hub reads is the room presence request.
	go func() {
		ps, err := alice.RoomPresence(context.Background(), "r")
		done <- res{ps, err}
	}()
	f = h.next(t)
	assert.Equal(t, map[string]any{"cmd": float64(21), "dstid": "r", "room": true, "cid": f["cid"]}, f)
	h.out <- `{"cmd":21,"cid":"` + f["cid"].(string) + `","dstid":"r","room":true,"items":[{"cmd":21,"userid":"alice","online":true}]}`
	r = <-done
	require.NoError(t, r.err)
	assert.Equal(t, []client.Presence{{UserID: "alice", Online: true}}, r.ps)
	ev.none(t)
}

// A Watch made before the first connection waits in the outbox and goes out
// on connect; its answer comes to the caller, not to OnPresence, and the
// watch is live.
func TestClient_WatchMadeBeforeConnecting(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	bob := dial(t, srv.URL, "bob", client.Options{})
	ev := make(presences, 16)
	alice, err := client.New(srv.URL, ev.options(client.Options{Token: "alice"}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = alice.Close() })
	type res struct {
		ps  []client.Presence
		err error
	}
	done := make(chan res, 1)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	go func() {
		ps, err := alice.Watch(ctx, "bob")
		done <- res{ps, err}
	}()
	require.Eventually(t, func() bool { return alice.Pending() == 1 }, wait, time.Millisecond, "waiting in the outbox")
	go func() { _ = alice.Run(context.Background()) }()
	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, []client.Presence{{UserID: "bob", Online: true}}, r.ps)
	ev.none(t)
	require.NoError(t, bob.Close())
	assert.Equal(t, client.Presence{UserID: "bob"}, ev.transition(t))
	ev.none(t)
}
