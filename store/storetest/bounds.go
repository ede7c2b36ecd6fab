package storetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
)

// Bounds are the pending-queue bounds a store under RunPendingBounds is
// opened with: most messages in one user's queue (MaxPending) and most of
// them from one sender (MaxPendingPerSender). Negative means unbounded.
type Bounds struct {
	MaxPending          int
	MaxPendingPerSender int

	// overshoot is Quirks.BoundsOvershoot, set by the runner.
	overshoot bool
}

// Quirks are documented departures of a store from the strictest reading
// of the contract, which the suite then checks in their documented,
// weaker form.
type Quirks struct {
	// BoundsOvershoot: the store checks the pending bounds before it
	// writes, not in the same atomic step (store/redisstore, whose steps
	// each touch one Redis Cluster slot), so that Appends racing for one
	// queue may together pass a bound by at most their number. The suite
	// then checks that bound plus the number of concurrent Appends, and
	// everything else (nothing stored is lost, history and queue agree)
	// as usual.
	BoundsOvershoot bool
	// CIDPerConversation: a (sender, cid) record is scoped to the
	// conversation (store/redisstore keeps it in the conversation's
	// slot): the same cid in another conversation is another frame.
	// Clients resend a frame to the same conversation, so receipts keep
	// their meaning.
	CIDPerConversation bool
}

// RunPendingBounds checks the promise of store.ErrPendingFull: a pending
// queue at its bound refuses new messages and never drops old ones to make
// room. newStore returns a fresh, empty store opened with the given bounds
// (the suite closes it); the bounds are small, so the suite writes little.
// The subtests form one group, PendingBounds.
func RunPendingBounds(t *testing.T, newStore func(t *testing.T, b Bounds) store.Store) {
	t.Helper()
	RunPendingBoundsQuirks(t, Quirks{}, newStore)
}

// RunPendingBoundsQuirks is RunPendingBounds for a store with the given
// quirks.
func RunPendingBoundsQuirks(t *testing.T, q Quirks, newStore func(t *testing.T, b Bounds) store.Store) {
	t.Helper()
	tests := []struct {
		name   string
		bounds Bounds
		fn     func(t *testing.T, s store.Store, b Bounds)
	}{
		{"FloodDoesNotEraseOthers", Bounds{MaxPending: 20, MaxPendingPerSender: 8}, testFloodDoesNotEraseOthers},
		{"RefusedStoresNothing", Bounds{MaxPending: 10, MaxPendingPerSender: 2}, testRefusedStoresNothing},
		{"AllRecipientsOrNone", Bounds{MaxPending: 10, MaxPendingPerSender: 2}, testAllRecipientsOrNone},
		{"ResendOfStoredCIDWhenFull", Bounds{MaxPending: 3, MaxPendingPerSender: 2}, testResendWhenFull},
		{"TotalBound", Bounds{MaxPending: 10, MaxPendingPerSender: 4}, testTotalBound},
		{"AckFreesRoomForThatSender", Bounds{MaxPending: 100, MaxPendingPerSender: 3}, testAckFreesRoom},
		{"PerRecipient", Bounds{MaxPending: 4, MaxPendingPerSender: 2}, testPerRecipient},
		{"SelfAndOtherDevices", Bounds{MaxPending: 100, MaxPendingPerSender: 3}, testSelfAndOtherDevices},
		{"RoomMessagesNotBounded", Bounds{MaxPending: 2, MaxPendingPerSender: 1}, testRoomMessagesNotBounded},
		{"ConcurrentSenders", Bounds{MaxPending: 30, MaxPendingPerSender: 10}, testConcurrentSenders},
		{"NegativeMeansUnbounded", Bounds{MaxPending: -1, MaxPendingPerSender: -1}, testUnbounded},
	}
	t.Run("PendingBounds", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				b := tc.bounds
				b.overshoot = q.BoundsOvershoot
				s := newStore(t, b)
				require.NotNil(t, s, "newStore returned nil")
				t.Cleanup(func() {
					assert.NoError(t, s.Close(), "Close at the end of the subtest")
				})
				tc.fn(t, s, b)
			})
		}
	})
}

// direct is an Append of the direct message id from from to to, queued for
// to, with a cid.
func direct(from, to, id, cid string) store.AppendRequest {
	return store.AppendRequest{Msg: msg(store.DirectConv(from, to), id, from, to), Pending: []string{to}, CID: cid}
}

// appendFull appends req and requires the refusal ErrPendingFull.
func appendFull(t *testing.T, s store.Store, req store.AppendRequest) {
	t.Helper()
	_, dup, err := s.Append(t.Context(), req)
	require.ErrorIs(t, err, store.ErrPendingFull, "Append %q from %q to %v", req.Msg.ID, req.Msg.From, req.Pending)
	assert.False(t, dup, "a refused Append is no duplicate")
}

// testFloodDoesNotEraseOthers is the case the bounds exist for: alice sent
// bob 5 messages, then mallory floods bob. Every one of alice's stays in
// bob's queue, in order; mallory gets her share and is refused past it.
func testFloodDoesNotEraseOthers(t *testing.T, s store.Store, b Bounds) {
	var alice []store.Message
	for i := 1; i <= 5; i++ {
		alice = append(alice, appendOK(t, s, direct("alice", "bob", fmt.Sprintf("a%d", i), fmt.Sprintf("ca%d", i))))
	}
	var mallory []store.Message
	refused := 0
	for i := 1; i <= 10*b.MaxPending; i++ {
		m, dup, err := s.Append(t.Context(), direct("mallory", "bob", fmt.Sprintf("m%d", i), fmt.Sprintf("cm%d", i)))
		switch {
		case err == nil:
			require.False(t, dup)
			mallory = append(mallory, m)
		case assert.ErrorIs(t, err, store.ErrPendingFull, "message %d of mallory", i):
			refused++
		}
	}
	require.Equal(t, b.MaxPendingPerSender, len(mallory), "mallory's messages stored")
	assert.Equal(t, 10*b.MaxPending-b.MaxPendingPerSender, refused, "mallory's messages refused")
	for i, m := range mallory {
		assert.Equal(t, fmt.Sprintf("m%d", i+1), m.ID, "mallory's first messages are the ones stored")
	}

	q := pending(t, s, "bob")
	assertSameMessages(t, append(append([]store.Message(nil), alice...), mallory...), q, "bob's queue after the flood")
	assertSameMessages(t, alice, history(t, s, store.DirectConv("alice", "bob"), store.Query{}).Items, "history of alice and bob")
	p := history(t, s, store.DirectConv("mallory", "bob"), store.Query{Limit: 1000})
	assertSameMessages(t, mallory, p.Items, "history of mallory and bob: nothing of the refused")
	assert.Equal(t, uint64(len(mallory)), p.Last, "refused messages take no seq")

	// Alice is not locked out by mallory's flood (the queue has room in total).
	appendOK(t, s, direct("alice", "bob", "a6", "ca6"))
}

// testRefusedStoresNothing: a refused message leaves no history, no queue
// entry, no seq and no cid record; once there is room again the same cid
// is stored as a new message.
func testRefusedStoresNothing(t *testing.T, s store.Store, _ Bounds) {
	conv := store.DirectConv("mallory", "bob")
	m1 := appendOK(t, s, direct("mallory", "bob", "m1", "c1"))
	m2 := appendOK(t, s, direct("mallory", "bob", "m2", "c2"))
	appendFull(t, s, direct("mallory", "bob", "m3", "c3"))
	appendFull(t, s, direct("mallory", "bob", "m3-resent", "c3"))

	p := history(t, s, conv, store.Query{})
	assertSameMessages(t, []store.Message{m1, m2}, p.Items, "history")
	assert.Equal(t, uint64(2), p.Last, "no seq was taken")
	assertSameMessages(t, []store.Message{m1, m2}, pending(t, s, "bob"), "pending")

	require.NoError(t, s.Ack(t.Context(), "bob", "m1"))
	got, dup, err := s.Append(t.Context(), direct("mallory", "bob", "m3-again", "c3"))
	require.NoError(t, err, "after an ack there is room")
	assert.False(t, dup, "a refused cid was not recorded")
	assert.Equal(t, "m3-again", got.ID)
	assert.Equal(t, uint64(3), got.Seq, "seqs go on without a gap")
	assert.Equal(t, []string{"m1", "m2", "m3-again"}, idsOf(history(t, s, conv, store.Query{}).Items))
	assert.Equal(t, []string{"m2", "m3-again"}, idsOf(pending(t, s, "bob")))
}

// testAllRecipientsOrNone: a message for two queues is refused when one of
// them is full, and then is in neither.
func testAllRecipientsOrNone(t *testing.T, s store.Store, _ Bounds) {
	appendOK(t, s, direct("mallory", "carol", "c1", ""))
	appendOK(t, s, direct("mallory", "carol", "c2", ""))
	appendFull(t, s, store.AppendRequest{Msg: msg("group", "g1", "mallory", "group"), Pending: []string{"bob", "carol"}, CID: "g1"})
	appendFull(t, s, store.AppendRequest{Msg: msg("group", "g1", "mallory", "group"), Pending: []string{"carol", "bob"}, CID: "g1"})
	assert.Empty(t, pending(t, s, "bob"), "bob's queue had room, yet got nothing")
	assert.Equal(t, []string{"c1", "c2"}, idsOf(pending(t, s, "carol")))
	assert.Empty(t, history(t, s, "group", store.Query{}).Items)

	require.NoError(t, s.Ack(t.Context(), "carol", "c1"))
	m := appendOK(t, s, store.AppendRequest{Msg: msg("group", "g1", "mallory", "group"), Pending: []string{"bob", "carol"}, CID: "g1"})
	assert.Equal(t, uint64(1), m.Seq)
	assert.Equal(t, []string{"g1"}, idsOf(pending(t, s, "bob")))
	assert.Equal(t, []string{"c2", "g1"}, idsOf(pending(t, s, "carol")))
}

// testResendWhenFull: the duplicate check comes before the bounds, so a
// resend of a stored cid gets its first message even when the queue is
// full, in total or for that sender.
func testResendWhenFull(t *testing.T, s store.Store, _ Bounds) {
	first := appendOK(t, s, direct("mallory", "bob", "m1", "c1"))
	appendOK(t, s, direct("mallory", "bob", "m2", "c2"))
	appendFull(t, s, direct("mallory", "bob", "m3", "c3")) // full for mallory
	got, dup, err := s.Append(t.Context(), direct("mallory", "bob", "m1-resent", "c1"))
	require.NoError(t, err, "a resend of a stored cid, queue full for its sender")
	assert.True(t, dup)
	assertSameMessage(t, first, got)

	appendOK(t, s, direct("alice", "bob", "a1", "c1")) // full in total now
	appendFull(t, s, direct("alice", "bob", "a2", "c2"))
	got, dup, err = s.Append(t.Context(), direct("mallory", "bob", "m2-resent", "c2"))
	require.NoError(t, err, "a resend of a stored cid, queue full in total")
	assert.True(t, dup)
	assert.Equal(t, "m2", got.ID)
	assert.Equal(t, []string{"m1", "m2", "a1"}, idsOf(pending(t, s, "bob")), "resends queue nothing")
}

// testTotalBound: senders within their own bound fill the queue; then
// everyone is refused, also a sender who sent nothing yet, until an ack.
// Another user's queue is not affected.
func testTotalBound(t *testing.T, s store.Store, b Bounds) {
	stored := 0
	for _, from := range []string{"s1", "s2"} {
		for i := range b.MaxPendingPerSender {
			appendOK(t, s, direct(from, "bob", fmt.Sprintf("%s-%d", from, i), ""))
			stored++
		}
	}
	for i := 0; stored < b.MaxPending; i++ {
		appendOK(t, s, direct("s3", "bob", fmt.Sprintf("s3-%d", i), ""))
		stored++
	}
	require.Equal(t, b.MaxPending, len(pending(t, s, "bob")))
	appendFull(t, s, direct("s3", "bob", "s3-over", ""))
	appendFull(t, s, direct("s4", "bob", "s4-1", ""))
	appendOK(t, s, direct("s4", "carol", "s4-to-carol", ""))

	require.NoError(t, s.Ack(t.Context(), "bob", "s1-0"))
	appendOK(t, s, direct("s4", "bob", "s4-2", ""))
	appendFull(t, s, direct("s4", "bob", "s4-3", ""))
	q := pending(t, s, "bob")
	assert.Equal(t, b.MaxPending, len(q))
	assert.Equal(t, "s4-2", q[len(q)-1].ID)
	assert.Equal(t, "s1-1", q[0].ID, "nothing was dropped to make room")
}

// testAckFreesRoom: an ack of one of the sender's messages makes room for
// one more from that sender; acks of other senders' messages, of unknown
// ids, or of an id already acked do not.
func testAckFreesRoom(t *testing.T, s store.Store, b Bounds) {
	for i := 1; i <= b.MaxPendingPerSender; i++ {
		appendOK(t, s, direct("mallory", "bob", fmt.Sprintf("m%d", i), fmt.Sprintf("c%d", i)))
	}
	appendFull(t, s, direct("mallory", "bob", "over-1", "over-1"))
	appendOK(t, s, direct("alice", "bob", "a1", ""))
	require.NoError(t, s.Ack(t.Context(), "bob", "a1", "nope"))
	appendFull(t, s, direct("mallory", "bob", "over-2", "over-2"))
	require.NoError(t, s.Ack(t.Context(), "carol", "m1"), "carol acks bob's message")
	appendFull(t, s, direct("mallory", "bob", "over-3", "over-3"))

	// One message acked, twice in one call and again later: room for one.
	require.NoError(t, s.Ack(t.Context(), "bob", "m1", "m1"))
	require.NoError(t, s.Ack(t.Context(), "bob", "m1"))
	appendOK(t, s, direct("mallory", "bob", "after-ack", "after-ack"))
	appendFull(t, s, direct("mallory", "bob", "over-4", "over-4"))

	// Acking everything of mallory's empties her share.
	var all []string
	for _, m := range pending(t, s, "bob") {
		all = append(all, m.ID)
	}
	require.NoError(t, s.Ack(t.Context(), "bob", all...))
	for i := 1; i <= b.MaxPendingPerSender; i++ {
		appendOK(t, s, direct("mallory", "bob", fmt.Sprintf("again-%d", i), ""))
	}
	appendFull(t, s, direct("mallory", "bob", "over-5", ""))
}

// testPerRecipient: a sender's share is per recipient, and each
// recipient's total is its own.
func testPerRecipient(t *testing.T, s store.Store, b Bounds) {
	for _, to := range []string{"bob", "carol"} {
		for i := range b.MaxPendingPerSender {
			appendOK(t, s, direct("mallory", to, fmt.Sprintf("%s-%d", to, i), ""))
		}
		appendFull(t, s, direct("mallory", to, to+"-over", ""))
	}
	for i := range b.MaxPending - b.MaxPendingPerSender {
		appendOK(t, s, direct(fmt.Sprintf("u%d", i), "bob", fmt.Sprintf("u%d", i), ""))
	}
	appendFull(t, s, direct("dave", "bob", "dave-1", ""))
	appendOK(t, s, direct("dave", "carol", "dave-2", ""))
}

// testSelfAndOtherDevices: a message to oneself, or queued for the
// sender's own other devices, is queued like any other and counts toward
// the sender's share of the sender's own queue.
func testSelfAndOtherDevices(t *testing.T, s store.Store, b Bounds) {
	self := appendOK(t, s, store.AppendRequest{Msg: msg(store.DirectConv("alice", "alice"), "note", "alice", "alice"), Pending: []string{"alice"}, CID: "n1"})
	assertSameMessages(t, []store.Message{self}, pending(t, s, "alice"), "a note to self")
	for i := 2; i <= b.MaxPendingPerSender; i++ {
		appendOK(t, s, store.AppendRequest{Msg: msg(store.DirectConv("alice", "bob"), fmt.Sprintf("d%d", i), "alice", "bob"), Pending: []string{"bob", "alice"}})
	}
	assert.Len(t, pending(t, s, "alice"), b.MaxPendingPerSender, "alice's other devices")
	assert.Len(t, pending(t, s, "bob"), b.MaxPendingPerSender-1)
	appendFull(t, s, store.AppendRequest{Msg: msg(store.DirectConv("alice", "alice"), "note2", "alice", "alice"), Pending: []string{"alice"}})
	appendFull(t, s, store.AppendRequest{Msg: msg(store.DirectConv("alice", "bob"), "d-over", "alice", "bob"), Pending: []string{"bob", "alice"}})
	appendOK(t, s, direct("alice", "bob", "to-bob-only", ""))
	require.NoError(t, s.Ack(t.Context(), "alice", "note"))
	appendOK(t, s, store.AppendRequest{Msg: msg(store.DirectConv("alice", "alice"), "note3", "alice", "alice"), Pending: []string{"alice"}})
}

// testRoomMessagesNotBounded: messages with no pending users are never
// refused, however full the sender's or anyone's queue is.
func testRoomMessagesNotBounded(t *testing.T, s store.Store, _ Bounds) {
	appendOK(t, s, direct("mallory", "bob", "m1", ""))
	appendFull(t, s, direct("mallory", "bob", "m2", ""))
	for i := range 5 {
		m := msg(store.RoomConv("lobby"), fmt.Sprintf("r%d", i), "mallory", "lobby")
		m.Cmd = 11
		appendOK(t, s, store.AppendRequest{Msg: m})
	}
	assert.Len(t, history(t, s, store.RoomConv("lobby"), store.Query{}).Items, 5)
}

// testConcurrentSenders: senders racing for one queue never get it past
// either bound, and together fill it exactly.
func testConcurrentSenders(t *testing.T, s store.Store, b Bounds) {
	const senders, perSender, tries = 5, 2, 12 // goroutines per sender, Appends per goroutine
	var stored, refused atomic.Int64
	perFrom := make([]atomic.Int64, senders)
	var wg sync.WaitGroup
	for f := range senders {
		for g := range perSender {
			wg.Go(func() {
				from := fmt.Sprintf("s%d", f)
				for i := range tries {
					_, _, err := s.Append(t.Context(), direct(from, "bob", fmt.Sprintf("%s-%d-%d", from, g, i), fmt.Sprintf("%d-%d", g, i)))
					switch {
					case err == nil:
						stored.Add(1)
						perFrom[f].Add(1)
					case assert.ErrorIs(t, err, store.ErrPendingFull):
						refused.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	want := min(b.MaxPending, senders*min(b.MaxPendingPerSender, perSender*tries))
	assert.Equal(t, int64(senders*perSender*tries), stored.Load()+refused.Load(), "every Append stored or refused")
	if b.overshoot {
		// Racing Appends may each pass the check: at most one extra
		// message per goroutine.
		assert.GreaterOrEqual(t, stored.Load(), int64(want), "messages stored")
		assert.LessOrEqual(t, stored.Load(), int64(want+senders*perSender), "messages stored")
		want = int(stored.Load())
	}
	assert.Equal(t, int64(want), stored.Load(), "messages stored")
	assert.Equal(t, int64(senders*perSender*tries-want), refused.Load(), "messages refused")
	total := 0
	for f := range senders {
		n := perFrom[f].Load()
		if b.overshoot {
			assert.LessOrEqual(t, n, int64(b.MaxPendingPerSender+perSender), "sender s%d", f)
		} else {
			assert.LessOrEqual(t, n, int64(b.MaxPendingPerSender), "sender s%d", f)
		}
		p := history(t, s, store.DirectConv(fmt.Sprintf("s%d", f), "bob"), store.Query{Limit: 1000})
		assert.Equal(t, int(n), len(p.Items), "history of s%d", f)
		assert.Equal(t, uint64(n), p.Last, "seqs of s%d", f)
		total += len(p.Items)
	}
	assert.Equal(t, want, total)
	q := pending(t, s, "bob")
	assert.Equal(t, want, len(q), "bob's queue")
	require.NoError(t, s.Ack(t.Context(), "bob", idsOf(q)...))
	for f := range senders {
		appendOK(t, s, direct(fmt.Sprintf("s%d", f), "bob", fmt.Sprintf("s%d-after", f), ""))
	}
}

// testUnbounded: with both bounds negative nothing is refused.
func testUnbounded(t *testing.T, s store.Store, _ Bounds) {
	const n = 60
	for i := range n {
		appendOK(t, s, direct("mallory", "bob", fmt.Sprintf("m%d", i), ""))
	}
	assert.Len(t, pending(t, s, "bob"), n)
}
