package memstore_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/memstore"
	"github.com/wshub/wshub/store/storetest"
)

func TestStore_Conformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return memstore.New(memstore.Options{}) })
}

func TestStore_PendingPages(t *testing.T) {
	storetest.RunPendingPages(t, func(*testing.T) store.Store { return memstore.New(memstore.Options{}) })
}

// A walk's cursor survives both compactions of the queue between two
// pages: the slide of acknowledged entries off its front, and the rebuild
// after out-of-order acks, with messages returned by an earlier page still
// unacknowledged (as the hub leaves them until they are written).
func TestStore_PendingPageCursorSurvivesCompaction(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		acks func(ids []string) []string // what to ack after the first page
	}{
		{"slide", func(ids []string) []string { return ids[:200] }},
		{"rebuild", func(ids []string) []string {
			var out []string
			for i := 45; i < len(ids); i++ {
				if i%10 != 0 {
					out = append(out, ids[i])
				}
			}
			return out
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := memstore.New(memstore.Options{})
			var ids []string
			for i := range 300 {
				id := fmt.Sprintf("m%03d", i)
				ids = append(ids, id)
				_, _, err := s.Append(ctx, store.AppendRequest{Msg: store.Message{ID: id, Conv: "c", From: "alice", To: "bob"}, Pending: []string{"bob"}})
				require.NoError(t, err)
			}
			first, cursor, err := s.PendingPage(ctx, "bob", "", 40)
			require.NoError(t, err)
			acked := tc.acks(ids)
			require.NoError(t, s.Ack(ctx, "bob", acked...))
			got := first
			for cursor != "" {
				var page []store.Message
				page, cursor, err = s.PendingPage(ctx, "bob", cursor, 40)
				require.NoError(t, err)
				got = append(got, page...)
			}
			var want []string
			for i, id := range ids {
				if i < 40 || !slices.Contains(acked, id) {
					want = append(want, id)
				}
			}
			var gotIDs []string
			for _, m := range got {
				gotIDs = append(gotIDs, m.ID)
			}
			assert.Equal(t, want, gotIDs)
		})
	}
}

func TestStore_PendingBounds(t *testing.T) {
	storetest.RunPendingBounds(t, func(_ *testing.T, b storetest.Bounds) store.Store {
		return memstore.New(memstore.Options{MaxPending: b.MaxPending, MaxPendingPerSender: b.MaxPendingPerSender})
	})
}

// TestStore_ConformanceWithTightBounds runs the suite with bounds just large
// enough for it, so that the trimming code paths and the pending bounds'
// counting run under every check.
func TestStore_ConformanceWithTightBounds(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store {
		return memstore.New(memstore.Options{HistoryLimit: 1600, MaxPending: 1280, MaxPendingPerSender: 160, CIDLimit: 1600})
	})
}

// clock is a settable time source for Options.Now.
type clock struct{ now atomic.Int64 } // Unix nanoseconds

func newClock() *clock {
	c := &clock{}
	c.now.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.now.Load()) }
func (c *clock) Advance(d time.Duration) { c.now.Add(int64(d)) }
func msg(conv, id string) store.Message {
	return store.Message{ID: id, Conv: conv, Cmd: 10, From: "alice", To: "bob", Body: []byte(`{}`)}
}

func appendMsg(t *testing.T, s *memstore.Store, req store.AppendRequest) (store.Message, bool) {
	t.Helper()
	m, dup, err := s.Append(t.Context(), req)
	require.NoError(t, err)
	return m, dup
}

func seqs(ms []store.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func ids(ms []store.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func TestStore_HistoryTrimmedToLimit(t *testing.T) {
	s := memstore.New(memstore.Options{HistoryLimit: 5})
	defer s.Close()
	for i := 1; i <= 8; i++ {
		appendMsg(t, s, store.AppendRequest{Msg: msg("c", fmt.Sprintf("m%d", i)), Pending: []string{"bob"}})
	}
	p, err := s.History(t.Context(), "c", store.Query{Limit: 100})
	require.NoError(t, err)
	assert.Equal(t, []uint64{4, 5, 6, 7, 8}, seqs(p.Items), "the 3 oldest fell off")
	assert.Equal(t, []string{"m4", "m5", "m6", "m7", "m8"}, ids(p.Items))
	assert.Equal(t, uint64(4), p.First, "First moves up")
	assert.Equal(t, uint64(8), p.Last, "Last keeps counting")
	assert.False(t, p.More)

	cases := []struct {
		q    store.Query
		want []uint64
		more bool
	}{
		{store.Query{Since: 1, Limit: 2}, []uint64{4, 5}, true},
		{store.Query{Since: 1}, []uint64{4, 5, 6, 7, 8}, false},
		{store.Query{Before: 6, Limit: 10}, []uint64{4, 5}, false},
		{store.Query{Before: 7, Limit: 2}, []uint64{5, 6}, true},
		{store.Query{Before: 4}, nil, false},
		{store.Query{Before: 2}, nil, false},
		{store.Query{Since: 6, Limit: 1}, []uint64{7}, true},
	}
	for _, tc := range cases {
		p, err := s.History(t.Context(), "c", tc.q)
		require.NoError(t, err)
		got := seqs(p.Items)
		if len(got) == 0 {
			got = nil
		}
		assert.Equal(t, tc.want, got, "%+v", tc.q)
		assert.Equal(t, tc.more, p.More, "%+v", tc.q)
		assert.Equal(t, uint64(4), p.First, "%+v", tc.q)
	}

	// Pending is bounded separately: all 8 are still queued.
	q, err := s.Pending(t.Context(), "bob")
	require.NoError(t, err)
	assert.Len(t, q, 8)

	// The ring keeps working across many wraps.
	for i := 9; i <= 23; i++ {
		appendMsg(t, s, store.AppendRequest{Msg: msg("c", fmt.Sprintf("m%d", i))})
	}
	p, err = s.History(t.Context(), "c", store.Query{})
	require.NoError(t, err)
	assert.Equal(t, []uint64{19, 20, 21, 22, 23}, seqs(p.Items))
	assert.Equal(t, []string{"m19", "m20", "m21", "m22", "m23"}, ids(p.Items))
}

func TestStore_DefaultHistoryLimit(t *testing.T) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	for i := 1; i <= memstore.DefaultHistoryLimit+1; i++ {
		appendMsg(t, s, store.AppendRequest{Msg: msg("c", fmt.Sprintf("m%d", i))})
	}
	p, err := s.History(t.Context(), "c", store.Query{Limit: 1})
	require.NoError(t, err)
	assert.Equal(t, uint64(2), p.First)
	assert.Equal(t, uint64(memstore.DefaultHistoryLimit+1), p.Last)
	p, err = s.History(t.Context(), "c", store.Query{Since: 1, Limit: 1})
	require.NoError(t, err)
	assert.Equal(t, []string{"m2"}, ids(p.Items))
}

// TestStore_PendingKeepsMessagesPastHistory: a queued message stays in its
// queue after the history bound dropped it, and is refused, not dropped,
// when the queue is full.
func TestStore_PendingKeepsMessagesPastHistory(t *testing.T) {
	s := memstore.New(memstore.Options{HistoryLimit: 2, MaxPending: 3})
	defer s.Close()
	add := func(id string) error {
		_, _, err := s.Append(t.Context(), store.AppendRequest{Msg: msg("c", id), Pending: []string{"bob", "carol"}})
		return err
	}
	pendingIDs := func(user string) []string {
		q, err := s.Pending(t.Context(), user)
		require.NoError(t, err)
		return ids(q)
	}
	for i := 1; i <= 3; i++ {
		require.NoError(t, add(fmt.Sprintf("m%d", i)))
	}
	require.ErrorIs(t, add("m4"), store.ErrPendingFull)
	assert.Equal(t, []string{"m1", "m2", "m3"}, pendingIDs("bob"), "nothing was dropped")
	p, err := s.History(t.Context(), "c", store.Query{})
	require.NoError(t, err)
	assert.Equal(t, []string{"m2", "m3"}, ids(p.Items), "history keeps its own bound")

	// An ack by one recipient is not enough: carol's queue is full too.
	require.NoError(t, s.Ack(t.Context(), "bob", "m1"))
	require.ErrorIs(t, add("m4"), store.ErrPendingFull)
	require.NoError(t, s.Ack(t.Context(), "carol", "m2"))
	require.NoError(t, add("m4"))
	assert.Equal(t, []string{"m2", "m3", "m4"}, pendingIDs("bob"))
	assert.Equal(t, []string{"m1", "m3", "m4"}, pendingIDs("carol"), "m1 is queued after history dropped it")
}

// TestStore_PendingAckManyKeepsOrder acks in a scattered order through the
// compaction thresholds and checks the queue against a plain model.
func TestStore_PendingAckManyKeepsOrder(t *testing.T) {
	s := memstore.New(memstore.Options{MaxPending: -1, MaxPendingPerSender: -1})
	defer s.Close()
	var model []string
	for round := range 4 {
		for i := range 300 {
			id := fmt.Sprintf("r%d-m%d", round, i)
			appendMsg(t, s, store.AppendRequest{Msg: msg("c", id), Pending: []string{"bob"}})
			model = append(model, id)
		}
		// Ack every third live message, then a block at the front.
		var acks []string
		var keep []string
		for i, id := range model {
			if i%3 == 1 || i < 40 {
				acks = append(acks, id)
			} else {
				keep = append(keep, id)
			}
		}
		require.NoError(t, s.Ack(t.Context(), "bob", acks...))
		model = keep
		q, err := s.Pending(t.Context(), "bob")
		require.NoError(t, err)
		require.Equal(t, model, ids(q), "round %d", round)
	}
	require.NoError(t, s.Ack(t.Context(), "bob", model...))
	q, err := s.Pending(t.Context(), "bob")
	require.NoError(t, err)
	assert.Empty(t, q)
}

func TestStore_CIDEvictedBeyondLimit(t *testing.T) {
	s := memstore.New(memstore.Options{CIDLimit: 3})
	defer s.Close()
	send := func(id, cid string) (store.Message, bool) {
		return appendMsg(t, s, store.AppendRequest{Msg: msg("c", id), CID: cid})
	}
	for i := 1; i <= 4; i++ {
		_, dup := send(fmt.Sprintf("m%d", i), fmt.Sprintf("c%d", i))
		require.False(t, dup)
	}
	// c1 was the oldest of 4 records with room for 3.
	m, dup := send("m1-again", "c4")
	assert.True(t, dup, "c4 is retained")
	assert.Equal(t, "m4", m.ID)
	m, dup = send("m1-again", "c1")
	assert.False(t, dup, "c1 was evicted, so its resend is stored anew")
	assert.Equal(t, uint64(5), m.Seq)
	// Storing c1 again evicted c2, the oldest left.
	_, dup = send("m2-again", "c2")
	assert.False(t, dup, "c2 was evicted by the new c1")
}

func TestStore_CIDExpiresAfterTTL(t *testing.T) {
	for _, tc := range []struct {
		name string
		ttl  time.Duration // Options.CIDTTL
		want time.Duration // retention in effect
	}{
		{"default", 0, memstore.DefaultCIDTTL},
		{"one minute", time.Minute, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			s := memstore.New(memstore.Options{CIDTTL: tc.ttl, Now: clk.Now})
			defer s.Close()
			first, _ := appendMsg(t, s, store.AppendRequest{Msg: msg("c", "m1"), CID: "c1"})

			clk.Advance(tc.want - time.Second)
			m, dup := appendMsg(t, s, store.AppendRequest{Msg: msg("c", "m2"), CID: "c1"})
			assert.True(t, dup, "a second before the ttl")
			assert.Equal(t, first, m)

			clk.Advance(time.Second)
			m, dup = appendMsg(t, s, store.AppendRequest{Msg: msg("c", "m3"), CID: "c1"})
			assert.False(t, dup, "at the ttl the record is gone")
			assert.Equal(t, uint64(2), m.Seq)

			// The new record has its own ttl.
			clk.Advance(tc.want - time.Second)
			m, dup = appendMsg(t, s, store.AppendRequest{Msg: msg("c", "m4"), CID: "c1"})
			assert.True(t, dup)
			assert.Equal(t, "m3", m.ID)
		})
	}
}

// TestStore_CIDLimitSharded fills a store whose records span several shards
// well past its limit: recent records are kept, the oldest are gone.
func TestStore_CIDLimitSharded(t *testing.T) {
	const limit = 8192 // 8 shards of 1024
	s := memstore.New(memstore.Options{CIDLimit: limit})
	defer s.Close()
	const n = 3 * limit
	for i := range n {
		appendMsg(t, s, store.AppendRequest{Msg: msg(fmt.Sprintf("c%d", i%16), fmt.Sprintf("m%d", i)), CID: fmt.Sprintf("cid%d", i)})
	}
	dups := func(from, to int) int {
		k := 0
		for i := from; i < to; i++ {
			if _, dup := appendMsg(t, s, store.AppendRequest{Msg: msg("probe", fmt.Sprintf("p%d", i)), CID: fmt.Sprintf("cid%d", i)}); dup {
				k++
			}
		}
		return k
	}
	// Probe the newest first: a probe that is not a duplicate adds a record.
	assert.Equal(t, limit/2, dups(n-limit/2, n), "the newest half-limit are all retained")
	assert.Equal(t, 0, dups(0, limit), "the oldest limit are all gone")
}

func TestStore_EpochIsPerInstance(t *testing.T) {
	a, b := memstore.New(memstore.Options{}), memstore.New(memstore.Options{})
	defer a.Close()
	defer b.Close()
	pa, err := a.History(t.Context(), "c", store.Query{})
	require.NoError(t, err)
	pb, err := b.History(t.Context(), "c", store.Query{})
	require.NoError(t, err)
	assert.NotEmpty(t, pa.Epoch)
	assert.NotEqual(t, pa.Epoch, pb.Epoch, "a new store is a new epoch")
	assert.Equal(t, a.Epoch(), pa.Epoch)
}

func TestStore_RejectsEmptyIDs(t *testing.T) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	ctx := t.Context()
	_, err := s.Pending(ctx, "")
	assert.ErrorIs(t, err, store.ErrInvalid, "Pending")
	assert.ErrorIs(t, s.Ack(ctx, "", "m1"), store.ErrInvalid, "Ack")
	assert.ErrorIs(t, s.Join(ctx, "", "u"), store.ErrInvalid, "Join without room")
	assert.ErrorIs(t, s.Join(ctx, "r", ""), store.ErrInvalid, "Join without user")
	assert.ErrorIs(t, s.Leave(ctx, "", "u"), store.ErrInvalid, "Leave")
	_, err = s.Rooms(ctx, "")
	assert.ErrorIs(t, err, store.ErrInvalid, "Rooms")
	_, err = s.Members(ctx, "")
	assert.ErrorIs(t, err, store.ErrInvalid, "Members")
}

// TestStore_ListedTwiceQueuedOnce: a user listed twice in Pending (say, a
// message to oneself) is queued once.
func TestStore_ListedTwiceQueuedOnce(t *testing.T) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	appendMsg(t, s, store.AppendRequest{Msg: msg("c", "m1"), Pending: []string{"bob", "bob"}})
	q, err := s.Pending(t.Context(), "bob")
	require.NoError(t, err)
	assert.Equal(t, []string{"m1"}, ids(q))
}

// TestStore_ConcurrentTrimming appends, reads and acks concurrently with
// small bounds, so the race detector sees history trimming, the pending
// bounds and compaction; afterwards the bounds' counts match the queue.
func TestStore_ConcurrentTrimming(t *testing.T) {
	const maxPending, perSender = 40, 15
	s := memstore.New(memstore.Options{HistoryLimit: 50, MaxPending: maxPending, MaxPendingPerSender: perSender, CIDLimit: 30})
	defer s.Close()
	var stored atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 300 {
				_, _, err := s.Append(t.Context(), store.AppendRequest{
					Msg:     store.Message{ID: fmt.Sprintf("w%d-%d", w, i), Conv: fmt.Sprintf("c%d", i%2), From: fmt.Sprintf("u%d", w)},
					Pending: []string{"bob"},
					CID:     fmt.Sprintf("%d", i),
				})
				if err == nil {
					stored.Add(1)
				} else {
					assert.ErrorIs(t, err, store.ErrPendingFull)
				}
			}
		})
	}
	wg.Go(func() {
		for range 300 {
			q, err := s.Pending(t.Context(), "bob")
			assert.NoError(t, err)
			if len(q) > 0 {
				assert.NoError(t, s.Ack(t.Context(), "bob", q[0].ID, q[len(q)-1].ID))
			}
			_, err = s.History(t.Context(), "c0", store.Query{Since: 100})
			assert.NoError(t, err)
		}
	})
	wg.Wait()
	var last uint64
	for _, conv := range []string{"c0", "c1"} {
		p, err := s.History(t.Context(), conv, store.Query{Limit: 100})
		require.NoError(t, err)
		last += p.Last
		assert.LessOrEqual(t, len(p.Items), 50)
	}
	assert.Equal(t, uint64(stored.Load()), last, "a seq for every stored message, none for a refused one")
	q, err := s.Pending(t.Context(), "bob")
	require.NoError(t, err)
	assert.LessOrEqual(t, len(q), maxPending)
	from := map[string]int{}
	for _, m := range q {
		from[m.From]++
	}
	for u, n := range from {
		assert.LessOrEqual(t, n, perSender, "messages from %s", u)
	}

	// Once everything is acked, every sender has its whole share again.
	require.NoError(t, s.Ack(t.Context(), "bob", ids(q)...))
	for w := range 2 {
		for i := range perSender {
			_, _, err := s.Append(t.Context(), store.AppendRequest{
				Msg:     store.Message{ID: fmt.Sprintf("after-w%d-%d", w, i), Conv: "c2", From: fmt.Sprintf("u%d", w)},
				Pending: []string{"bob"},
			})
			require.NoError(t, err, "u%d, message %d after the acks", w, i)
		}
	}
}

// TestStore_PendingBoundsAgainstModel appends from a few senders and acks
// at random, and checks every decision and the queue against a plain
// model: the per-sender counts start when a queue reaches the bound and
// stop when it falls below half, which must never show.
func TestStore_PendingBoundsAgainstModel(t *testing.T) {
	const maxPending, perSender = 10, 4
	s := memstore.New(memstore.Options{MaxPending: maxPending, MaxPendingPerSender: perSender})
	defer s.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	var model []store.Message // bob's queue
	for i := range 3000 {
		if rng.IntN(3) == 0 && len(model) > 0 {
			// Ack a random message, sometimes with an unknown id or twice.
			j := rng.IntN(len(model))
			require.NoError(t, s.Ack(t.Context(), "bob", model[j].ID, "unknown", model[j].ID))
			model = append(model[:j], model[j+1:]...)
			continue
		}
		from := []string{"alice", "carol", "dave"}[rng.IntN(3)]
		m := store.Message{ID: fmt.Sprint("m", i), Conv: "c-" + from, From: from, To: "bob"}
		n := 0
		for _, q := range model {
			if q.From == from {
				n++
			}
		}
		_, _, err := s.Append(t.Context(), store.AppendRequest{Msg: m, Pending: []string{"bob"}})
		if len(model) >= maxPending || n >= perSender {
			require.ErrorIs(t, err, store.ErrPendingFull, "step %d: %d queued, %d from %s", i, len(model), n, from)
			continue
		}
		require.NoError(t, err, "step %d: %d queued, %d from %s", i, len(model), n, from)
		model = append(model, m)
	}
	q, err := s.Pending(t.Context(), "bob")
	require.NoError(t, err)
	assert.Equal(t, ids(model), ids(q))
}
