package jsclient_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/store"
)

// fakeHub is a scripted WebSocket server: for each connection it sends a
// welcome frame and then runs script, recording every frame the client
// sends.
type fakeHub struct {
	script func(n int, c *websocket.Conn)

	mu     sync.Mutex
	conns  int           // guarded by mu; connections accepted
	frames []wshub.Frame // guarded by mu; frames received, in order
	query  []string      // guarded by mu; raw query of each connection
}

func (f *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	f.mu.Lock()
	f.conns++
	n := f.conns
	f.query = append(f.query, r.URL.RawQuery)
	f.mu.Unlock()
	_ = c.WriteJSON(wshub.Frame{Cmd: wshub.CmdWelcome, UserID: r.URL.Query().Get("token"), ID: fmt.Sprint("conn", n)})
	done := make(chan struct{}) // closed by the reader below when the socket ends
	go func() {
		defer close(done)
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			fr, err := wshub.DecodeFrame(b)
			if err != nil {
				continue
			}
			f.mu.Lock()
			f.frames = append(f.frames, *fr)
			f.mu.Unlock()
		}
	}()
	if f.script != nil {
		f.script(n, c)
	}
	<-done
}

func (f *fakeHub) connCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

// received returns the frames received with the given cmd.
func (f *fakeHub) received(cmd wshub.Cmd) []wshub.Frame {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []wshub.Frame
	for _, fr := range f.frames {
		if fr.Cmd == cmd {
			out = append(out, fr)
		}
	}
	return out
}

// eventually waits for cond, failing the test after waitTimeout.
func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	require.Eventually(t, cond, waitTimeout, 10*time.Millisecond, what)
}

func wsURL(httpURL string) string { return "ws" + strings.TrimPrefix(httpURL, "http") + "/ws" }

// TestClient_PongTimeoutReplacesSilentSocket: the server keeps the socket
// open but never answers, so the browser never fires onclose; the client
// notices the missing pong, drops the socket and connects again.
func TestClient_PongTimeoutReplacesSilentSocket(t *testing.T) {
	fake := &fakeHub{script: func(n int, c *websocket.Conn) {
		// Silence. The reader keeps the connection open until the client closes it.
	}}
	tab := newBrowser(t)
	srv := newPageServer(t, fake)
	open(t, tab, srv.URL)

	eval(t, tab, fmt.Sprintf(`window.c = track(new M.WSHubClient(%q, {token: 'alice',
		heartbeatInterval: 150, pongTimeout: 300, backoff: {base: 20, max: 50}})), true`, wsURL(srv.URL)), nil)
	waitFor(t, tab, `log.some((e) => e.t === 'close' && /no answer to ping/.test(e.d.reason))`, `log`)
	eventually(t, func() bool { return fake.connCount() >= 2 }, "a second connection after the pong timeout")
	assert.NotEmpty(t, fake.received(wshub.CmdPing), "the client pinged")

	var closeEv struct {
		Code          int  `json:"code"`
		WillReconnect bool `json:"willReconnect"`
	}
	eval(t, tab, `log.find((e) => e.t === 'close').d`, &closeEv)
	assert.Equal(t, 1006, closeEv.Code)
	assert.True(t, closeEv.WillReconnect)
	eval(t, tab, `c.close(), true`, nil)
}

// TestClient_HeartbeatAnsweredKeepsSocket: a server that answers pings
// keeps the one connection.
func TestClient_HeartbeatAnsweredKeepsSocket(t *testing.T) {
	srvHub := hubtest.New(t, wshub.Options{CheckOrigin: func(*http.Request) bool { return true }})
	tab := newBrowser(t)
	srv := newPageServer(t, nil)
	open(t, tab, srv.URL)

	eval(t, tab, fmt.Sprintf(`window.c = track(new M.WSHubClient(%q, {token: 'alice',
		heartbeatInterval: 100, pongTimeout: 300})), true`, srvHub.URL), nil)
	waitFor(t, tab, `c.readyState === 'open'`, `log`)
	// Ten heartbeats later the first connection is still the only one.
	eval(t, tab, `new Promise((r) => setTimeout(r, 1000)).then(() => true)`, nil)
	var n int
	eval(t, tab, `count('open')`, &n)
	assert.Equal(t, 1, n, "one connection, never replaced")
	eval(t, tab, `count('close')`, &n)
	assert.Zero(t, n)
	eval(t, tab, `c.close(), true`, nil)
}

// TestClient_CloseCodes: after 4000 (replaced) and 1008 (policy) the
// client stays closed until the page calls reconnect(); after 1001 it
// comes back by itself.
func TestClient_CloseCodes(t *testing.T) {
	tab := newBrowser(t)
	for _, tc := range []struct {
		code      int
		reconnect bool
	}{
		{4000, false},
		{1008, false},
		{1001, true},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			fake := &fakeHub{script: func(n int, c *websocket.Conn) {
				_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(tc.code, "bye"))
			}}
			srv := newPageServer(t, fake)
			open(t, tab, srv.URL)
			eval(t, tab, fmt.Sprintf(`window.c = track(new M.WSHubClient(%q, {token: 'alice', backoff: {base: 10, max: 20}})), true`, wsURL(srv.URL)), nil)
			waitFor(t, tab, fmt.Sprintf(`log.some((e) => e.t === 'close' && e.d.code === %d)`, tc.code), `log`)
			if tc.reconnect {
				eventually(t, func() bool { return fake.connCount() >= 3 }, "reconnects after 1001")
				eval(t, tab, `c.close(), true`, nil)
				return
			}
			var state string
			eval(t, tab, `c.readyState`, &state)
			assert.Equal(t, "closed", state)
			// Many backoff periods later still one connection.
			time.Sleep(300 * time.Millisecond)
			assert.Equal(t, 1, fake.connCount(), "no reconnect after %d", tc.code)
			// The application may ask.
			eval(t, tab, `c.reconnect(), true`, nil)
			eventually(t, func() bool { return fake.connCount() == 2 }, "reconnect() connects again")
			eval(t, tab, `c.close(), true`, nil)
		})
	}
}

// TestClient_AcksAndDropsDuplicates: with ack=1 every direct message is
// acknowledged, a duplicate (same id) is acknowledged again but not shown
// to the page twice, and room messages are not acknowledged.
func TestClient_AcksAndDropsDuplicates(t *testing.T) {
	fake := &fakeHub{script: func(n int, c *websocket.Conn) {
		for _, f := range []wshub.Frame{
			{Cmd: wshub.CmdSingle, ID: "m1", UserID: "bob", DstID: "alice", Content: "one", Seq: 1},
			{Cmd: wshub.CmdSingle, ID: "m1", UserID: "bob", DstID: "alice", Content: "one", Seq: 1},
			{Cmd: wshub.CmdSingle, ID: "m2", UserID: "bob", DstID: "alice", Content: "two", Seq: 2},
			{Cmd: wshub.CmdRoom, ID: "r1", UserID: "bob", DstID: "lobby", Content: "room", Seq: 1},
		} {
			_ = c.WriteJSON(f)
		}
	}}
	tab := newBrowser(t)
	srv := newPageServer(t, fake)
	open(t, tab, srv.URL)
	eval(t, tab, fmt.Sprintf(`window.c = track(new M.WSHubClient(%q, {token: 'alice'})), true`, wsURL(srv.URL)), nil)
	waitFor(t, tab, `count('message') >= 3`, `log`)

	acked := map[string]int{}
	eventually(t, func() bool {
		clear(acked)
		for _, f := range fake.received(wshub.CmdAck) {
			if f.ID != "" {
				acked[f.ID]++
			}
			for _, id := range f.IDs {
				acked[id]++
			}
		}
		return acked["m1"] >= 2 && acked["m2"] >= 1
	}, "m1 acked twice, m2 once")
	assert.Zero(t, acked["r1"], "room messages are not queued, so not acked")

	var ids []string
	eval(t, tab, `log.filter((e) => e.t === 'message').map((e) => e.d.id)`, &ids)
	assert.Equal(t, []string{"m1", "m2", "r1"}, ids, "the duplicate is dropped")
	fake.mu.Lock()
	q := fake.query[0]
	fake.mu.Unlock()
	assert.Contains(t, q, "ack=1")
	assert.Contains(t, q, "token=alice")
	eval(t, tab, `c.close(), true`, nil)
}

// TestClient_OutboxSurvivesReloadAndResendsOnce: messages sent while the
// hub is unreachable stay in the outbox, in localStorage, across a page
// reload; once connected they are sent, receipted and stored exactly once,
// and sending the same cid again is answered with the first receipt.
func TestClient_OutboxSurvivesReloadAndResendsOnce(t *testing.T) {
	hub := hubtest.New(t, wshub.Options{CheckOrigin: func(*http.Request) bool { return true }})
	tab := newBrowser(t)
	srv := newPageServer(t, nil)
	open(t, tab, srv.URL)

	const opts = `{token: 'alice', outbox: {storageKey: 'outbox:alice'}}`
	// Not connected: the frames wait in the outbox.
	eval(t, tab, `window.c = track(new M.WSHubClient('ws://127.0.0.1:1/ws', {...`+opts+`, connect: false})), true`, nil)
	eval(t, tab, `c.send({cmd: 10, dstid: 'bob', content: 'first', cid: 'cid-1'}), c.send({cmd: 10, dstid: 'bob', content: 'second', cid: 'cid-2'}), true`, nil)
	var size int
	eval(t, tab, `c.outboxSize`, &size)
	require.Equal(t, 2, size)
	var stored string
	eval(t, tab, `localStorage.getItem('outbox:alice')`, &stored)
	assert.Contains(t, stored, "cid-2")

	open(t, tab, srv.URL) // reload: the old client is gone
	eval(t, tab, fmt.Sprintf(`window.c = track(new M.WSHubClient(%q, %s)), c.outboxSize`, hub.URL, opts), &size)
	require.Equal(t, 2, size, "outbox restored from localStorage")
	waitFor(t, tab, `count('receipt') === 2 && c.outboxSize === 0`, `log`)
	var left any
	eval(t, tab, `localStorage.getItem('outbox:alice')`, &left)
	assert.Nil(t, left, "storage emptied once receipted")

	// The same cid again: the server's dedup answers with the first receipt.
	var first, again struct {
		ID  string `json:"id"`
		Seq uint64 `json:"seq"`
	}
	eval(t, tab, `log.filter((e) => e.t === 'receipt').map((e) => e.d.receipt).find((r) => r.cid === 'cid-1')`, &first)
	eval(t, tab, `c.send({cmd: 10, dstid: 'bob', content: 'first', cid: 'cid-1'})`, &again)
	assert.Equal(t, first, again)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	page, err := hub.Hub.Store().History(ctx, store.DirectConv("alice", "bob"), store.Query{})
	require.NoError(t, err)
	require.Len(t, page.Items, 2, "each message stored once")
	assert.Contains(t, string(page.Items[0].Body), "first")
	assert.Contains(t, string(page.Items[1].Body), "second")

	bob := hub.Dial(t, "bob")
	assert.Equal(t, "first", bob.Recv(t).Content)
	assert.Equal(t, "second", bob.Recv(t).Content)
	eval(t, tab, `c.close(), true`, nil)
}

// TestClient_RoomRejoinReplaysMissed: a client that was away rejoins its
// room with since = the last seq it saw; the hub replays exactly what it
// missed and the join reports recovered.
func TestClient_RoomRejoinReplaysMissed(t *testing.T) {
	hub := hubtest.New(t, wshub.Options{CheckOrigin: func(*http.Request) bool { return true }})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, hub.Hub.Join(ctx, "bob", "lobby"))
	say := func(text string) {
		_, err := hub.Hub.SendToRoom(ctx, "bob", "lobby", &wshub.Frame{Cmd: wshub.CmdRoom, Content: text})
		require.NoError(t, err)
	}
	say("before")

	tab := newBrowser(t)
	srv := newPageServer(t, nil)
	open(t, tab, srv.URL)
	var joined struct {
		Room      string `json:"room"`
		Seq       uint64 `json:"seq"`
		Epoch     string `json:"epoch"`
		Recovered bool   `json:"recovered"`
	}
	eval(t, tab, fmt.Sprintf(`window.c = track(new M.WSHubClient(%q, {token: 'alice'})), c.join('lobby')`, hub.URL), &joined)
	assert.Equal(t, "lobby", joined.Room)
	assert.Equal(t, uint64(1), joined.Seq)
	assert.NotEmpty(t, joined.Epoch)

	say("live")
	waitFor(t, tab, `count('message') === 1`, `log`)
	eval(t, tab, `c.close(), true`, nil)
	say("missed 1")
	say("missed 2")
	eval(t, tab, `c.connect(), true`, nil)
	waitFor(t, tab, `count('joined') === 2 && count('message') === 3`, `log`)

	eval(t, tab, `log.filter((e) => e.t === 'joined')[1].d`, &joined)
	assert.True(t, joined.Recovered, "everything missed was replayed")
	assert.Equal(t, uint64(4), joined.Seq)
	var texts []string
	eval(t, tab, `log.filter((e) => e.t === 'message').map((e) => e.d.content)`, &texts)
	assert.Equal(t, []string{"live", "missed 1", "missed 2"}, texts)
	var rooms []struct {
		Room string `json:"room"`
		Seq  uint64 `json:"seq"`
	}
	eval(t, tab, `c.rooms()`, &rooms)
	require.Len(t, rooms, 1)
	assert.Equal(t, uint64(4), rooms[0].Seq)
	eval(t, tab, `c.close(), true`, nil)
}

// TestClient_RefusedRejoinIsRetried: a rejoin the hub refuses for now
// (503: its store unavailable, say) replays nothing; the client keeps
// the room, reconnects and rejoins, and what was missed is replayed.
func TestClient_RefusedRejoinIsRetried(t *testing.T) {
	var refuse atomic.Bool
	var refused atomic.Int32
	hub := hubtest.New(t, wshub.Options{
		CheckOrigin: func(*http.Request) bool { return true },
		Middleware: []wshub.Middleware{func(next wshub.Dispatcher) wshub.Dispatcher {
			return wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
				if f.Cmd == wshub.CmdJoin && refuse.CompareAndSwap(true, false) {
					refused.Add(1)
					return wshub.ErrUnavailable
				}
				return next.Dispatch(ctx, n, f)
			})
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, hub.Hub.Join(ctx, "bob", "lobby"))
	say := func(text string) {
		_, err := hub.Hub.SendToRoom(ctx, "bob", "lobby", &wshub.Frame{Cmd: wshub.CmdRoom, Content: text})
		require.NoError(t, err)
	}

	tab := newBrowser(t)
	srv := newPageServer(t, nil)
	open(t, tab, srv.URL)
	eval(t, tab, fmt.Sprintf(`window.c = track(new M.WSHubClient(%q, {token: 'alice', backoff: {base: 50, max: 200}})), c.join('lobby').then(() => true)`, hub.URL), nil)
	eval(t, tab, `c.close(), true`, nil)
	say("missed 1")
	say("missed 2")
	refuse.Store(true)
	eval(t, tab, `c.connect(), true`, nil)
	waitFor(t, tab, `count('message') === 2`, `log`)
	assert.Equal(t, int32(1), refused.Load(), "the first rejoin was refused")
	var texts []string
	eval(t, tab, `log.filter((e) => e.t === 'message').map((e) => e.d.content)`, &texts)
	assert.Equal(t, []string{"missed 1", "missed 2"}, texts)
	var rooms []struct {
		Room string `json:"room"`
	}
	eval(t, tab, `c.rooms()`, &rooms)
	require.Len(t, rooms, 1, "the room is kept")
	eval(t, tab, `c.close(), true`, nil)
}

// setOnline tells the tab that the network is gone or back
// (navigator.onLine and the window's offline / online events).
func setOnline(t *testing.T, tab context.Context, online bool) {
	t.Helper()
	require.NoError(t, chromedp.Do(tab, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, network.OverrideNetworkState, network.OverrideNetworkStateParams{
			Offline: !online, DownloadThroughput: -1, UploadThroughput: -1,
		})
		return err
	})))
}

// TestClient_OfflinePausesOnlineResumesAtOnce: while the window is offline
// the client makes no attempts; the online event connects at once instead
// of waiting out a long backoff delay.
func TestClient_OfflinePausesOnlineResumesAtOnce(t *testing.T) {
	var refusing atomic.Bool
	refusing.Store(true)
	var attempts atomic.Int32
	fake := &fakeHub{}
	ws := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) { // not the client's status probes
			attempts.Add(1)
		}
		if refusing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fake.ServeHTTP(w, r)
	})
	tab := newBrowser(t)
	srv := newPageServer(t, ws)
	open(t, tab, srv.URL)

	// random 0.99: the next attempt would be 59 s away.
	eval(t, tab, fmt.Sprintf(`window.c = track(new M.WSHubClient(%q, {token: 'alice',
		backoff: {base: 60000, max: 60000}, random: () => 0.99})), true`, wsURL(srv.URL)), nil)
	waitFor(t, tab, `c.readyState === 'reconnecting'`, `log`)
	require.EqualValues(t, 1, attempts.Load())

	setOnline(t, tab, false)
	waitFor(t, tab, `c.readyState === 'offline'`, `log`)
	refusing.Store(false)
	time.Sleep(300 * time.Millisecond)
	assert.EqualValues(t, 1, attempts.Load(), "no attempt while offline")

	setOnline(t, tab, true)
	waitFor(t, tab, `c.readyState === 'open'`, `log`)
	assert.EqualValues(t, 2, attempts.Load())
	assert.Equal(t, 1, fake.connCount())
	eval(t, tab, `c.close(), true`, nil)
}

// TestClient_JoinWhileDisconnectedWaitsForConnection: a join asked before
// there is a connection is sent when one opens, and its answer timeout
// only counts from then.
func TestClient_JoinWhileDisconnectedWaitsForConnection(t *testing.T) {
	hub := hubtest.New(t, wshub.Options{CheckOrigin: func(*http.Request) bool { return true }})
	tab := newBrowser(t)
	srv := newPageServer(t, nil)
	open(t, tab, srv.URL)

	eval(t, tab, fmt.Sprintf(`window.c = track(new M.WSHubClient(%q, {token: 'alice', connect: false, requestTimeout: 200})),
		window.joined = c.join('lobby').then((d) => ({ok: d}), (err) => ({err: String(err)})), true`, hub.URL), nil)
	// Longer than requestTimeout without a connection.
	eval(t, tab, `new Promise((r) => setTimeout(r, 500)).then(() => true)`, nil)
	eval(t, tab, `c.connect(), true`, nil)
	var got struct {
		OK *struct {
			Room string `json:"room"`
		} `json:"ok"`
		Err string `json:"err"`
	}
	eval(t, tab, `window.joined`, &got)
	require.Empty(t, got.Err)
	require.NotNil(t, got.OK)
	assert.Equal(t, "lobby", got.OK.Room)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	members, err := hub.Hub.Store().Members(ctx, "lobby")
	require.NoError(t, err)
	assert.Equal(t, []string{"alice"}, members)
	eval(t, tab, `c.close(), true`, nil)
}
