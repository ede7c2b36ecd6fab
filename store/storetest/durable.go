package storetest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
)

// RunDurable checks that what a store acknowledged survives Close and
// reopen: open(t, dir) opens (or reopens) the store kept in dir. Each
// subtest uses its own t.TempDir(), closes the store before reopening it
// and closes the last one it opened.
//
// Checked after each reopen: history with every field, First and Last;
// the Epoch; the pending queues minus what was acked; the (sender, cid)
// records; memberships; and that seqs continue (the next Append gets
// Last+1).
func RunDurable(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, r *reopener)
	}{
		{"HistoryAndSeq", durableHistory},
		{"Epoch", durableEpoch},
		{"Pending", durablePending},
		{"CID", durableCID},
		{"Membership", durableMembership},
		{"Inbox", durableInbox},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &reopener{t: t, open: open, dir: t.TempDir()}
			r.s = open(t, r.dir)
			require.NotNil(t, r.s, "open returned nil")
			t.Cleanup(func() {
				assert.NoError(t, r.s.Close(), "Close at the end of the subtest")
			})
			tc.fn(t, r)
		})
	}
}

// reopener holds the store of one RunDurable subtest. It is used by the
// subtest's goroutine only.
type reopener struct {
	t    *testing.T
	open func(t *testing.T, dir string) store.Store
	dir  string
	s    store.Store // the open store; replaced by reopen
}

// reopen closes the store and opens it again from the same dir.
func (r *reopener) reopen() store.Store {
	r.t.Helper()
	require.NoError(r.t, r.s.Close(), "Close before reopen")
	r.s = r.open(r.t, r.dir)
	require.NotNil(r.t, r.s, "open returned nil")
	return r.s
}

func durableHistory(t *testing.T, r *reopener) {
	a, b := store.DirectConv("alice", "bob"), store.RoomConv("lobby")
	var wantA, wantB []store.Message
	for i := 1; i <= 5; i++ {
		m := msg(a, fmt.Sprintf("a%d", i), "alice", "bob")
		m.TS = baseTS + int64(i)
		m.Body = []byte{'{', '}', 0, 0xff, byte(i)}
		wantA = append(wantA, appendOK(t, r.s, store.AppendRequest{Msg: m}))
	}
	for i := 1; i <= 3; i++ {
		m := msg(b, fmt.Sprintf("b%d", i), "carol", "lobby")
		m.Cmd = 11
		wantB = append(wantB, appendOK(t, r.s, store.AppendRequest{Msg: m}))
	}

	for round := 1; round <= 2; round++ {
		s := r.reopen()
		p := history(t, s, a, store.Query{Limit: 100})
		assertSameMessages(t, wantA, p.Items, "round %d: history of %q", round, a)
		assert.Equal(t, uint64(1), p.First, "round %d", round)
		assert.Equal(t, uint64(len(wantA)), p.Last, "round %d", round)
		assertSameMessages(t, wantB, history(t, s, b, store.Query{Limit: 100}).Items, "round %d: history of %q", round, b)

		// Seqs continue where they were.
		m := appendOK(t, s, store.AppendRequest{Msg: msg(a, fmt.Sprintf("after-reopen-%d", round), "bob", "alice")})
		assert.Equal(t, uint64(len(wantA)+1), m.Seq, "round %d: first seq after reopen", round)
		wantA = append(wantA, m)
	}
	s := r.reopen()
	assertSameMessages(t, wantA, history(t, s, a, store.Query{Limit: 100}).Items, "after the last reopen")
	assert.Empty(t, history(t, s, "never-written", store.Query{}).Items)
}

func durableEpoch(t *testing.T, r *reopener) {
	conv := store.RoomConv("lobby")
	appendN(t, r.s, conv, "m", 2)
	epoch := history(t, r.s, conv, store.Query{}).Epoch
	require.NotEmpty(t, epoch)
	s := r.reopen()
	assert.Equal(t, epoch, history(t, s, conv, store.Query{}).Epoch, "epoch after reopen")
	appendN(t, s, conv, "n", 1)
	s = r.reopen()
	assert.Equal(t, epoch, history(t, s, conv, store.Query{}).Epoch, "epoch after a second reopen")
}

func durablePending(t *testing.T, r *reopener) {
	conv := store.DirectConv("alice", "bob")
	var all []store.Message
	for i := 1; i <= 5; i++ {
		all = append(all, appendOK(t, r.s, store.AppendRequest{
			Msg: msg(conv, fmt.Sprintf("m%d", i), "alice", "bob"), Pending: []string{"bob", "carol"},
		}))
	}
	require.NoError(t, r.s.Ack(t.Context(), "bob", "m1", "m3"))
	require.NoError(t, r.s.Ack(t.Context(), "carol", "m1", "m2", "m3", "m4", "m5"))

	s := r.reopen()
	assertSameMessages(t, []store.Message{all[1], all[3], all[4]}, pending(t, s, "bob"), "pending of bob after reopen")
	assert.Empty(t, pending(t, s, "carol"), "pending of carol after reopen")

	require.NoError(t, s.Ack(t.Context(), "bob", "m4"))
	m6 := appendOK(t, s, store.AppendRequest{Msg: msg(conv, "m6", "alice", "bob"), Pending: []string{"bob"}})
	s = r.reopen()
	assertSameMessages(t, []store.Message{all[1], all[4], m6}, pending(t, s, "bob"), "pending of bob after a second reopen")
}

func durableCID(t *testing.T, r *reopener) {
	conv := store.DirectConv("alice", "bob")
	first := appendOK(t, r.s, store.AppendRequest{Msg: msg(conv, "m1", "alice", "bob"), Pending: []string{"bob"}, CID: "c1"})
	appendOK(t, r.s, store.AppendRequest{Msg: msg(conv, "m2", "alice", "bob"), Pending: []string{"bob"}, CID: "c2"})

	s := r.reopen()
	got, dup, err := s.Append(t.Context(), store.AppendRequest{Msg: msg(conv, "m1-resent", "alice", "bob"), Pending: []string{"bob"}, CID: "c1"})
	require.NoError(t, err)
	assert.True(t, dup, "a resend after reopen is a duplicate")
	assertSameMessage(t, first, got, "a resend after reopen returns the first message")
	assert.Equal(t, []string{"m1", "m2"}, idsOf(history(t, s, conv, store.Query{}).Items))
	assert.Equal(t, []string{"m1", "m2"}, idsOf(pending(t, s, "bob")))

	m3 := appendOK(t, s, store.AppendRequest{Msg: msg(conv, "m3", "bob", "alice"), CID: "c1"}) // another sender
	assert.Equal(t, uint64(3), m3.Seq)
}

func durableMembership(t *testing.T, r *reopener) {
	for _, j := range [][2]string{{"go", "alice"}, {"go", "bob"}, {"rust", "alice"}, {"zig", "carol"}} {
		require.NoError(t, r.s.Join(t.Context(), j[0], j[1]))
	}
	require.NoError(t, r.s.Leave(t.Context(), "zig", "carol"))

	s := r.reopen()
	assert.ElementsMatch(t, []string{"go", "rust"}, rooms(t, s, "alice"))
	assert.ElementsMatch(t, []string{"go"}, rooms(t, s, "bob"))
	assert.Empty(t, rooms(t, s, "carol"))
	assert.ElementsMatch(t, []string{"alice", "bob"}, members(t, s, "go"))
	assert.Empty(t, members(t, s, "zig"))

	require.NoError(t, s.Leave(t.Context(), "go", "bob"))
	s = r.reopen()
	assert.ElementsMatch(t, []string{"alice"}, members(t, s, "go"))
	assert.Empty(t, rooms(t, s, "bob"))
}
