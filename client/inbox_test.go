package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/client"
	"github.com/wshub/wshub/hubtest"
)

// conversations lists c's conversations with the TS cleared, after
// checking it is set exactly when the conversation has messages.
func conversations(t *testing.T, c *client.Client, limit int) ([]client.Conversation, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	items, more, err := c.Conversations(ctx, limit)
	require.NoError(t, err)
	for i := range items {
		assert.Equal(t, items[i].Seq > 0, items[i].TS > 0, "%+v", items[i])
		items[i].TS = 0
	}
	return items, more
}

func TestClient_ConversationsAndMarkRead(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	ctx := context.Background()
	alice1, alice2 := dial(t, srv.URL, "alice", client.Options{}), dial(t, srv.URL, "alice", client.Options{})
	bob := dial(t, srv.URL, "bob", client.Options{})
	_, err := alice1.Join(ctx, "lobby")
	require.NoError(t, err)

	send(t, bob, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "alice", Content: "one"})
	send(t, bob, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "alice", Content: "two"})
	for _, c := range []*client.Client{alice1, alice2} {
		assert.Equal(t, "one", recv(t, c).Content)
		assert.Equal(t, "two", recv(t, c).Content)
	}

	items, more := conversations(t, alice1, 0)
	assert.False(t, more)
	assert.Equal(t, []client.Conversation{
		{DstID: "bob", Seq: 2, Seen: 2, Unread: 2},
		{DstID: "lobby", Room: true},
	}, items)
	items, more = conversations(t, alice2, 1)
	assert.True(t, more, "cut at the limit")
	assert.Equal(t, []client.Conversation{{DstID: "bob", Seq: 2, Seen: 2, Unread: 2}}, items)

	// The read event reaches the peer and alice's other device, as a
	// message; alice1, which read, gets nothing.
	require.NoError(t, alice1.MarkRead(ctx, "bob", false, 2))
	want := &wshub.Frame{Cmd: wshub.CmdRead, UserID: "alice", DstID: "bob", Seq: 2}
	assert.Equal(t, want, recv(t, bob))
	assert.Equal(t, want, recv(t, alice2))
	items, _ = conversations(t, alice2, 0)
	assert.Equal(t, client.Conversation{DstID: "bob", Seq: 2, Read: 2, Seen: 2}, items[0])
	items, _ = conversations(t, bob, 0)
	assert.Equal(t, []client.Conversation{{DstID: "alice", Seq: 2, Read: 2, Seen: 2}}, items)

	// A message sent after the read comes next: no copy of the event
	// reached alice1, and a read that moves nothing sends nothing.
	require.NoError(t, alice1.MarkRead(ctx, "bob", false, 1))
	send(t, bob, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "alice", Content: "three"})
	assert.Equal(t, "three", recv(t, alice1).Content)
	assert.Equal(t, "three", recv(t, alice2).Content)
	// MarkRead waits for no answer: its frame leaves the outbox once
	// written (which may come just after the message above).
	assert.Eventually(t, func() bool { return alice1.Pending() == 0 }, wait, 5*time.Millisecond, "nothing waits for an answer")
}

func TestClient_MarkReadRefusals(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	var ev events
	carol := dial(t, srv.URL, "carol", ev.options(client.Options{}))
	ctx := context.Background()
	require.NoError(t, carol.MarkRead(ctx, "r", true, 1), "fire and forget: the refusal comes later")
	require.Eventually(t, func() bool { return ev.hasErr(wshub.ErrNotMember) }, wait, 10*time.Millisecond)
	assert.ErrorIs(t, carol.MarkRead(ctx, "", false, 1), wshub.ErrMissingDst)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	assert.ErrorIs(t, carol.MarkRead(cancelled, "bob", false, 1), context.Canceled)

	require.NoError(t, carol.Close())
	assert.ErrorIs(t, carol.MarkRead(ctx, "bob", false, 1), client.ErrClosed)
	_, _, err := carol.Conversations(ctx, 0)
	assert.ErrorIs(t, err, client.ErrClosed)
}
