package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
)

// inboxTests check store.Inbox: the conversation index and read markers.
var inboxTests = []test{
	{"OrderedByRecency", testInboxOrder},
	{"LimitAndMore", testInboxLimit},
	{"MarkersForwardOnlyAndCapped", testInboxMarkers},
	{"AppendMovesSendersMarker", testInboxSenderMarker},
	{"PeerSeen", testInboxSeen},
	{"RoomsFromMemberships", testInboxRooms},
	{"DuplicateDoesNotReorder", testInboxDuplicate},
	{"Validation", testInboxValidation},
}

// inbox returns s as a store.Inbox (which store.Store embeds).
func inbox(_ *testing.T, s store.Store) store.Inbox { return s }

// sendAt appends a direct message from -> to with timestamp ts.
func sendAt(t *testing.T, s store.Store, from, to, id string, ts int64) store.Message {
	t.Helper()
	m := msg(store.DirectConv(from, to), id, from, to)
	m.TS = ts
	return appendOK(t, s, store.AppendRequest{Msg: m, Pending: []string{to}, CID: "cid-" + id})
}

// convs returns user's conversations with limit.
func convs(t *testing.T, in store.Inbox, user string, limit int) ([]store.ConvInfo, bool) {
	t.Helper()
	items, more, err := in.Conversations(t.Context(), user, limit)
	require.NoError(t, err, "Conversations(%q, %d)", user, limit)
	return items, more
}

func peersOf(items []store.ConvInfo) []string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, it.Peer)
	}
	return out
}

func markRead(t *testing.T, in store.Inbox, user, conv string, seq uint64) (uint64, bool) {
	t.Helper()
	m, moved, err := in.MarkRead(t.Context(), user, conv, seq)
	require.NoError(t, err, "MarkRead(%q, %q, %d)", user, conv, seq)
	return m, moved
}

func testInboxOrder(t *testing.T, s store.Store) {
	in := inbox(t, s)
	sendAt(t, s, "alice", "bob", "m1", baseTS+1)
	sendAt(t, s, "carol", "alice", "m2", baseTS+2)
	sendAt(t, s, "alice", "dave", "m3", baseTS+3)
	items, more := convs(t, in, "alice", 0)
	assert.False(t, more)
	assert.Equal(t, []string{"dave", "carol", "bob"}, peersOf(items))

	// A new message moves its conversation to the top, for both users.
	sendAt(t, s, "bob", "alice", "m4", baseTS+4)
	items, _ = convs(t, in, "alice", 0)
	require.Equal(t, []string{"bob", "dave", "carol"}, peersOf(items))
	assert.Equal(t, store.ConvInfo{Conv: store.DirectConv("alice", "bob"), Kind: store.ConvDirect,
		Peer: "bob", Seq: 2, TS: baseTS + 4, Read: 1, Seen: 2}, items[0])
	items, _ = convs(t, in, "bob", 0)
	assert.Equal(t, []string{"alice"}, peersOf(items))

	// Same TS: the higher seq first, then by Conv.
	sendAt(t, s, "erin", "frank", "n1", baseTS)
	sendAt(t, s, "erin", "gina", "n2", baseTS)
	sendAt(t, s, "erin", "gina", "n3", baseTS)
	items, _ = convs(t, in, "erin", 0)
	assert.Equal(t, []string{"gina", "frank"}, peersOf(items))

	// Users with nothing have nothing.
	items, more = convs(t, in, "nobody", 0)
	assert.Empty(t, items)
	assert.False(t, more)
}

func testInboxLimit(t *testing.T, s store.Store) {
	in := inbox(t, s)
	const n = 12
	for i := range n {
		sendAt(t, s, fmt.Sprintf("p%02d", i), "alice", fmt.Sprintf("m%d", i), baseTS+int64(i))
	}
	items, more := convs(t, in, "alice", 5)
	assert.True(t, more)
	assert.Equal(t, []string{"p11", "p10", "p09", "p08", "p07"}, peersOf(items))
	items, more = convs(t, in, "alice", n)
	assert.False(t, more, "exactly limit conversations")
	assert.Len(t, items, n)
	items, more = convs(t, in, "alice", 0)
	assert.False(t, more)
	assert.Len(t, items, n, "limit 0 means the default (100)")
	items, _ = convs(t, in, "alice", store.MaxConversations+1)
	assert.Len(t, items, n)
}

func testInboxMarkers(t *testing.T, s store.Store) {
	in := inbox(t, s)
	conv := store.DirectConv("alice", "bob")
	for i := range 5 {
		sendAt(t, s, "alice", "bob", fmt.Sprintf("m%d", i), baseTS+int64(i))
	}
	m, moved := markRead(t, in, "bob", conv, 3)
	assert.Equal(t, uint64(3), m)
	assert.True(t, moved)
	m, moved = markRead(t, in, "bob", conv, 2)
	assert.Equal(t, uint64(3), m, "a marker never moves back")
	assert.False(t, moved)
	m, moved = markRead(t, in, "bob", conv, 3)
	assert.Equal(t, uint64(3), m)
	assert.False(t, moved, "the same seq does not move it")
	m, moved = markRead(t, in, "bob", conv, 99)
	assert.Equal(t, uint64(5), m, "capped at the latest seq")
	assert.True(t, moved)
	m, moved = markRead(t, in, "bob", conv, 99)
	assert.Equal(t, uint64(5), m)
	assert.False(t, moved)
	items, _ := convs(t, in, "bob", 0)
	require.Len(t, items, 1)
	assert.Equal(t, uint64(5), items[0].Read)
	assert.Equal(t, uint64(5), items[0].Seq)

	// A conversation without messages keeps the marker at 0.
	m, moved = markRead(t, in, "bob", store.DirectConv("bob", "zed"), 7)
	assert.Zero(t, m)
	assert.False(t, moved)
	m, moved = markRead(t, in, "bob", store.RoomConv("empty"), 7)
	assert.Zero(t, m)
	assert.False(t, moved)
}

func testInboxSenderMarker(t *testing.T, s store.Store) {
	in := inbox(t, s)
	conv := store.DirectConv("alice", "bob")
	sendAt(t, s, "alice", "bob", "m1", baseTS)
	sendAt(t, s, "bob", "alice", "m2", baseTS+1)
	sendAt(t, s, "bob", "alice", "m3", baseTS+2)
	a, _ := convs(t, in, "alice", 0)
	b, _ := convs(t, in, "bob", 0)
	require.Len(t, a, 1)
	require.Len(t, b, 1)
	assert.Equal(t, uint64(1), a[0].Read, "alice read up to her own message")
	assert.Equal(t, uint64(3), b[0].Read, "bob read up to his own last message")
	assert.Equal(t, uint64(3), a[0].Seen)
	assert.Equal(t, uint64(1), b[0].Seen)
	m, moved := markRead(t, in, "bob", conv, 2)
	assert.Equal(t, uint64(3), m, "a marker moved by Append does not go back either")
	assert.False(t, moved)

	// In a room too.
	require.NoError(t, s.Join(t.Context(), "r", "carol"))
	rm := msg(store.RoomConv("r"), "r1", "carol", "r")
	rm.Cmd = 11
	appendOK(t, s, store.AppendRequest{Msg: rm})
	c, _ := convs(t, in, "carol", 0)
	require.Len(t, c, 1)
	assert.Equal(t, uint64(1), c[0].Read)
}

func testInboxSeen(t *testing.T, s store.Store) {
	in := inbox(t, s)
	conv := store.DirectConv("alice", "bob")
	for i := range 4 {
		sendAt(t, s, "alice", "bob", fmt.Sprintf("m%d", i), baseTS+int64(i))
	}
	a, _ := convs(t, in, "alice", 0)
	require.Len(t, a, 1)
	assert.Zero(t, a[0].Seen, "bob has read nothing")
	assert.Equal(t, 4-a[0].Read, uint64(0))
	markRead(t, in, "bob", conv, 2)
	a, _ = convs(t, in, "alice", 0)
	assert.Equal(t, uint64(2), a[0].Seen)
	b, _ := convs(t, in, "bob", 0)
	assert.Equal(t, uint64(2), b[0].Read)
	assert.Equal(t, uint64(4), b[0].Seen)

	// A conversation with oneself is listed once.
	sendAt(t, s, "alice", "alice", "self", baseTS+10)
	a, _ = convs(t, in, "alice", 0)
	require.Equal(t, []string{"alice", "bob"}, peersOf(a))
	assert.Equal(t, uint64(1), a[0].Read)
}

func testInboxRooms(t *testing.T, s store.Store) {
	in := inbox(t, s)
	ctx := t.Context()
	require.NoError(t, s.Join(ctx, "busy", "alice"))
	require.NoError(t, s.Join(ctx, "quiet", "alice"))
	require.NoError(t, s.Join(ctx, "busy", "bob"))
	rm := msg(store.RoomConv("busy"), "r1", "bob", "busy")
	rm.Cmd, rm.TS = 11, baseTS+5
	appendOK(t, s, store.AppendRequest{Msg: rm})
	sendAt(t, s, "carol", "alice", "d1", baseTS+3)

	items, more := convs(t, in, "alice", 0)
	assert.False(t, more)
	assert.Equal(t, []store.ConvInfo{
		{Conv: store.RoomConv("busy"), Kind: store.ConvRoom, Peer: "busy", Seq: 1, TS: baseTS + 5},
		{Conv: store.DirectConv("alice", "carol"), Kind: store.ConvDirect, Peer: "carol", Seq: 1, TS: baseTS + 3, Seen: 1},
		{Conv: store.RoomConv("quiet"), Kind: store.ConvRoom, Peer: "quiet"},
	}, items)
	m, moved := markRead(t, in, "alice", store.RoomConv("busy"), 1)
	assert.Equal(t, uint64(1), m)
	assert.True(t, moved)
	items, _ = convs(t, in, "alice", 1)
	require.Len(t, items, 1)
	assert.Equal(t, uint64(1), items[0].Read)

	// Rooms count towards the limit.
	items, more = convs(t, in, "alice", 2)
	assert.True(t, more)
	assert.Equal(t, []string{"busy", "carol"}, peersOf(items))

	require.NoError(t, s.Leave(ctx, "busy", "alice"))
	items, _ = convs(t, in, "alice", 0)
	assert.Equal(t, []string{"carol", "quiet"}, peersOf(items), "a room left is not listed")
	// Room messages are not indexed as direct conversations of anyone.
	items, _ = convs(t, in, "bob", 0)
	assert.Equal(t, []string{"busy"}, peersOf(items))
}

func testInboxDuplicate(t *testing.T, s store.Store) {
	in := inbox(t, s)
	first := sendAt(t, s, "bob", "alice", "m1", baseTS+1)
	sendAt(t, s, "carol", "alice", "m2", baseTS+2)
	m := msg(first.Conv, "m1-again", "bob", "alice")
	m.TS = baseTS + 3
	_, dup, err := s.Append(t.Context(), store.AppendRequest{Msg: m, Pending: []string{"alice"}, CID: "cid-m1"})
	require.NoError(t, err)
	require.True(t, dup)
	items, _ := convs(t, in, "alice", 0)
	require.Equal(t, []string{"carol", "bob"}, peersOf(items), "a duplicate does not reorder")
	assert.Equal(t, baseTS+1, items[1].TS)
}

func testInboxValidation(t *testing.T, s store.Store) {
	in := inbox(t, s)
	_, _, err := in.Conversations(t.Context(), "", 0)
	assert.ErrorIs(t, err, store.ErrInvalid)
	_, _, err = in.MarkRead(t.Context(), "", "c", 1)
	assert.ErrorIs(t, err, store.ErrInvalid)
	_, _, err = in.MarkRead(t.Context(), "u", "", 1)
	assert.ErrorIs(t, err, store.ErrInvalid)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _, err = in.Conversations(ctx, "u", 0)
	assert.ErrorIs(t, err, context.Canceled)
	_, _, err = in.MarkRead(ctx, "u", "c", 1)
	assert.ErrorIs(t, err, context.Canceled)
	require.NoError(t, s.Close())
	_, _, err = in.Conversations(t.Context(), "u", 0)
	assert.ErrorIs(t, err, store.ErrClosed)
	_, _, err = in.MarkRead(t.Context(), "u", "c", 1)
	assert.ErrorIs(t, err, store.ErrClosed)
}

// durableInbox checks that markers and the conversation index survive
// reopen.
func durableInbox(t *testing.T, r *reopener) {
	in := inbox(t, r.s)
	sendAt(t, r.s, "alice", "bob", "m1", baseTS+1)
	sendAt(t, r.s, "carol", "alice", "m2", baseTS+2)
	sendAt(t, r.s, "alice", "bob", "m3", baseTS+3)
	markRead(t, in, "bob", store.DirectConv("alice", "bob"), 1)
	require.NoError(t, r.s.Join(t.Context(), "room", "alice"))
	want, _ := convs(t, in, "alice", 0)
	require.Len(t, want, 3)
	in = inbox(t, r.reopen())
	got, _ := convs(t, in, "alice", 0)
	assert.Equal(t, want, got)
	b, _ := convs(t, in, "bob", 0)
	require.Len(t, b, 1)
	assert.Equal(t, uint64(1), b[0].Read)
	m, moved := markRead(t, in, "bob", store.DirectConv("alice", "bob"), 1)
	assert.Equal(t, uint64(1), m)
	assert.False(t, moved)
	in = inbox(t, r.reopen())
	m, moved = markRead(t, in, "bob", store.DirectConv("alice", "bob"), 9)
	assert.Equal(t, uint64(2), m)
	assert.True(t, moved)
	in = inbox(t, r.reopen())
	b, _ = convs(t, in, "bob", 0)
	require.Len(t, b, 1)
	assert.Equal(t, uint64(2), b[0].Read)
}
