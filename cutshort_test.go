package wshub_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/memstore"
)

// The tests of this file close a connection while the store commits a
// write of it, and check that the write's effects (delivery, the room
// index, an announcement) are not cut short with its context.

// commitThenWait is a memory store whose gated write (the Append of cid
// gated, the Join or Leave of room gated, the MarkRead of conversation
// gated), once done, waits for release or for its ctx to be done, and then
// returns ctx.Err() if it is: as boltstore does when a write's ctx ends
// while it is being committed (its effect may be committed).
type commitThenWait struct {
	*memstore.Store
	gated     string
	committed chan struct{}
	release   chan struct{}
}

func newCommitThenWait(gated string) *commitThenWait {
	return &commitThenWait{Store: memstore.New(memstore.Options{}), gated: gated,
		committed: make(chan struct{}), release: make(chan struct{})}
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

func (s *commitThenWait) Join(ctx context.Context, room, user string) error {
	if err := s.Store.Join(ctx, room, user); err != nil || room != s.gated {
		return err
	}
	return s.wait(ctx)
}

func (s *commitThenWait) Leave(ctx context.Context, room, user string) error {
	if err := s.Store.Leave(ctx, room, user); err != nil || room != s.gated {
		return err
	}
	return s.wait(ctx)
}

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

// wait says the gated write is done, then waits for release or ctx.
func (s *commitThenWait) wait(ctx context.Context) error {
	close(s.committed)
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cutShort is a test hub whose connections can be cut while a frame of
// theirs is handled.
type cutShort struct {
	srv         *hubtest.Server
	conns, gone chan *wshub.Node
}

// newCutShort starts a hub with opts, reporting its connections.
func newCutShort(t *testing.T, opts wshub.Options) *cutShort {
	c := &cutShort{conns: make(chan *wshub.Node, 16), gone: make(chan *wshub.Node, 16)}
	opts.OnConnect = func(n *wshub.Node) { c.conns <- n }
	opts.OnDisconnect = func(n *wshub.Node, _ error) { c.gone <- n }
	c.srv = hubtest.New(t, opts)
	return c
}

// dial connects user and returns the connection with its node.
func (c *cutShort) dial(t *testing.T, user string, query ...string) (*hubtest.Conn, *wshub.Node) {
	t.Helper()
	conn := c.srv.Dial(t, user, query...)
	for {
		select {
		case n := <-c.conns:
			if n.ID() == conn.Welcome.ID {
				return conn, n
			}
		case <-time.After(hubtest.Timeout):
			t.Fatalf("no OnConnect for %s", user)
		}
	}
}

// cutWhen waits for reached (a store call of conn's frame), then cuts
// conn's socket and writes to its node n until the hub ends the
// connection, as the hub ends one whose client went away.
func (c *cutShort) cutWhen(t *testing.T, reached <-chan struct{}, what string, conn *hubtest.Conn, n *wshub.Node) {
	t.Helper()
	select {
	case <-reached:
	case <-time.After(hubtest.Timeout):
		t.Fatalf("%s did not reach the store", what)
	}
	require.NoError(t, conn.WS.UnderlyingConn().Close())
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(hubtest.Timeout)
	for {
		select {
		case g := <-c.gone:
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
		name     string
		cmd      wshub.Cmd
		dst      string
		sameRoom bool
	}{{"direct", wshub.CmdSingle, "bob", false}, {"room", wshub.CmdRoom, "r", true}} {
		t.Run(tc.name, func(t *testing.T) {
			st := newCommitThenWait("c-m1")
			if tc.sameRoom {
				require.NoError(t, st.Store.Join(context.Background(), "r", "alice"))
				require.NoError(t, st.Store.Join(context.Background(), "r", "bob"))
			}
			h := newCutShort(t, wshub.Options{Store: st})
			bob, _ := h.dial(t, "bob")
			alice1, a1 := h.dial(t, "alice")
			m1 := &wshub.Frame{Cmd: tc.cmd, DstID: tc.dst, CID: "c-m1", Content: "m1"}
			alice1.Send(t, m1)
			h.cutWhen(t, st.committed, "the message", alice1, a1)
			// The client resends over its next connection: a duplicate,
			// receipted with the stored message's id.
			alice2, _ := h.dial(t, "alice")
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

// A join or a leave the store took is the hub's too, even when the
// connection asking for it closes while the store commits it: the user's
// other connections get the room's messages after a join, and no more
// after a leave. (Otherwise the hub's index of the user's rooms is wrong,
// on every connection of the user, until the user has none left.)
func TestHub_MembershipStoredWhileItsConnectionClosesCoversTheUsersOtherConnections(t *testing.T) {
	for _, tc := range []struct {
		cmd        wshub.Cmd
		wasMember  bool
		getsTheMsg bool
	}{{wshub.CmdJoin, false, true}, {wshub.CmdLeave, true, false}} {
		t.Run(map[wshub.Cmd]string{wshub.CmdJoin: "join", wshub.CmdLeave: "leave"}[tc.cmd], func(t *testing.T) {
			st := newCommitThenWait("r")
			ctx := context.Background()
			require.NoError(t, st.Store.Join(ctx, "r", "alice"))
			if tc.wasMember {
				require.NoError(t, st.Store.Join(ctx, "r", "bob"))
			}
			h := newCutShort(t, wshub.Options{Store: st})
			bob1, b1 := h.dial(t, "bob")
			bob2, _ := h.dial(t, "bob")
			alice, _ := h.dial(t, "alice")
			bob1.Send(t, &wshub.Frame{Cmd: tc.cmd, DstID: "r", CID: "m"})
			h.cutWhen(t, st.committed, "bob's membership change", bob1, b1)
			close(st.release)
			// A join or leave holds its user's lock: bob2's join of another
			// room is answered once bob1's change is over.
			bob2.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: "r2", CID: "j2"})
			bob2.Expect(t, wshub.CmdJoin)
			alice.Send(t, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "r", CID: "m", Content: "hi"})
			alice.Expect(t, wshub.CmdReceipt)
			if tc.getsTheMsg {
				assert.Equal(t, "hi", bob2.Expect(t, wshub.CmdRoom).Content)
			} else {
				bob2.ExpectNothing(t)
			}
		})
	}
}

// A read marker the store moved is announced (cmd 18) to the reader's
// other connections and the peer, even when the reading connection closes
// while the store commits it.
func TestHub_ReadMarkerStoredWhileItsConnectionClosesIsAnnounced(t *testing.T) {
	st := newCommitThenWait(store.DirectConv("alice", "bob"))
	h := newCutShort(t, wshub.Options{Store: st})
	alice1, a1 := h.dial(t, "alice")
	alice2, _ := h.dial(t, "alice")
	bob, _ := h.dial(t, "bob")
	sendDirect(t, bob, "alice", "m")
	alice1.Expect(t, wshub.CmdSingle)
	alice2.Expect(t, wshub.CmdSingle)
	alice1.Send(t, &wshub.Frame{Cmd: wshub.CmdRead, DstID: "bob", Seq: 1})
	h.cutWhen(t, st.committed, "the read marker", alice1, a1)
	close(st.release)
	want := &wshub.Frame{Cmd: wshub.CmdRead, UserID: "alice", DstID: "bob", Seq: 1}
	assert.Equal(t, want, alice2.Expect(t, wshub.CmdRead))
	assert.Equal(t, want, bob.Expect(t, wshub.CmdRead))
}

// The application's SendToUser is not cut short between the store's
// commit and the delivery either: a ctx done meanwhile does not part them.
func TestHub_SendToUserStoredWhileItsContextEndsIsDelivered(t *testing.T) {
	st := newCommitThenWait("c-m1")
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

// ackWaits is a memory store whose Ack waits for its ctx to be done,
// saying so on entered first.
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
	h := newCutShort(t, wshub.Options{Store: st, Logger: slog.New(logs)})
	alice, n := h.dial(t, "alice", "ack=1")
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdAck, IDs: []string{"x"}})
	h.cutWhen(t, st.entered, "the ack", alice, n)
	require.Eventually(t, func() bool { return logs.has("DEBUG", "closed connection", "cmd=14") },
		hubtest.Timeout, 5*time.Millisecond, "no debug record of the frame")
	assert.False(t, logs.has("dispatch failed"), "logged as a failed dispatch")
}
