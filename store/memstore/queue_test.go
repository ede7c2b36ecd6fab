package memstore

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
)

func appendTo(t *testing.T, s *Store, user, id string) {
	t.Helper()
	_, _, err := s.Append(context.Background(), store.AppendRequest{
		Msg:     store.Message{ID: id, Conv: store.DirectConv("alice", user), From: "alice", To: user, Body: []byte(`{}`)},
		Pending: []string{user},
	})
	require.NoError(t, err)
}

func queueOf(s *Store, user string) *pendingQueue {
	sh := &s.users[s.shard(user)%numShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.pending[user]
}

// A queue emptied by Ack is kept as a spare and taken by the next message
// of its shard, as a new queue: no message of the old one, positions from
// zero, a generation of its own (a cursor of the old one starts over).
// A queue that held many messages is left to the collector.
func TestQueue_EmptiedQueueIsReused(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	ctx := context.Background()

	appendTo(t, s, "bob", "m1")
	appendTo(t, s, "bob", "m2")
	q := queueOf(s, "bob")
	require.NotNil(t, q)
	_, cursor, err := s.PendingPage(ctx, "bob", "", 1)
	require.NoError(t, err)
	require.NotEmpty(t, cursor)
	oldGen := q.gen

	require.NoError(t, s.Ack(ctx, "bob", "m1", "m2"))
	assert.Nil(t, queueOf(s, "bob"), "an empty queue leaves the user")

	appendTo(t, s, "bob", "m3")
	q2 := queueOf(s, "bob")
	require.Same(t, q, q2, "the emptied queue is reused")
	assert.NotEqual(t, oldGen, q2.gen, "a reused queue is a new one to cursors")
	assert.Equal(t, 1, q2.live)
	assert.Equal(t, 1, q2.next)
	assert.Len(t, q2.index, 1)

	// The old walk's cursor starts over in the new queue: m3 is not
	// skipped.
	page, _, err := s.PendingPage(ctx, "bob", cursor, 10)
	require.NoError(t, err)
	require.Len(t, page, 1)
	assert.Equal(t, "m3", page[0].ID)
	all, err := s.Pending(ctx, "bob")
	require.NoError(t, err)
	require.Len(t, all, 1)
	assert.Equal(t, "m3", all[0].ID)

	// A queue grown past spareQueueCap is not kept.
	var ids []string
	for i := range spareQueueCap + 1 {
		id := "big" + strconv.Itoa(i)
		ids = append(ids, id)
		appendTo(t, s, "carol", id)
	}
	big := queueOf(s, "carol")
	require.NoError(t, s.Ack(ctx, "carol", ids...))
	appendTo(t, s, "carol", "after")
	assert.NotSame(t, big, queueOf(s, "carol"), "a big emptied queue is not reused")
}
