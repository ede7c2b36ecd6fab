package redisstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/store/redisstore"
)

// These tests run several hubs, each with its own Store (its own Redis
// connections) on one Redis and one prefix: hub processes acting as one
// hub.

// startHubs starts n hubs sharing a fresh prefix and waits until each
// one's feed is subscribed (a hub answers 503 before).
func startHubs(t *testing.T, n int) []*hubtest.Server {
	t.Helper()
	return startHubsWith(t, n, wshub.Options{})
}

// startHubsWith is startHubs with the hubs' options opts (their Store and
// Logger are set here).
func startHubsWith(t *testing.T, n int, opts wshub.Options) []*hubtest.Server {
	t.Helper()
	prefix := newPrefix("hubs")
	hubs := make([]*hubtest.Server, n)
	for i := range hubs {
		st, _ := newStore(t, redisstore.Options{Prefix: prefix})
		o := opts
		o.Store, o.Logger = st, slog.New(slog.DiscardHandler)
		hubs[i] = hubtest.New(t, o)
	}
	for _, h := range hubs {
		waitReady(t, h)
	}
	return hubs
}

// waitReady polls the hub's endpoint until it stops answering 503 (its
// store feed is subscribed). A request without a token then gets 401.
func waitReady(t *testing.T, srv *hubtest.Server) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for {
		resp, err := http.Get(srv.HTTP.URL + "/ws")
		require.NoError(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub still answers 503 after %v", waitBound)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// join sends cmd 12 for room on c and waits for the answer.
func join(t *testing.T, c *hubtest.Conn, room string) *wshub.Frame {
	t.Helper()
	c.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: room})
	return c.Expect(t, wshub.CmdJoin)
}

// barrierSeq numbers the users of barrier.
var barrierSeq atomic.Int64

// barrier returns once each hub has handled every feed event announced
// before the call: it sends a direct message to a fresh user connected to
// the hub and waits for it, and a hub's feed is one ordered stream.
//
// Tests call it to know that everything announced so far has been
// delivered on every hub, before they assert what did not arrive.
func barrier(t *testing.T, hubs ...*hubtest.Server) {
	t.Helper()
	for _, h := range hubs {
		user := fmt.Sprint("barrier", barrierSeq.Add(1))
		c := h.Dial(t, user)
		c.ExpectNothing(t) // registered and synced
		_, err := h.Hub.SendToUser(t.Context(), "barrier", user, &wshub.Frame{Content: "barrier"})
		require.NoError(t, err)
		require.Equal(t, "barrier", c.Expect(t, wshub.CmdSingle).Content)
		c.WS.Close()
	}
}

// dial connects user to h and waits until its pending queue has been
// queued (the pong of ExpectNothing comes after it), so that a message
// sent later reaches it live only.
func dial(t *testing.T, h *hubtest.Server, user string) *hubtest.Conn {
	t.Helper()
	c := h.Dial(t, user)
	c.ExpectNothing(t)
	return c
}

func TestHubs_DirectMessageAcrossHubs(t *testing.T) {
	hubs := startHubs(t, 2)
	alice, bob := dial(t, hubs[0], "alice"), dial(t, hubs[1], "bob")
	assert.False(t, hubs[0].Hub.IsOnline("bob"), "IsOnline is local to a hub")
	assert.True(t, hubs[1].Hub.IsOnline("bob"))

	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "c1", Content: "hi from A"})
	r := alice.Expect(t, wshub.CmdReceipt)
	assert.Equal(t, "c1", r.CID)
	assert.Equal(t, uint64(1), r.Seq)
	m := bob.Expect(t, wshub.CmdSingle)
	assert.Equal(t, r.ID, m.ID)
	assert.Equal(t, "alice", m.UserID)
	assert.Equal(t, "bob", m.DstID)
	assert.Equal(t, "hi from A", m.Content)
	assert.Equal(t, r.Seq, m.Seq)
	assert.Equal(t, r.TS, m.TS)

	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "alice", CID: "c1", Content: "hi from B"})
	assert.Equal(t, uint64(2), bob.Expect(t, wshub.CmdReceipt).Seq)
	m = alice.Expect(t, wshub.CmdSingle)
	assert.Equal(t, "hi from B", m.Content)
	assert.Equal(t, uint64(2), m.Seq, "one conversation, one seq counter")

	// A resend through the other hub is a duplicate: the first receipt,
	// nothing delivered again. (Once the message to alice was written and
	// so left her queue: a new device would get it from there.)
	require.Eventually(t, func() bool {
		p, err := hubs[1].Hub.Store().Pending(t.Context(), "alice")
		return err == nil && len(p) == 0
	}, waitBound, 5*time.Millisecond)
	alice2 := dial(t, hubs[1], "alice")
	alice2.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "c1", Content: "hi from A"})
	assert.Equal(t, r.ID, alice2.Expect(t, wshub.CmdReceipt).ID)
	bob.ExpectNothing(t)
	alice.ExpectNothing(t)
	alice2.ExpectNothing(t)
}

// TestHubs_OfflineRecipientGetsQueueOnAnyHub: a message to an offline
// user is queued and delivered when it connects, to whichever hub; once
// delivered it is not delivered again through another hub.
func TestHubs_OfflineRecipientGetsQueueOnAnyHub(t *testing.T) {
	hubs := startHubs(t, 2)
	alice := dial(t, hubs[1], "alice")
	for i := range 3 {
		alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: fmt.Sprint("queued ", i)})
		alice.Expect(t, wshub.CmdReceipt)
	}
	barrier(t, hubs[0])
	bob := hubs[0].Dial(t, "bob")
	for i := range 3 {
		m := bob.Expect(t, wshub.CmdSingle)
		assert.Equal(t, fmt.Sprint("queued ", i), m.Content)
		assert.Equal(t, uint64(i+1), m.Seq)
	}
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "live"})
	assert.Equal(t, "live", bob.Expect(t, wshub.CmdSingle).Content)
	bob.ExpectNothing(t) // written, so delivered (no ack=1)
	bob.WS.Close()

	require.Eventually(t, func() bool {
		p, err := hubs[1].Hub.Store().Pending(t.Context(), "bob")
		return err == nil && len(p) == 0
	}, waitBound, 5*time.Millisecond, "the delivery emptied bob's queue for every hub")
	dial(t, hubs[1], "bob").ExpectNothing(t)
}

// TestHubs_MultiDeviceAcrossHubs: a user's devices on different hubs all
// receive its direct messages, and the sender's other devices a copy.
func TestHubs_MultiDeviceAcrossHubs(t *testing.T) {
	hubs := startHubs(t, 2)
	alice1, alice2 := dial(t, hubs[0], "alice"), dial(t, hubs[1], "alice")
	bob1, bob2 := dial(t, hubs[0], "bob"), dial(t, hubs[1], "bob")
	alice1.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "x", Content: "to all devices"})
	r := alice1.Expect(t, wshub.CmdReceipt)
	for _, c := range []*hubtest.Conn{bob1, bob2, alice2} {
		m := c.Expect(t, wshub.CmdSingle)
		assert.Equal(t, r.ID, m.ID)
		assert.Equal(t, "to all devices", m.Content)
		assert.Equal(t, "alice", m.UserID)
		assert.Equal(t, "bob", m.DstID)
	}
	for _, c := range []*hubtest.Conn{alice1, alice2, bob1, bob2} {
		c.ExpectNothing(t)
	}
}

// TestHubs_RoomAcrossHubs: a room message sent on one hub reaches the
// members' connections on every hub except the sending connection;
// non-members get nothing; a leave on one hub stops delivery on the other.
func TestHubs_RoomAcrossHubs(t *testing.T) {
	hubs := startHubs(t, 2)
	alice1, alice2 := hubs[0].Dial(t, "alice"), hubs[1].Dial(t, "alice")
	bob, carol := hubs[1].Dial(t, "bob"), hubs[0].Dial(t, "carol")
	dave := hubs[1].Dial(t, "dave") // not a member
	join(t, alice1, "r")
	join(t, bob, "r")
	join(t, carol, "r")

	alice1.Send(t, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "r", CID: "x", Content: "hello room"})
	r := alice1.Expect(t, wshub.CmdReceipt)
	for _, c := range []*hubtest.Conn{alice2, bob, carol} {
		m := c.Expect(t, wshub.CmdRoom)
		assert.Equal(t, r.ID, m.ID)
		assert.Equal(t, "hello room", m.Content)
		assert.Equal(t, "alice", m.UserID)
		assert.Equal(t, "r", m.DstID)
		assert.Equal(t, uint64(1), m.Seq)
	}
	alice1.ExpectNothing(t)
	dave.ExpectNothing(t)

	// bob leaves on hub B; carol's message from hub A no longer reaches him.
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdLeave, DstID: "r"})
	bob.ExpectNothing(t)
	carol.Send(t, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "r", Content: "bob gone?"})
	carol.Expect(t, wshub.CmdReceipt)
	for _, c := range []*hubtest.Conn{alice1, alice2} {
		assert.Equal(t, "bob gone?", c.Expect(t, wshub.CmdRoom).Content)
	}
	bob.ExpectNothing(t)
	members, err := hubs[0].Hub.Members(t.Context(), "r")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"alice", "carol"}, members)
}

// TestHubs_JoinOnOneHubCoversDevicesOnOthers: membership belongs to the
// user: a join by one device, on hub A, makes the user's device on hub B
// receive the room (hub B learns it from the feed), and a leave on hub A
// stops it.
func TestHubs_JoinOnOneHubCoversDevicesOnOthers(t *testing.T) {
	hubs := startHubs(t, 2)
	carol1, carol2 := hubs[0].Dial(t, "carol"), hubs[1].Dial(t, "carol")
	alice := hubs[1].Dial(t, "alice")
	join(t, alice, "r")
	join(t, carol1, "r")

	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "r", Content: "for carol's devices"})
	alice.Expect(t, wshub.CmdReceipt)
	assert.Equal(t, "for carol's devices", carol2.Expect(t, wshub.CmdRoom).Content)
	assert.Equal(t, "for carol's devices", carol1.Expect(t, wshub.CmdRoom).Content)

	// The application joins and removes users on either hub.
	ctx := t.Context()
	dave := hubs[0].Dial(t, "dave")
	require.NoError(t, hubs[1].Hub.Join(ctx, "dave", "r"))
	// Hub A learns of dave's join from the feed, on dave's channel, and
	// then follows the room: the barrier, a message on another channel of
	// the same Redis connection, comes after it. (On a Redis Cluster two
	// channels have no common order: a join made on another process takes
	// effect here a moment later.)
	barrier(t, hubs[0])
	require.NoError(t, hubs[0].Hub.Leave(ctx, "carol", "r"))
	_, err := hubs[0].Hub.SendToRoom(ctx, "alice", "r", &wshub.Frame{Content: "after"})
	require.NoError(t, err)
	assert.Equal(t, "after", dave.Expect(t, wshub.CmdRoom).Content)
	assert.Equal(t, "after", alice.Expect(t, wshub.CmdRoom).Content, "sent by the API: no sending connection")
	carol1.ExpectNothing(t)
	carol2.ExpectNothing(t)
}

// TestHubs_ConcurrentRoomSendersKeepSeqOrder: four senders, two on each
// hub, send 50 room messages each at once; every member connection, on
// either hub, receives the room in seq order: listeners all of 1..200,
// senders everyone else's messages and a receipt for each of their own.
func TestHubs_ConcurrentRoomSendersKeepSeqOrder(t *testing.T) {
	hubs := startHubs(t, 2)
	const senders, each = 4, 50
	var sendConns, listeners []*hubtest.Conn
	for i := range senders {
		user := fmt.Sprint("s", i)
		c := hubs[i%2].Dial(t, user)
		join(t, c, "busy")
		sendConns = append(sendConns, c)
		// The sender's other device, on the other hub.
		listeners = append(listeners, hubs[(i+1)%2].Dial(t, user))
	}
	for i := range hubs {
		c := hubs[i].Dial(t, fmt.Sprint("listener", i))
		join(t, c, "busy")
		listeners = append(listeners, c)
	}

	var wg sync.WaitGroup
	for i, c := range sendConns {
		wg.Go(func() { // the only writer of c while it runs
			for j := range each {
				if err := c.WS.WriteJSON(&wshub.Frame{Cmd: wshub.CmdRoom, DstID: "busy", CID: fmt.Sprint(j), Content: fmt.Sprint(i, "-", j)}); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()

	for _, c := range listeners {
		for want := uint64(1); want <= senders*each; want++ {
			m := c.Expect(t, wshub.CmdRoom)
			require.Equal(t, want, m.Seq, "in seq order, none missing, none twice")
		}
	}
	for i, c := range sendConns {
		var last uint64
		others, receipts := 0, 0
		for others < (senders-1)*each || receipts < each {
			f := c.Recv(t)
			switch f.Cmd {
			case wshub.CmdReceipt:
				receipts++
			case wshub.CmdRoom:
				require.Greater(t, f.Seq, last, "in seq order")
				require.NotEqual(t, fmt.Sprint("s", i), f.UserID, "the sending connection does not get its own messages")
				last = f.Seq
				others++
			default:
				t.Fatalf("unexpected frame %+v", f)
			}
		}
	}
	for _, c := range append(sendConns, listeners...) {
		c.ExpectNothing(t)
	}
}

// TestHubs_FeedLossClosesWith1013AndClientsCatchUp: when Redis drops the
// hubs' subscriptions, every hub closes its connections with 1013 and
// resubscribes; reconnecting clients get the direct messages sent
// meanwhile from the pending queue and the room's from a join with since,
// and live routing across hubs works again.
func TestHubs_FeedLossClosesWith1013AndClientsCatchUp(t *testing.T) {
	hubs := startHubs(t, 2)
	ctx := t.Context()
	alice, bob := hubs[0].Dial(t, "alice"), hubs[1].Dial(t, "bob")
	join(t, alice, "r")
	j := join(t, bob, "r")

	admin := needRedis(t).Client(t)
	n, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, int64(2), "both hubs' subscriptions")
	assert.Equal(t, wshub.CloseTryAgainLater, alice.ExpectClose(t))
	assert.Equal(t, wshub.CloseTryAgainLater, bob.ExpectClose(t))

	// Sent while bob is away (and maybe while the hubs resubscribe).
	_, err = hubs[0].Hub.SendToUser(ctx, "alice", "bob", &wshub.Frame{Content: "while away"})
	require.NoError(t, err)
	_, err = hubs[0].Hub.SendToRoom(ctx, "alice", "r", &wshub.Frame{Content: "room while away"})
	require.NoError(t, err)

	for _, h := range hubs {
		waitReady(t, h)
	}
	barrier(t, hubs...)
	bob = hubs[1].Dial(t, "bob")
	assert.Equal(t, "while away", bob.Expect(t, wshub.CmdSingle).Content, "from the pending queue")
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: "r", Since: j.Seq, Epoch: j.Epoch})
	assert.Equal(t, "room while away", bob.Expect(t, wshub.CmdRoom).Content, "replayed")
	rj := bob.Expect(t, wshub.CmdJoin)
	require.NotNil(t, rj.Recovered)
	assert.True(t, *rj.Recovered)

	alice = dial(t, hubs[0], "alice")
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "live again"})
	alice.Expect(t, wshub.CmdReceipt)
	assert.Equal(t, "live again", bob.Expect(t, wshub.CmdSingle).Content)
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "r", Content: "room live again"})
	alice.Expect(t, wshub.CmdReceipt)
	assert.Equal(t, "room live again", bob.Expect(t, wshub.CmdRoom).Content)
	bob.ExpectNothing(t)
}

// TestHubs_ShutdownEndsSubscription: Shutdown ends the hub's Subscribe
// (its ctx ends) and waits for it, so the Store can be closed after it.
func TestHubs_ShutdownEndsSubscription(t *testing.T) {
	prefix := newPrefix("shutdown")
	st, client := newStore(t, redisstore.Options{Prefix: prefix})
	srv := hubtest.New(t, wshub.Options{Store: st})
	waitReady(t, srv)
	subscribers := func() int64 {
		n, err := client.PubSubShardNumSub(t.Context(), prefix+"{presence}").Result()
		require.NoError(t, err)
		return n[prefix+"{presence}"]
	}
	require.Equal(t, int64(1), subscribers())
	ctx, cancel := context.WithTimeout(t.Context(), waitBound)
	defer cancel()
	require.NoError(t, srv.Hub.Shutdown(ctx))
	require.Eventually(t, func() bool { return subscribers() == 0 }, waitBound, 5*time.Millisecond,
		"the subscription's connection is closed")
}

// A recipient connecting while messages to it are still on their way
// through the feed gets them in seq order, none twice on one connection:
// live copies of what its pending queue already held are dropped (no
// barrier here on purpose).
func TestHubs_NoDuplicatesWhileConnectingUnderTraffic(t *testing.T) {
	needRedis(t)
	hubs := startHubs(t, 2)
	ctx := t.Context()
	const total = 300
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range total {
			if _, err := hubs[0].Hub.SendToUser(ctx, "alice", "bob", &wshub.Frame{Content: fmt.Sprint(i)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	seen := map[string]bool{}
	for round := 0; len(seen) < total; round++ {
		require.Less(t, round, 50, "bob never got all messages")
		c := hubs[round%2].Dial(t, "bob", "ack=1")
		var connLast uint64
		for {
			f, err := c.Next(300 * time.Millisecond)
			if err != nil {
				break // quiet for a moment: reconnect, to the other hub
			}
			require.Equal(t, wshub.CmdSingle, f.Cmd)
			require.Greater(t, f.Seq, connLast, "in seq order and never twice on one connection")
			connLast = f.Seq
			seen[f.ID] = true
			c.Send(t, &wshub.Frame{Cmd: wshub.CmdAck, ID: f.ID})
		}
		c.WS.Close()
	}
	<-sent
}
