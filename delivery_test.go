package wshub_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/memstore"
)

// slowWait bounds the waits of the slow-consumer tests: generous, since
// they only prove that nothing stalls.
const slowWait = 30 * time.Second

// sendDirect sends a direct message over c and returns its receipt.
func sendDirect(t *testing.T, c *hubtest.Conn, to, content string) *wshub.Frame {
	t.Helper()
	cid := "c-" + content
	c.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: to, CID: cid, Content: content})
	r := c.Expect(t, wshub.CmdReceipt)
	require.Equal(t, cid, r.CID)
	return r
}

// expectMessages requires the frames queued for c to be the direct
// messages with these ids, in this order, and nothing else: it sends a ping
// and collects what comes before the pong. A new connection's pending
// queue is queued before its first frame is read.
func expectMessages(t *testing.T, c *hubtest.Conn, what string, ids ...string) {
	t.Helper()
	c.Send(t, &wshub.Frame{Cmd: wshub.CmdPing, CID: "probe"})
	got := []string{}
	for {
		f := c.Recv(t)
		if f.Cmd == wshub.CmdPong && f.CID == "probe" {
			break
		}
		require.Equal(t, wshub.CmdSingle, f.Cmd, "%s: unexpected frame %+v", what, f)
		got = append(got, f.ID)
	}
	require.Equal(t, append([]string{}, ids...), got, "%s", what)
}

// An ack (cmd 14) removes the acknowledged messages from the user's
// pending queue and nothing else: not the user's other messages, not
// another user's queue (even when that user's message id is acked).
func TestHub_AckRemovesOnlyTheAckedMessages(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice, carol := srv.Dial(t, "alice"), srv.Dial(t, "carol")
	a1 := sendDirect(t, alice, "bob", "a1").ID
	a2 := sendDirect(t, alice, "bob", "a2").ID
	c1 := sendDirect(t, carol, "bob", "c1").ID
	a3 := sendDirect(t, alice, "bob", "a3").ID
	d1 := sendDirect(t, alice, "dave", "d1").ID

	bob := srv.Dial(t, "bob", "ack=1")
	expectMessages(t, bob, "bob's queue", a1, a2, c1, a3)
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdAck, ID: a2})
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdAck, ID: d1}) // dave's, not bob's
	bob.ExpectNothing(t)                                 // the acks were handled
	bob.WS.Close()

	bob = srv.Dial(t, "bob", "ack=1")
	expectMessages(t, bob, "bob's queue after acking a2 (by id)", a1, c1, a3)
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdAck, IDs: []string{c1}})
	bob.ExpectNothing(t)
	bob.WS.Close()

	bob = srv.Dial(t, "bob", "ack=1")
	expectMessages(t, bob, "bob's queue after acking c1 (by ids)", a1, a3)
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdAck, IDs: []string{a3, a1}})
	bob.ExpectNothing(t)
	bob.WS.Close()

	bob = srv.Dial(t, "bob", "ack=1")
	expectMessages(t, bob, "bob's queue after acking the rest")

	dave := srv.Dial(t, "dave", "ack=1")
	expectMessages(t, dave, "dave's queue, one of whose ids bob acked", d1)
}

// drainUntilClose reads c until the hub closes it and returns the frames
// read and the close code; it fails the test on another error or when no
// close comes within slowWait.
func drainUntilClose(t *testing.T, c *hubtest.Conn) ([]*wshub.Frame, int) {
	t.Helper()
	var frames []*wshub.Frame
	deadline := time.Now().Add(slowWait)
	for {
		f, err := c.Next(time.Until(deadline))
		if err == nil {
			frames = append(frames, f)
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return frames, ce.Code
		}
		t.Fatalf("no close frame after %d frames: %v", len(frames), err)
	}
}

// A recipient that does not read while direct messages for it arrive over
// another WebSocket: once its send queue is full the hub closes it with
// 1013 and drops nothing silently. What it got before the close frame is
// a gapless prefix of what was sent, and the rest comes on its next
// connection, in order.
//
// Sends stop when the hub reports the overflow (its log), so the test does
// not depend on how much the socket buffers of this machine hold.
func TestHub_RecipientNotReadingIsClosedWith1013NotSkipped(t *testing.T) {
	logs := &logRecorder{}
	srv := hubtest.New(t, wshub.Options{SendQueue: 4, Logger: slog.New(logs)})
	bob := srv.Dial(t, "bob", "ack=1") // reads the welcome, then nothing until the overflow
	alice := srv.Dial(t, "alice")
	payload := strings.Repeat("p", 32<<10)

	var ids []string
	start := time.Now()
	for i := 0; !logs.has("send queue full", "bob"); i++ {
		require.Less(t, time.Since(start), slowWait, "bob's connection was never closed for its full send queue")
		alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Memo: fmt.Sprint(i), Content: payload})
		r := alice.Expect(t, wshub.CmdReceipt) // the sender is never held up
		ids = append(ids, r.ID)
	}
	t.Logf("bob's queue overflowed after %d messages in %v", len(ids), time.Since(start))

	frames, code := drainUntilClose(t, bob)
	assert.Equal(t, wshub.CloseTryAgainLater, code, "close code")
	require.Less(t, len(frames), len(ids), "bob got every message, yet was closed")
	for i, f := range frames {
		require.Equal(t, wshub.CmdSingle, f.Cmd)
		require.Equal(t, fmt.Sprint(i), f.Memo, "frame %d: a message was skipped", i)
		require.Equal(t, ids[i], f.ID)
	}

	bob = srv.Dial(t, "bob", "ack=1")
	for i, id := range ids {
		m := bob.Expect(t, wshub.CmdSingle)
		require.Equal(t, id, m.ID, "message %d after the reconnect", i)
	}
	bob.ExpectNothing(t)
}

// An application that sends to a connection faster than the client
// reads, through Node.Send: once the queue is full Send fails and the
// connection is closed with 1013. The client gets a gapless prefix of what
// Send accepted, then the close frame.
func TestNode_SendToFullQueueClosesWith1013(t *testing.T) {
	type result struct {
		accepted int
		err      error
	}
	done := make(chan result, 1)
	payload := strings.Repeat("q", 16<<10)
	srv := hubtest.New(t, wshub.Options{
		SendQueue: 4,
		Logger:    slog.New(slog.DiscardHandler),
		Dispatcher: wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
			start := time.Now()
			for i := 0; ; i++ {
				if err := n.Send(&wshub.Frame{Cmd: 101, Memo: fmt.Sprint(i), Content: payload}); err != nil {
					done <- result{i, err}
					return nil
				}
				if time.Since(start) > slowWait {
					done <- result{i, nil}
					return nil
				}
			}
		}),
	})
	c := srv.Dial(t, "alice") // reads nothing until the dispatcher is done
	c.Send(t, &wshub.Frame{Cmd: 100})
	var res result
	select {
	case res = <-done:
	case <-time.After(2 * slowWait):
		t.Fatal("the dispatcher never returned")
	}
	require.ErrorIs(t, res.err, wshub.ErrClosed, "Send went on accepting frames for %v after %d, with nobody reading", slowWait, res.accepted)

	frames, code := drainUntilClose(t, c)
	assert.Equal(t, wshub.CloseTryAgainLater, code, "close code")
	require.LessOrEqual(t, len(frames), res.accepted)
	for i, f := range frames {
		require.Equal(t, wshub.Cmd(101), f.Cmd)
		require.Equal(t, fmt.Sprint(i), f.Memo, "frame %d: a frame was skipped", i)
	}
}

// commitThenWait is a memory store whose Append of the cid gated, once
// it has stored the message, waits for release or for its ctx to be done,
// and then returns ctx.Err() if it is: as boltstore does when a write's
// ctx ends while it is being committed (its effect may be committed).
type commitThenWait struct {
	*memstore.Store
	gated     string
	committed chan struct{}
	release   chan struct{}
}

func (s *commitThenWait) Append(ctx context.Context, req store.AppendRequest) (store.Message, bool, error) {
	m, dup, err := s.Store.Append(ctx, req)
	if err != nil || dup || req.CID != s.gated {
		return m, dup, err
	}
	if err := s.wait(ctx); err != nil {
		return store.Message{}, false, err
	}
	return m, false, nil
}

// Join gates the join of room s.gated the same way.
func (s *commitThenWait) Join(ctx context.Context, room, user string) error {
	if err := s.Store.Join(ctx, room, user); err != nil || room != s.gated {
		return err
	}
	return s.wait(ctx)
}

// Leave gates the leave of room s.gated the same way.
func (s *commitThenWait) Leave(ctx context.Context, room, user string) error {
	if err := s.Store.Leave(ctx, room, user); err != nil || room != s.gated {
		return err
	}
	return s.wait(ctx)
}

// MarkRead gates a move of the read marker of conversation s.gated.
func (s *commitThenWait) MarkRead(ctx context.Context, user, conv string, seq uint64) (uint64, bool, error) {
	marker, moved, err := s.Store.MarkRead(ctx, user, conv, seq)
	if err != nil || !moved || conv != s.gated {
		return marker, moved, err
	}
	if err := s.wait(ctx); err != nil {
		return 0, false, err
	}
	return marker, moved, nil
}

// wait says the gated write is committed, then waits for release or ctx.
func (s *commitThenWait) wait(ctx context.Context) error {
	close(s.committed)
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// endByCut cuts c's socket and writes to its node n until the hub ends
// the connection (OnDisconnect reports n on gone), as the hub ends a
// connection whose client went away while a frame of it was handled.
func endByCut(t *testing.T, c *hubtest.Conn, n *wshub.Node, gone <-chan *wshub.Node) {
	t.Helper()
	require.NoError(t, c.WS.UnderlyingConn().Close())
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(hubtest.Timeout)
	for {
		select {
		case g := <-gone:
			if g == n {
				return
			}
		case <-tick.C:
			n.Send(&wshub.Frame{Cmd: wshub.CmdPong})
		case <-deadline:
			t.Fatal("the hub did not end the cut connection")
		}
	}
}

// A message the store took is delivered even when its sending connection
// closes while the store commits it: the sender's context does not cut
// the append short between the commit and the delivery. Otherwise the
// message waits in the recipient's pending queue until its next
// connection (a room's members miss it live), and the client's resend of
// its cid, a duplicate, delivers nothing.
func TestHub_MessageStoredWhileItsSenderClosesIsDelivered(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  wshub.Cmd
	}{{"direct", wshub.CmdSingle}, {"room", wshub.CmdRoom}} {
		t.Run(tc.name, func(t *testing.T) {
			st := &commitThenWait{Store: memstore.New(memstore.Options{}), gated: "c-m1",
				committed: make(chan struct{}), release: make(chan struct{})}
			conns := make(chan *wshub.Node, 4)
			gone := make(chan *wshub.Node, 4)
			srv := hubtest.New(t, wshub.Options{Store: st,
				OnConnect:    func(n *wshub.Node) { conns <- n },
				OnDisconnect: func(n *wshub.Node, _ error) { gone <- n },
			})
			bob := srv.Dial(t, "bob")
			<-conns
			dst := "bob"
			if tc.cmd == wshub.CmdRoom {
				dst = "r"
				for _, c := range []*hubtest.Conn{bob, srv.Dial(t, "alice")} {
					c.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: "r", CID: "j"})
					c.Expect(t, wshub.CmdJoin)
				}
			}
			alice1 := srv.Dial(t, "alice")
			var a1 *wshub.Node
			for a1 == nil {
				if n := <-conns; n.UserID() == "alice" && n.ID() == alice1.Welcome.ID {
					a1 = n
				}
			}
			m1 := &wshub.Frame{Cmd: tc.cmd, DstID: dst, CID: "c-m1", Content: "m1"}
			alice1.Send(t, m1)
			select {
			case <-st.committed:
			case <-time.After(hubtest.Timeout):
				t.Fatal("the message was not stored")
			}
			endByCut(t, alice1, a1, gone)
			// The client resends over its next connection: a duplicate,
			// receipted with the stored message's id.
			alice2 := srv.Dial(t, "alice")
			alice2.Send(t, m1)
			close(st.release) // the first append, if still waiting, ends
			// alice2, a connection of the sender, gets its own copy too.
			var r *wshub.Frame
			for r == nil {
				if f := alice2.Recv(t); f.Cmd == wshub.CmdReceipt {
					r = f
				} else {
					require.Equal(t, tc.cmd, f.Cmd, "%+v", f)
				}
			}
			got := bob.Expect(t, tc.cmd)
			assert.Equal(t, r.ID, got.ID)
			assert.Equal(t, "m1", got.Content)
		})
	}
}

// A join the store took is the hub's too, even when the joining
// connection closes while the store commits it: the user's other
// connections get the room's messages. (Otherwise the hub's index of the
// user's rooms misses it, on every connection of the user, until the user
// has none left.)
func TestHub_JoinStoredWhileItsConnectionClosesCoversTheUsersOtherConnections(t *testing.T) {
	st := &commitThenWait{Store: memstore.New(memstore.Options{}), gated: "r",
		committed: make(chan struct{}), release: make(chan struct{})}
	require.NoError(t, st.Store.Join(context.Background(), "r", "alice"))
	conns := make(chan *wshub.Node, 4)
	gone := make(chan *wshub.Node, 4)
	srv := hubtest.New(t, wshub.Options{Store: st,
		OnConnect:    func(n *wshub.Node) { conns <- n },
		OnDisconnect: func(n *wshub.Node, _ error) { gone <- n },
	})
	bob1 := srv.Dial(t, "bob")
	b1 := <-conns
	bob2 := srv.Dial(t, "bob")
	<-conns
	alice := srv.Dial(t, "alice")
	<-conns
	bob1.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: "r", CID: "j"})
	select {
	case <-st.committed:
	case <-time.After(hubtest.Timeout):
		t.Fatal("bob's join was not stored")
	}
	endByCut(t, bob1, b1, gone)
	close(st.release)
	// A join holds its user's lock: bob2's join of another room is
	// answered once bob1's is over.
	bob2.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: "r2", CID: "j2"})
	bob2.Expect(t, wshub.CmdJoin)
	sendRoom := &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "r", CID: "m", Content: "hi"}
	alice.Send(t, sendRoom)
	alice.Expect(t, wshub.CmdReceipt)
	got := bob2.Expect(t, wshub.CmdRoom)
	assert.Equal(t, "hi", got.Content)
}

// A leave the store took is the hub's too, even when the leaving
// connection closes while the store commits it: the user's other
// connections stop getting the room's messages.
func TestHub_LeaveStoredWhileItsConnectionClosesCoversTheUsersOtherConnections(t *testing.T) {
	st := &commitThenWait{Store: memstore.New(memstore.Options{}), gated: "r",
		committed: make(chan struct{}), release: make(chan struct{})}
	ctx := context.Background()
	require.NoError(t, st.Store.Join(ctx, "r", "bob"))
	require.NoError(t, st.Store.Join(ctx, "r", "alice"))
	conns := make(chan *wshub.Node, 4)
	gone := make(chan *wshub.Node, 4)
	srv := hubtest.New(t, wshub.Options{Store: st,
		OnConnect:    func(n *wshub.Node) { conns <- n },
		OnDisconnect: func(n *wshub.Node, _ error) { gone <- n },
	})
	bob1 := srv.Dial(t, "bob")
	b1 := <-conns
	bob2 := srv.Dial(t, "bob")
	<-conns
	alice := srv.Dial(t, "alice")
	<-conns
	bob1.Send(t, &wshub.Frame{Cmd: wshub.CmdLeave, DstID: "r", CID: "l"})
	select {
	case <-st.committed:
	case <-time.After(hubtest.Timeout):
		t.Fatal("bob's leave was not stored")
	}
	endByCut(t, bob1, b1, gone)
	close(st.release)
	// A leave holds its user's lock: bob2's join of another room is
	// answered once bob1's leave is over.
	bob2.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: "r2", CID: "j2"})
	bob2.Expect(t, wshub.CmdJoin)
	sendRoom := &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "r", CID: "m", Content: "hi"}
	alice.Send(t, sendRoom)
	alice.Expect(t, wshub.CmdReceipt)
	bob2.ExpectNothing(t)
}

// A read marker the store moved is announced (cmd 18) to the reader's
// other connections and the peer, even when the reading connection closes
// while the store commits it.
func TestHub_ReadMarkerStoredWhileItsConnectionClosesIsAnnounced(t *testing.T) {
	st := &commitThenWait{Store: memstore.New(memstore.Options{}), gated: store.DirectConv("alice", "bob"),
		committed: make(chan struct{}), release: make(chan struct{})}
	conns := make(chan *wshub.Node, 4)
	gone := make(chan *wshub.Node, 4)
	srv := hubtest.New(t, wshub.Options{Store: st,
		OnConnect:    func(n *wshub.Node) { conns <- n },
		OnDisconnect: func(n *wshub.Node, _ error) { gone <- n },
	})
	alice1 := srv.Dial(t, "alice")
	a1 := <-conns
	alice2 := srv.Dial(t, "alice")
	<-conns
	bob := srv.Dial(t, "bob")
	<-conns
	sendDirect(t, bob, "alice", "m")
	alice1.Expect(t, wshub.CmdSingle)
	alice2.Expect(t, wshub.CmdSingle)
	alice1.Send(t, &wshub.Frame{Cmd: wshub.CmdRead, DstID: "bob", Seq: 1})
	select {
	case <-st.committed:
	case <-time.After(hubtest.Timeout):
		t.Fatal("the read marker was not stored")
	}
	endByCut(t, alice1, a1, gone)
	close(st.release)
	want := &wshub.Frame{Cmd: wshub.CmdRead, UserID: "alice", DstID: "bob", Seq: 1}
	assert.Equal(t, want, alice2.Expect(t, wshub.CmdRead))
	assert.Equal(t, want, bob.Expect(t, wshub.CmdRead))
}

// The application's SendToUser is not cut short between the store's
// commit and the delivery either: a ctx done meanwhile does not part them.
func TestHub_SendToUserStoredWhileItsContextEndsIsDelivered(t *testing.T) {
	st := &commitThenWait{Store: memstore.New(memstore.Options{}), gated: "c-m1",
		committed: make(chan struct{}), release: make(chan struct{})}
	srv := hubtest.New(t, wshub.Options{Store: st})
	bob := srv.Dial(t, "bob")
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		r   *wshub.Frame
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := srv.Hub.SendToUser(ctx, "system", "bob", &wshub.Frame{CID: "c-m1", Content: "m1"})
		done <- result{r, err}
	}()
	select {
	case <-st.committed:
	case <-time.After(hubtest.Timeout):
		t.Fatal("the message was not stored")
	}
	cancel()
	select {
	case res := <-done:
		t.Fatalf("SendToUser returned before the store answered: %+v", res)
	case <-time.After(50 * time.Millisecond):
	}
	close(st.release)
	res := <-done
	require.NoError(t, res.err)
	got := bob.Expect(t, wshub.CmdSingle)
	assert.Equal(t, res.r.ID, got.ID)

	// A ctx done before the store is called fails the call, storing nothing.
	_, err := srv.Hub.SendToUser(ctx, "system", "bob", &wshub.Frame{CID: "c-m2", Content: "m2"})
	require.ErrorIs(t, err, context.Canceled)
	bob.ExpectNothing(t)
}

// ackWaits is a memory store whose Ack, once armed, waits for its ctx to
// be done, saying so on entered first.
type ackWaits struct {
	*memstore.Store
	entered chan struct{}
}

func (s *ackWaits) Ack(ctx context.Context, user string, ids ...string) error {
	close(s.entered)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(hubtest.Timeout):
		return errors.New("ackWaits: ctx never done")
	}
}

// A frame whose store call is cut short because its connection closed is
// not an error of the hub's: it is logged at debug level, not as a failed
// dispatch at error level (a client going away is routine).
func TestHub_FrameOfAClosedConnectionIsNotLoggedAsAnError(t *testing.T) {
	logs := &logRecorder{}
	st := &ackWaits{Store: memstore.New(memstore.Options{}), entered: make(chan struct{})}
	conns := make(chan *wshub.Node, 1)
	gone := make(chan *wshub.Node, 1)
	srv := hubtest.New(t, wshub.Options{Store: st, Logger: slog.New(logs),
		OnConnect:    func(n *wshub.Node) { conns <- n },
		OnDisconnect: func(n *wshub.Node, _ error) { gone <- n },
	})
	alice := srv.Dial(t, "alice", "ack=1")
	n := <-conns
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdAck, IDs: []string{"x"}})
	select {
	case <-st.entered:
	case <-time.After(hubtest.Timeout):
		t.Fatal("the ack did not reach the store")
	}
	endByCut(t, alice, n, gone)
	require.Eventually(t, func() bool { return logs.has("DEBUG", "closed connection", "cmd=14") },
		hubtest.Timeout, 5*time.Millisecond, "no debug record of the frame")
	assert.False(t, logs.has("dispatch failed"), "logged as a failed dispatch")
}
