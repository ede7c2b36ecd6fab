package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/client"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/store/memstore"
)

func TestClient_SendReceiptDeliverAndAck(t *testing.T) {
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = st.Close() })
	srv := hubtest.New(t, wshub.Options{Store: st})
	alice := dial(t, srv.URL, "alice", client.Options{})
	bob := dial(t, srv.URL, "bob", client.Options{Ack: true})

	assert.Equal(t, client.StateOpen, alice.State())
	assert.Equal(t, "alice", alice.Welcome().UserID)

	r := send(t, alice, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "hi"})
	assert.NotEmpty(t, r.ID)
	assert.NotEmpty(t, r.CID, "a cid was assigned")
	assert.Equal(t, uint64(1), r.Seq)
	assert.Zero(t, alice.Pending(), "the receipt settled the outbox entry")

	m := recv(t, bob)
	assert.Equal(t, wshub.CmdSingle, m.Cmd)
	assert.Equal(t, r.ID, m.ID)
	assert.Equal(t, "alice", m.UserID)
	assert.Equal(t, "hi", m.Content)

	// bob acknowledged it: it left his pending queue.
	require.Eventually(t, func() bool {
		p, err := st.Pending(context.Background(), "bob")
		return err == nil && len(p) == 0
	}, wait, 10*time.Millisecond, "bob's ack did not reach the hub")

	h, err := alice.History(context.Background(), client.HistoryRequest{User: "bob"})
	require.NoError(t, err)
	require.Len(t, h.Items, 1)
	assert.Equal(t, "hi", h.Items[0].Content)
}

func TestClient_ErrorFrameFailsSend(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice := dial(t, srv.URL, "alice", client.Options{})

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := alice.Send(ctx, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "lobby", Content: "hi"})
	require.Error(t, err)
	assert.ErrorIs(t, err, wshub.ErrNotMember)
	var se *client.ServerError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 403, se.Code)
	assert.Zero(t, alice.Pending(), "the failed frame left the outbox")

	_, err = alice.History(ctx, client.HistoryRequest{Room: "lobby"})
	assert.ErrorIs(t, err, wshub.ErrNotMember)
}

func TestClient_UnauthorizedDialIsFinal(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	var ev events
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := client.Dial(ctx, srv.URL, ev.options(client.Options{Backoff: fastBackoff})) // no token
	require.ErrorIs(t, err, wshub.ErrUnauthorized)
	assert.NoError(t, ctx.Err(), "gave up at once instead of retrying until the deadline")
	assert.Empty(t, ev.reconnecting)
}

func TestClient_ReplacedConnectionDoesNotReconnect(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{MaxConnsPerUser: 1})
	var ev events
	old, err := client.New(srv.URL, ev.options(client.Options{Token: "alice", Backoff: fastBackoff}))
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- old.Run(context.Background()) }()
	require.Eventually(t, func() bool { return old.State() == client.StateOpen }, wait, 5*time.Millisecond)

	dial(t, srv.URL, "alice", client.Options{}) // the hub closes the older one with 4000

	select {
	case err := <-runErr:
		var ce *client.CloseError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, client.CloseReplaced, ce.Code)
	case <-time.After(wait):
		t.Fatal("Run did not end after close code 4000")
	}
	assert.Equal(t, client.StateClosed, old.State())
	assert.Empty(t, ev.reconnecting)
	assert.Equal(t, []int{client.CloseReplaced}, ev.closeCodes())
	_, err = old.Post(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob"})
	assert.ErrorIs(t, err, client.ErrClosed)
	_, ok := <-old.Messages()
	assert.False(t, ok, "Messages is closed when Run ends")
}

// The hub goes down in the middle of a conversation and comes back on the
// same address with the same store. Both clients reconnect by themselves;
// every message alice sent, before, during and after the outage, reaches
// bob's application exactly once and in order.
func TestClient_ServerRestartDeliversEveryMessageExactlyOnce(t *testing.T) {
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = st.Close() })
	srv := startHub(t, "127.0.0.1:0", st)

	var aliceEv, bobEv events
	alice := dial(t, srv.url(), "alice", aliceEv.options(client.Options{Backoff: fastBackoff}))
	bob := dial(t, srv.url(), "bob", bobEv.options(client.Options{Backoff: fastBackoff, Ack: true}))

	const before, inflight, during, after = 5, 10, 30, 5
	const total = before + inflight + during + after
	got := make(map[string]int)
	var order []string
	take := func(n int) {
		t.Helper()
		for range n {
			m := recv(t, bob)
			got[m.Content]++
			order = append(order, m.Content)
		}
	}
	msg := func(i int) *wshub.Frame {
		return &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "m" + strconv.Itoa(i)}
	}

	for i := range before {
		send(t, alice, msg(i))
	}
	take(before)

	// Mid-conversation: these are written while the hub goes down; some
	// may be stored without their receipt reaching alice.
	for i := before; i < before+inflight; i++ {
		_, err := alice.Post(msg(i))
		require.NoError(t, err)
	}
	srv.stop(t)
	require.Eventually(t, func() bool {
		return alice.State() != client.StateOpen && bob.State() != client.StateOpen
	}, wait, 5*time.Millisecond, "the clients did not notice the shutdown")
	for i := before + inflight; i < before+inflight+during; i++ {
		_, err := alice.Post(msg(i))
		require.NoError(t, err)
	}
	assert.GreaterOrEqual(t, alice.Pending(), during, "kept in the outbox while disconnected")

	startHub(t, srv.addr, st)
	take(inflight + during)
	require.Eventually(t, func() bool { return alice.Pending() == 0 }, wait, 5*time.Millisecond,
		"alice's outbox was not receipted after the restart")
	for i := before + inflight + during; i < total; i++ {
		send(t, alice, msg(i))
	}
	take(after)

	// A last message proves nothing else is still on its way.
	send(t, alice, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "end"})
	assert.Equal(t, "end", recv(t, bob).Content, "a duplicate arrived")

	require.Len(t, order, total)
	for i := range total {
		assert.Equal(t, 1, got["m"+strconv.Itoa(i)], "m%d", i)
		assert.Equal(t, "m"+strconv.Itoa(i), order[i], "order")
	}
	assert.Contains(t, aliceEv.closeCodes(), 1001, "the hub closed with 1001")
	assert.GreaterOrEqual(t, aliceEv.openCount(), 2)
	assert.GreaterOrEqual(t, bobEv.openCount(), 2)
	aliceEv.mu.Lock()
	assert.NotEmpty(t, aliceEv.reconnecting)
	for _, d := range aliceEv.reconnecting {
		assert.Less(t, d, fastBackoff.Max)
	}
	aliceEv.mu.Unlock()
	assert.Eventually(t, func() bool {
		p, err := st.Pending(context.Background(), "bob")
		return err == nil && len(p) == 0
	}, wait, 5*time.Millisecond, "bob acknowledged everything")
}

// A link that silently stops passing bytes, in both directions, without
// closing: only the heartbeat can tell. The client notices, reconnects on a
// fresh connection and resends what it wrote into the void.
func TestClient_HeartbeatDetectsBlackholedLink(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	p := startProxy(t, srv.HTTP.Listener.Addr().String())
	var ev events
	alice := dial(t, "ws://"+p.addr()+"/ws", "alice", ev.options(client.Options{
		Backoff:           fastBackoff,
		HeartbeatInterval: 200 * time.Millisecond,
		HeartbeatTimeout:  500 * time.Millisecond,
	}))
	bob := dial(t, srv.URL, "bob", client.Options{Ack: true})

	send(t, alice, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "before"})
	assert.Equal(t, "before", recv(t, bob).Content)

	p.blackhole()
	for i := range 3 {
		_, err := alice.Post(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "lost" + strconv.Itoa(i)})
		require.NoError(t, err)
	}

	for i := range 3 {
		assert.Equal(t, "lost"+strconv.Itoa(i), recv(t, bob).Content)
	}
	assert.True(t, ev.hasErr(client.ErrHeartbeatTimeout), "the heartbeat reported the dead link")
	assert.Contains(t, ev.closeCodes(), 1006)
	assert.GreaterOrEqual(t, p.accepted(), 2, "reconnected through a fresh connection")
	require.Eventually(t, func() bool { return alice.Pending() == 0 }, wait, 5*time.Millisecond)
	assert.Equal(t, client.StateOpen, alice.State())

	send(t, alice, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "after"})
	assert.Equal(t, "after", recv(t, bob).Content, "no duplicate before it")
}

// After a reconnect the client rejoins its rooms with since and epoch: the
// room messages it missed are replayed once, and the rejoin reports
// recovered.
func TestClient_RejoinReplaysMissedRoomMessages(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	p := startProxy(t, srv.HTTP.Listener.Addr().String())
	var ev events
	alice := dial(t, "ws://"+p.addr()+"/ws", "alice", ev.options(client.Options{
		Backoff:           fastBackoff,
		HeartbeatInterval: 200 * time.Millisecond,
		HeartbeatTimeout:  500 * time.Millisecond,
	}))
	bob := dial(t, srv.URL, "bob", client.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	jr, err := alice.Join(ctx, "lobby")
	require.NoError(t, err)
	assert.Equal(t, wshub.CmdJoin, jr.Cmd)
	assert.NotEmpty(t, jr.Epoch)
	_, err = bob.Join(ctx, "lobby")
	require.NoError(t, err)

	send(t, bob, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "lobby", Content: "r1"})
	assert.Equal(t, "r1", recv(t, alice).Content)
	require.Eventually(t, func() bool { return alice.Rooms()["lobby"].Seq == 1 }, wait, 5*time.Millisecond)

	p.blackhole() // alice misses the next ones: the hub writes them into the void
	send(t, bob, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "lobby", Content: "r2"})
	send(t, bob, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "lobby", Content: "r3"})

	assert.Equal(t, "r2", recv(t, alice).Content)
	assert.Equal(t, "r3", recv(t, alice).Content)
	require.Eventually(t, func() bool { return len(ev.rejoinsOf("lobby")) > 0 }, wait, 5*time.Millisecond)
	assert.Equal(t, []bool{true}, ev.rejoinsOf("lobby"))
	assert.Equal(t, uint64(3), alice.Rooms()["lobby"].Seq)

	send(t, bob, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "lobby", Content: "r4"})
	assert.Equal(t, "r4", recv(t, alice).Content, "no duplicate before it")

	require.NoError(t, alice.Leave("lobby"))
	assert.NotContains(t, alice.Rooms(), "lobby")
	require.Eventually(t, func() bool {
		_, err := alice.Send(ctx, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "lobby"})
		return err != nil
	}, wait, 10*time.Millisecond, "still a member after Leave")
}

// With batch=1 the hub may pack several frames into one message; the
// client splits them and delivers every one.
func TestClient_BatchDeliversEveryFrame(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	bob := dial(t, srv.URL, "bob", client.Options{Batch: true, Ack: true, InboxSize: 1})

	const n = 300
	receipts := make(chan *wshub.Frame, n)
	alice := dial(t, srv.URL, "alice", client.Options{OnReceipt: func(r *wshub.Frame) { receipts <- r }})
	for i := range n {
		_, err := alice.Post(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: strconv.Itoa(i)})
		require.NoError(t, err)
	}
	for i := range n {
		m := recv(t, bob)
		require.Equal(t, strconv.Itoa(i), m.Content)
	}
	for range n {
		select {
		case <-receipts:
		case <-time.After(wait):
			t.Fatal("missing receipts")
		}
	}
}

// An application that does not read Messages holds the reader up
// (backpressure) without the heartbeat taking that for a dead link, and
// loses nothing.
func TestClient_SlowReaderLosesNothing(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice := dial(t, srv.URL, "alice", client.Options{})
	var ev events
	bob := dial(t, srv.URL, "bob", ev.options(client.Options{
		Ack: true, InboxSize: 2,
		HeartbeatInterval: 50 * time.Millisecond, HeartbeatTimeout: 250 * time.Millisecond,
	}))
	const n = 20
	for i := range n {
		send(t, alice, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: strconv.Itoa(i)})
	}
	time.Sleep(time.Second) // several heartbeat timeouts while bob's channel is full
	for i := range n {
		assert.Equal(t, strconv.Itoa(i), recv(t, bob).Content)
	}
	assert.False(t, ev.hasErr(client.ErrHeartbeatTimeout), "a full inbox is not a dead link")
	assert.Equal(t, 1, ev.openCount())
}

func TestClient_OnMessageCallback(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	got := make(chan *wshub.Frame, 1)
	bob := dial(t, srv.URL, "bob", client.Options{OnMessage: func(f *wshub.Frame) { got <- f }})
	assert.Nil(t, bob.Messages())
	alice := dial(t, srv.URL, "alice", client.Options{})
	send(t, alice, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "cb"})
	select {
	case f := <-got:
		assert.Equal(t, "cb", f.Content)
	case <-time.After(wait):
		t.Fatal("callback not called")
	}
}

func TestClient_OutboxWithoutConnection(t *testing.T) {
	c, err := client.New("ws://127.0.0.1:1/ws", client.Options{OutboxSize: 2})
	require.NoError(t, err)
	assert.Equal(t, client.StateIdle, c.State())

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Send(ctx, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Zero(t, c.Pending(), "a Send whose ctx ended leaves the outbox")

	cid, err := c.Post(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "mine"})
	require.NoError(t, err)
	assert.Equal(t, "mine", cid)
	_, err = c.Post(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "mine"})
	assert.Error(t, err, "a cid already in the outbox")
	_, err = c.Post(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob"})
	require.NoError(t, err)
	_, err = c.Post(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob"})
	assert.ErrorIs(t, err, client.ErrOutboxFull)

	waiting := make(chan error, 1)
	go func() {
		_, err := c.Send(context.Background(), &wshub.Frame{Cmd: wshub.CmdJoin, DstID: "x"})
		waiting <- err
	}()
	require.NoError(t, c.Close())
	assert.Equal(t, client.StateClosed, c.State())
	select {
	case err := <-waiting:
		// Either refused as full (the outbox holds 2) or failed by Close.
		assert.True(t, err == client.ErrOutboxFull || err == client.ErrClosed, "got %v", err)
	case <-time.After(wait):
		t.Fatal("Send still waiting after Close")
	}
	_, err = c.Post(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob"})
	assert.ErrorIs(t, err, client.ErrClosed)
	assert.ErrorIs(t, c.Run(context.Background()), client.ErrRunning)
}

func TestClient_CloseFailsWaitingCalls(t *testing.T) {
	c, err := client.New("ws://127.0.0.1:1/ws", client.Options{Backoff: fastBackoff})
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()
	waiting := make(chan error, 1)
	go func() {
		_, err := c.Send(context.Background(), &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob"})
		waiting <- err
	}()
	require.Eventually(t, func() bool { return c.Pending() == 1 }, wait, time.Millisecond)
	require.NoError(t, c.Close())
	assert.ErrorIs(t, <-waiting, client.ErrClosed)
	assert.NoError(t, <-runErr, "Run returns nil after Close")
}

func TestClient_RunEndsWithContext(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	var ev events
	c, err := client.New(srv.URL, ev.options(client.Options{Token: "alice"}))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(ctx) }()
	require.Eventually(t, func() bool { return c.State() == client.StateOpen }, wait, 5*time.Millisecond)
	cancel()
	select {
	case err := <-runErr:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(wait):
		t.Fatal("Run did not end")
	}
	assert.Equal(t, []int{1000}, ev.closeCodes())
	assert.Equal(t, client.StateClosed, c.State())
}

func TestClient_MaxAttempts(t *testing.T) {
	var ev events
	c, err := client.New("ws://127.0.0.1:1/ws", ev.options(client.Options{Backoff: fastBackoff, MaxAttempts: 3}))
	require.NoError(t, err)
	err = c.Run(context.Background())
	require.ErrorIs(t, err, client.ErrGaveUp)
	assert.Len(t, ev.reconnecting, 3)
	assert.Len(t, ev.errs, 4, "the first dial and three retries failed")
}

func TestState_String(t *testing.T) {
	for s, want := range map[client.State]string{
		client.StateIdle: "idle", client.StateConnecting: "connecting", client.StateOpen: "open",
		client.StateReconnecting: "reconnecting", client.StateClosed: "closed", client.State(9): "State(9)",
	} {
		assert.Equal(t, want, s.String())
	}
}

func TestServerError_Is(t *testing.T) {
	tests := []struct {
		code   int
		reason string
		target *wshub.Error
		want   bool
	}{
		{403, "not a member of the room", wshub.ErrNotMember, true},
		{400, "bad request: ack needs id or ids", wshub.ErrBadRequest, true},
		{400, "bad request (400): x", wshub.ErrMissingDst, false},
		{403, "forbidden", wshub.ErrNotMember, false},
		{500, "internal error", wshub.ErrInternal, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code, tt.reason), func(t *testing.T) {
			err := fmt.Errorf("wrapped: %w", &client.ServerError{Code: tt.code, Reason: tt.reason})
			assert.Equal(t, tt.want, errors.Is(err, tt.target))
		})
	}
}

// Close does not wait out the welcome timeout of a server that accepted the
// WebSocket but says nothing. (A fake server: a real hub always welcomes.)
func TestClient_CloseWhileWaitingForWelcome(t *testing.T) {
	accepted := make(chan struct{}, 1)
	up := websocket.Upgrader{}
	mute := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		accepted <- struct{}{}
		_, _, _ = ws.ReadMessage() // until the client goes
	}))
	t.Cleanup(mute.Close)

	c, err := client.New(mute.URL, client.Options{HeartbeatTimeout: time.Minute})
	require.NoError(t, err)
	go func() { _ = c.Run(context.Background()) }()
	select {
	case <-accepted:
	case <-time.After(wait):
		t.Fatal("no connection")
	}
	assert.Equal(t, client.StateConnecting, c.State())
	closed := make(chan struct{})
	go func() { _ = c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(wait):
		t.Fatal("Close waited for the welcome timeout")
	}
}

// A rejoin the hub refuses for now (503: its store unavailable, say) is
// not left refused: the client reconnects, after its backoff, and
// rejoins, so the room's messages still arrive. One refused for good
// (403) leaves the room.
func TestClient_RefusedRejoinIsRetriedOnANewConnection(t *testing.T) {
	var refuse atomic.Int32 // the next rejoins to refuse, with code
	var refused atomic.Int32
	srv := hubtest.New(t, wshub.Options{Middleware: []wshub.Middleware{func(next wshub.Dispatcher) wshub.Dispatcher {
		return wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
			if f.Cmd == wshub.CmdJoin && n.UserID() == "alice" {
				if code := refuse.Swap(0); code != 0 {
					refused.Add(1)
					if code == 403 {
						return wshub.ErrForbidden
					}
					return wshub.ErrUnavailable
				}
			}
			return next.Dispatch(ctx, n, f)
		})
	}}})
	p := startProxy(t, srv.HTTP.Listener.Addr().String())
	var ev events
	alice := dial(t, "ws://"+p.addr()+"/ws", "alice", ev.options(client.Options{
		Backoff:           fastBackoff,
		HeartbeatInterval: 500 * time.Millisecond, // the refusals must reach a connection alive
		HeartbeatTimeout:  2 * time.Second,
	}))
	bob := dial(t, srv.URL, "bob", client.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, room := range []string{"lobby", "attic"} {
		_, err := alice.Join(ctx, room)
		require.NoError(t, err)
		_, err = bob.Join(ctx, room)
		require.NoError(t, err)
	}

	refuse.Store(503)
	p.blackhole() // alice misses these, then reconnects; her first rejoin is refused
	send(t, bob, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "lobby", Content: "missed"})
	send(t, bob, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "attic", Content: "missed too"})
	require.Eventually(t, func() bool { return refused.Load() == 1 }, wait, 5*time.Millisecond)
	// A connection's live room messages come whatever its rejoins say:
	// only a rejoin replays what was missed.
	got := []string{recv(t, alice).Content, recv(t, alice).Content}
	assert.ElementsMatch(t, []string{"missed", "missed too"}, got, "replayed after the refused rejoin")
	assert.Len(t, alice.Rooms(), 2, "no room left after a 503")

	refuse.Store(403)
	p.blackhole()
	require.Eventually(t, func() bool { return refused.Load() == 2 }, wait, 5*time.Millisecond)
	require.Eventually(t, func() bool { return len(alice.Rooms()) == 1 }, wait, 5*time.Millisecond, "the room refused with 403 is left")
	var kept string
	for room := range alice.Rooms() {
		kept = room
	}
	send(t, bob, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: kept, Content: "still here"})
	assert.Equal(t, "still here", recv(t, alice).Content)
}

// A new connection gets its rooms' live messages at once, before its
// rejoin's replay of what was missed; if it ends before the rejoin's
// answer, the next rejoin must still ask for the missed messages, not
// from the newest live one (the chaos test lost room messages that way).
func TestClient_LiveMessageBeforeTheRejoinAnswerDoesNotSkipTheGap(t *testing.T) {
	var hold atomic.Bool
	held := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := hubtest.New(t, wshub.Options{Middleware: []wshub.Middleware{func(next wshub.Dispatcher) wshub.Dispatcher {
		return wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
			if f.Cmd == wshub.CmdJoin && n.UserID() == "alice" && hold.Swap(false) {
				held <- struct{}{}
				<-release // answered on a connection gone by then
			}
			return next.Dispatch(ctx, n, f)
		})
	}}})
	p := startProxy(t, srv.HTTP.Listener.Addr().String())
	alice := dial(t, "ws://"+p.addr()+"/ws", "alice", client.Options{
		Backoff:           fastBackoff,
		HeartbeatInterval: 200 * time.Millisecond,
		HeartbeatTimeout:  time.Second,
	})
	bob := dial(t, srv.URL, "bob", client.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := alice.Join(ctx, "lobby")
	require.NoError(t, err)
	_, err = bob.Join(ctx, "lobby")
	require.NoError(t, err)
	send(t, bob, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "lobby", Content: "seen"})
	require.Equal(t, "seen", recv(t, alice).Content)

	hold.Store(true)
	p.blackhole() // alice misses this one, then reconnects; her rejoin is held
	send(t, bob, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "lobby", Content: "missed"})
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("alice did not rejoin")
	}
	// On the new connection, before the rejoin's answer: a live one.
	send(t, bob, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "lobby", Content: "live"})
	require.Equal(t, "live", recv(t, alice).Content)
	p.cut() // before the rejoin's answer
	close(release)
	assert.Equal(t, "missed", recv(t, alice).Content, "replayed by the next rejoin")
	// The resume point moves once the message was handed over: after recv.
	require.Eventually(t, func() bool { return alice.Rooms()["lobby"].Seq == 3 }, wait, 5*time.Millisecond,
		"the resume point did not reach 3")
}

// A room's resume point counts the client's own messages, which the hub
// receipts instead of delivering to it: it stays contiguous.
func TestClient_RoomSeqCountsOwnReceiptedMessages(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice := dial(t, srv.URL, "alice", client.Options{})
	bob := dial(t, srv.URL, "bob", client.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, c := range []*client.Client{alice, bob} {
		_, err := c.Join(ctx, "lobby")
		require.NoError(t, err)
	}
	send(t, alice, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "lobby", Content: "mine"})
	send(t, bob, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "lobby", Content: "yours"})
	require.Equal(t, "yours", recv(t, alice).Content)
	// The resume point moves once the message was handed over: after recv.
	require.Eventually(t, func() bool { return alice.Rooms()["lobby"].Seq == 2 }, wait, 5*time.Millisecond,
		"the resume point did not reach 2")
}
