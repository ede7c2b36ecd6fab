package wshub_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/boltstore"
	"github.com/wshub/wshub/store/memstore"
)

// inboxStores are the stores of this module, all of which implement
// store.Inbox. (Redis, in a module of its own, is tested there.)
var inboxStores = []struct {
	name string
	open func(t *testing.T) store.Store
}{
	{"mem", func(*testing.T) store.Store { return memstore.New(memstore.Options{}) }},
	{"bolt", func(t *testing.T) store.Store {
		st, err := boltstore.Open(filepath.Join(t.TempDir(), "hub.db"), boltstore.Options{})
		require.NoError(t, err)
		return st
	}},
}

// forEachInboxStore runs fn as a subtest on a hub over each of
// inboxStores.
func forEachInboxStore(t *testing.T, fn func(t *testing.T, srv *hubtest.Server)) {
	for _, s := range inboxStores {
		t.Run(s.name, func(t *testing.T) {
			st := s.open(t)
			t.Cleanup(func() { assert.NoError(t, st.Close()) }) // after the hub's Shutdown
			fn(t, hubtest.New(t, wshub.Options{Store: st, Logger: slog.New(slog.DiscardHandler)}))
		})
	}
}

// recvCmd returns the next frame with cmd, skipping others (messages
// delivered to the connection meanwhile).
func recvCmd(t *testing.T, c *hubtest.Conn, cmd wshub.Cmd) *wshub.Frame {
	t.Helper()
	for {
		if f := c.Recv(t); f.Cmd == cmd {
			return f
		}
	}
}

// drain reads until the pong of a ping, dropping whatever came before.
func drain(t *testing.T, c *hubtest.Conn) {
	t.Helper()
	c.Send(t, &wshub.Frame{Cmd: wshub.CmdPing})
	recvCmd(t, c, wshub.CmdPong)
}

// listConversations asks for c's conversations and returns the reply.
func listConversations(t *testing.T, c *hubtest.Conn, limit int) *wshub.Frame {
	t.Helper()
	cid := fmt.Sprintf("conv-%d", limit)
	c.Send(t, &wshub.Frame{Cmd: wshub.CmdConversations, CID: cid, Limit: limit})
	r := recvCmd(t, c, wshub.CmdConversations)
	require.Equal(t, cid, r.CID, "the reply echoes the request's cid")
	return r
}

// withoutTS returns items with TS cleared, after checking that each had
// one exactly when it has messages, and that they are most recent first.
func withoutTS(t *testing.T, items []*wshub.Frame) []*wshub.Frame {
	t.Helper()
	out := make([]*wshub.Frame, len(items))
	for i, it := range items {
		if i > 0 {
			assert.LessOrEqual(t, it.TS, items[i-1].TS, "most recent first")
		}
		assert.Equal(t, it.Seq > 0, it.TS > 0, "ts set exactly when the conversation has messages: %+v", it)
		cp := *it
		cp.TS = 0
		out[i] = &cp
	}
	return out
}

func send(t *testing.T, c *hubtest.Conn, f *wshub.Frame) *wshub.Frame {
	t.Helper()
	c.Send(t, f)
	r := recvCmd(t, c, wshub.CmdReceipt)
	require.Equal(t, f.CID, r.CID)
	return r
}

func TestHub_ConversationsSameOnANewDevice(t *testing.T) {
	forEachInboxStore(t, func(t *testing.T, srv *hubtest.Server) {
		ctx := context.Background()
		require.NoError(t, srv.Hub.Join(ctx, "alice", "lobby"))
		require.NoError(t, srv.Hub.Join(ctx, "alice", "empty"))
		require.NoError(t, srv.Hub.Join(ctx, "bob", "lobby"))
		alice, bob, carol := srv.Dial(t, "alice"), srv.Dial(t, "bob"), srv.Dial(t, "carol")

		// Messages in both directions; every send moves its sender's marker.
		send(t, alice, &wshub.Frame{Cmd: wshub.CmdSingle, CID: "a1", DstID: "bob", Content: "hi"})    // seq 1
		send(t, bob, &wshub.Frame{Cmd: wshub.CmdSingle, CID: "b1", DstID: "alice", Content: "hey"})   // seq 2
		send(t, bob, &wshub.Frame{Cmd: wshub.CmdSingle, CID: "b2", DstID: "alice", Content: "there"}) // seq 3
		send(t, bob, &wshub.Frame{Cmd: wshub.CmdRoom, CID: "b3", DstID: "lobby", Content: "all"})     // lobby 1
		send(t, bob, &wshub.Frame{Cmd: wshub.CmdRoom, CID: "b4", DstID: "lobby", Content: "of you"})  // lobby 2
		send(t, carol, &wshub.Frame{Cmd: wshub.CmdSingle, CID: "c1", DstID: "alice", Content: "yo"})  // seq 1

		want := map[string]*wshub.Frame{
			"bob":   {Cmd: wshub.CmdSingle, DstID: "bob", Seq: 3, Read: 1, Seen: 3, Unread: 2},
			"carol": {Cmd: wshub.CmdSingle, DstID: "carol", Seq: 1, Seen: 1, Unread: 1},
			"lobby": {Cmd: wshub.CmdRoom, DstID: "lobby", Seq: 2, Unread: 2},
			"empty": {Cmd: wshub.CmdRoom, DstID: "empty"},
		}
		first := listConversations(t, alice, 0)
		assert.False(t, first.More)
		items := withoutTS(t, first.Items)
		require.Len(t, items, len(want))
		for _, it := range items {
			assert.Equal(t, want[it.DstID], it, it.DstID)
		}
		assert.Equal(t, "empty", items[len(items)-1].DstID, "a room without messages comes last")

		// A second device of alice sees the same list, in the same order.
		alice2 := srv.Dial(t, "alice")
		second := listConversations(t, alice2, 0)
		assert.Equal(t, first.Items, second.Items)
		assert.Equal(t, first.More, second.More)

		// Reads show on both devices, and as seen on the peer's side.
		alice.Send(t, &wshub.Frame{Cmd: wshub.CmdRead, DstID: "bob", Seq: 3})
		alice.Send(t, &wshub.Frame{Cmd: wshub.CmdRead, DstID: "lobby", Room: true, Seq: 1})
		drain(t, alice)
		want["bob"].Read, want["bob"].Unread = 3, 0
		want["lobby"].Read, want["lobby"].Unread = 1, 1
		for _, c := range []*hubtest.Conn{alice, alice2} {
			for _, it := range withoutTS(t, listConversations(t, c, 0).Items) {
				assert.Equal(t, want[it.DstID], it, it.DstID)
			}
		}
		bobs := withoutTS(t, listConversations(t, bob, 0).Items)
		require.Len(t, bobs, 2)
		assert.Contains(t, bobs, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "alice", Seq: 3, Read: 3, Seen: 3})
		assert.Contains(t, bobs, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "lobby", Seq: 2, Read: 2})
	})
}

func TestHub_ConversationsLimitAndMore(t *testing.T) {
	forEachInboxStore(t, func(t *testing.T, srv *hubtest.Server) {
		alice := srv.Dial(t, "alice")
		// Peer pi gets i messages, sent in order: the last one, to p5,
		// is the most recent by ts and by seq, so the order is p5 ... p1.
		for i := 1; i <= 5; i++ {
			for j := 1; j <= i; j++ {
				send(t, alice, &wshub.Frame{Cmd: wshub.CmdSingle, CID: fmt.Sprintf("m%d-%d", i, j), DstID: fmt.Sprintf("p%d", i), Content: "x"})
			}
		}
		peers := func(items []*wshub.Frame) []string {
			var ids []string
			for _, it := range items {
				ids = append(ids, it.DstID)
			}
			return ids
		}
		tests := []struct {
			limit int
			want  []string
			more  bool
		}{
			{0, []string{"p5", "p4", "p3", "p2", "p1"}, false},
			{2, []string{"p5", "p4"}, true},
			{4, []string{"p5", "p4", "p3", "p2"}, true},
			{5, []string{"p5", "p4", "p3", "p2", "p1"}, false},
			{5000, []string{"p5", "p4", "p3", "p2", "p1"}, false},
			{-1, []string{"p5", "p4", "p3", "p2", "p1"}, false},
		}
		for _, tt := range tests {
			r := listConversations(t, alice, tt.limit)
			assert.Equal(t, tt.want, peers(r.Items), "limit %d", tt.limit)
			assert.Equal(t, tt.more, r.More, "limit %d", tt.limit)
		}
		// Sent by alice, read by alice, seen by nobody.
		first := listConversations(t, alice, 1).Items[0]
		assert.Equal(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "p5", Seq: 5, TS: first.TS, Read: 5}, first)

		// A user without conversations gets an empty list.
		dave := srv.Dial(t, "dave")
		r := listConversations(t, dave, 0)
		assert.Empty(t, r.Items)
		assert.False(t, r.More)
	})
}

func TestHub_ReadEventsReachOtherDevicesAndThePeer(t *testing.T) {
	forEachInboxStore(t, func(t *testing.T, srv *hubtest.Server) {
		alice1, alice2 := srv.Dial(t, "alice"), srv.Dial(t, "alice")
		bob1, bob2 := srv.Dial(t, "bob"), srv.Dial(t, "bob")
		carol := srv.Dial(t, "carol")
		for i := 1; i <= 3; i++ {
			send(t, bob1, &wshub.Frame{Cmd: wshub.CmdSingle, CID: fmt.Sprint(i), DstID: "alice", Content: "x"})
		}
		all := []*hubtest.Conn{alice1, alice2, bob1, bob2, carol}
		for _, c := range all {
			drain(t, c)
		}

		// Each read: the marker it stores, or 0 when it must not move.
		for _, step := range []struct {
			seq, marker uint64
		}{
			{2, 2},  // forward
			{1, 0},  // backward: nothing
			{2, 0},  // the same: nothing
			{99, 3}, // capped at the latest seq
			{99, 0}, // already there
		} {
			alice1.Send(t, &wshub.Frame{Cmd: wshub.CmdRead, DstID: "bob", Seq: step.seq})
			if step.marker > 0 {
				want := &wshub.Frame{Cmd: wshub.CmdRead, UserID: "alice", DstID: "bob", Seq: step.marker}
				for _, c := range []*hubtest.Conn{alice2, bob1, bob2} {
					assert.Equal(t, want, c.Expect(t, wshub.CmdRead), "read up to %d", step.seq)
				}
			}
			alice1.ExpectNothing(t) // no reply, no event to the reading connection
			for _, c := range all {
				c.ExpectNothing(t)
			}
		}
		r := withoutTS(t, listConversations(t, bob1, 0).Items)
		assert.Equal(t, []*wshub.Frame{{Cmd: wshub.CmdSingle, DstID: "alice", Seq: 3, Read: 3, Seen: 3}}, r)
	})
}

func TestHub_ReadInRoomReachesOnlyTheReadersOtherDevices(t *testing.T) {
	forEachInboxStore(t, func(t *testing.T, srv *hubtest.Server) {
		ctx := context.Background()
		require.NoError(t, srv.Hub.Join(ctx, "alice", "r"))
		require.NoError(t, srv.Hub.Join(ctx, "bob", "r"))
		alice1, alice2, bob, carol := srv.Dial(t, "alice"), srv.Dial(t, "alice"), srv.Dial(t, "bob"), srv.Dial(t, "carol")
		send(t, bob, &wshub.Frame{Cmd: wshub.CmdRoom, CID: "1", DstID: "r", Content: "x"})
		send(t, bob, &wshub.Frame{Cmd: wshub.CmdRoom, CID: "2", DstID: "r", Content: "y"})
		for _, c := range []*hubtest.Conn{alice1, alice2} {
			drain(t, c)
		}

		alice1.SendRaw(t, `{"cmd":19,"dstid":"r","room":true,"seq":2}`)
		assert.Equal(t, &wshub.Frame{Cmd: wshub.CmdRead, UserID: "alice", DstID: "r", Room: true, Seq: 2}, alice2.Expect(t, wshub.CmdRead))
		for _, c := range []*hubtest.Conn{alice1, alice2, bob, carol} {
			c.ExpectNothing(t)
		}

		// A non-member may not mark the room read.
		carol.Send(t, &wshub.Frame{Cmd: wshub.CmdRead, CID: "nm", DstID: "r", Room: true, Seq: 1})
		e := carol.Expect(t, wshub.CmdError)
		assert.Equal(t, 403, e.Code)
		assert.Equal(t, "nm", e.CID)
		for _, c := range []*hubtest.Conn{alice1, alice2, bob} {
			c.ExpectNothing(t)
		}
		require.NoError(t, srv.Hub.Join(ctx, "carol", "r"))
		r := withoutTS(t, listConversations(t, carol, 0).Items)
		assert.Equal(t, []*wshub.Frame{{Cmd: wshub.CmdRoom, DstID: "r", Seq: 2, Unread: 2}}, r, "the refused read stored nothing")
	})
}

func TestHub_ReadBadDstID(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice := srv.Dial(t, "alice")
	for _, f := range []*wshub.Frame{
		{Cmd: wshub.CmdRead, CID: "none", Seq: 1},
		{Cmd: wshub.CmdRead, CID: "none-room", Room: true, Seq: 1},
		{Cmd: wshub.CmdRead, CID: "long", DstID: strings.Repeat("b", wshub.MaxIDLen+1), Seq: 1},
	} {
		alice.Send(t, f)
		e := alice.Expect(t, wshub.CmdError)
		assert.Equal(t, 400, e.Code, f.CID)
		assert.Equal(t, f.CID, e.CID)
	}
}
