// Package storetest is the conformance suite of store.Store: every
// implementation runs it from its own tests, and so can a third party's.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			return mystore.New(...)
//		})
//	}
//
// Run checks the promises of the store.Store doc comments that hold for any
// implementation; RunPendingBounds checks that a pending queue at its
// bounds refuses new messages (store.ErrPendingFull) instead of dropping
// old ones, with small bounds the implementation is opened with;
// RunDurable checks that what a store acknowledged survives Close and
// reopen. Other bounds and retention are each implementation's own and
// are tested by its own tests.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
)

// test is one conformance check, run on a fresh store.
type test struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

// Run runs the conformance suite; newStore returns a fresh, empty store for
// each subtest (the suite closes it). Subtests are grouped by concern (Seq,
// Append, CID, History, Pending, Membership, Context, Close, Keys), so one
// group can be selected with go test -run, e.g. -run 'TestX/CID'.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	RunQuirks(t, Quirks{}, newStore)
}

// RunQuirks is Run for a store with the given quirks: with
// CIDPerConversation, the case DuplicateAcrossConversations is replaced
// by CIDScopedToConversation.
func RunQuirks(t *testing.T, q Quirks, newStore func(t *testing.T) store.Store) {
	t.Helper()
	groups := []struct {
		name  string
		tests []test
	}{
		{"Seq", seqTests},
		{"Append", appendTests},
		{"CID", cidTests},
		{"History", historyTests},
		{"Pending", pendingTests},
		{"Membership", membershipTests},
		{"Context", contextTests},
		{"Close", closeTests},
		{"Keys", keyTests},
		{"Inbox", inboxTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				if q.CIDPerConversation && tc.name == "DuplicateAcrossConversations" {
					tc = cidScopedTest
				}
				t.Run(tc.name, func(t *testing.T) {
					s := newStore(t)
					require.NotNil(t, s, "newStore returned nil")
					t.Cleanup(func() {
						assert.NoError(t, s.Close(), "Close at the end of the subtest")
					})
					tc.fn(t, s)
				})
			}
		})
	}
}

// cidScopedTest replaces DuplicateAcrossConversations for a store whose
// cid records are scoped to (sender, conversation) (Quirks): the same cid
// in another conversation is another frame, and in the same one still a
// duplicate.
var cidScopedTest = test{"CIDScopedToConversation", func(t *testing.T, s store.Store) {
	first := appendOK(t, s, store.AppendRequest{Msg: msg("x", "m1", "alice", "bob"), CID: "c1"})
	other := appendOK(t, s, store.AppendRequest{Msg: msg("y", "m2", "alice", "carol"), CID: "c1"})
	assert.Equal(t, uint64(1), other.Seq)
	got, dup, err := s.Append(t.Context(), store.AppendRequest{Msg: msg("x", "m3", "alice", "bob"), CID: "c1"})
	require.NoError(t, err)
	assert.True(t, dup)
	assertSameMessage(t, first, got)
	got, dup, err = s.Append(t.Context(), store.AppendRequest{Msg: msg("y", "m4", "alice", "carol"), CID: "c1"})
	require.NoError(t, err)
	assert.True(t, dup)
	assertSameMessage(t, other, got)
	assert.Equal(t, []string{"m1"}, idsOf(history(t, s, "x", store.Query{}).Items))
	assert.Equal(t, []string{"m2"}, idsOf(history(t, s, "y", store.Query{}).Items))
}}

var seqTests = []test{
	{"StartsAtOneAndIncrementsByOne", func(t *testing.T, s store.Store) {
		ms := appendN(t, s, "c", "m", 5)
		assert.Equal(t, seqRange(1, 5), seqsOf(ms))
		p := history(t, s, "c", store.Query{})
		assert.Equal(t, seqRange(1, 5), seqsOf(p.Items))
		assert.Equal(t, uint64(1), p.First)
		assert.Equal(t, uint64(5), p.Last)
	}},
	{"IndependentConversations", func(t *testing.T, s store.Store) {
		convs := []string{store.RoomConv("x"), store.RoomConv("y"), store.DirectConv("alice", "bob")}
		for i := 1; i <= 4; i++ {
			for _, conv := range convs {
				m := appendOK(t, s, store.AppendRequest{Msg: msg(conv, fmt.Sprintf("%s-%d", conv, i), "alice", "bob")})
				assert.Equal(t, uint64(i), m.Seq, "seq of message %d in %q", i, conv)
			}
		}
		for _, conv := range convs {
			p := history(t, s, conv, store.Query{})
			assert.Equal(t, seqRange(1, 4), seqsOf(p.Items), "history of %q", conv)
			for _, m := range p.Items {
				assert.Equal(t, conv, m.Conv, "message %q in history of %q", m.ID, conv)
			}
		}
	}},
	{"ConcurrentAppendsToOneConversation", testConcurrentOneConversation},
	{"ConcurrentAppendsToManyConversations", testConcurrentManyConversations},
	{"ConcurrentMixedOperations", testConcurrentMixed},
}

// testConcurrentOneConversation: 32 goroutines x 50 Appends to one
// conversation get exactly the seqs 1..1600, and each goroutine sees its own
// seqs increase.
func testConcurrentOneConversation(t *testing.T, s store.Store) {
	const writers, each = 32, 50
	conv := store.RoomConv("busy")
	got := make([][]store.Message, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				m, dup, err := s.Append(t.Context(), store.AppendRequest{
					Msg: msg(conv, fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("user%d", w), "busy"),
					CID: fmt.Sprintf("cid-%d", i),
				})
				if !assert.NoError(t, err) || !assert.False(t, dup) {
					return
				}
				got[w] = append(got[w], m)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	idBySeq := make(map[uint64]string)
	var all []uint64
	for w, ms := range got {
		assert.True(t, slices.IsSorted(seqsOf(ms)), "writer %d got seqs out of order: %v", w, seqsOf(ms))
		for _, m := range ms {
			all = append(all, m.Seq)
			idBySeq[m.Seq] = m.ID
		}
	}
	slices.Sort(all)
	require.Equal(t, seqRange(1, writers*each), all, "seqs of %d concurrent appends", writers*each)

	// History agrees with what Append returned, read forward in pages.
	var since uint64
	for {
		p := history(t, s, conv, store.Query{Since: since, Limit: 500})
		for _, m := range p.Items {
			assert.Equal(t, idBySeq[m.Seq], m.ID, "message at seq %d", m.Seq)
		}
		if len(p.Items) == 0 || !p.More {
			break
		}
		since = p.Items[len(p.Items)-1].Seq
	}
	p := history(t, s, conv, store.Query{Limit: 1})
	assert.Equal(t, uint64(writers*each), p.Last)
}

// testConcurrentManyConversations: goroutines writing round-robin to
// several conversations, each message also queued for its conversation's
// reader and for one user who reads everything. Every conversation gets
// 1..n, and every pending queue holds each conversation's messages in seq
// order (Append is atomic, so enqueue order follows seq order).
func testConcurrentManyConversations(t *testing.T, s store.Store) {
	const writers, convs, each = 8, 8, 20 // each writer sends `each` to every conv
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				for c := range convs {
					_, _, err := s.Append(t.Context(), store.AppendRequest{
						Msg:     msg(fmt.Sprintf("conv-%d", c), fmt.Sprintf("w%d-c%d-%d", w, c, i), fmt.Sprintf("w%d", w), fmt.Sprintf("reader-%d", c)),
						Pending: []string{fmt.Sprintf("reader-%d", c), "everyone"},
					})
					if !assert.NoError(t, err) {
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	const perConv = writers * each
	for c := range convs {
		conv := fmt.Sprintf("conv-%d", c)
		p := history(t, s, conv, store.Query{Limit: perConv + 1})
		assert.Equal(t, seqRange(1, perConv), seqsOf(p.Items), "history of %q", conv)
		q := pending(t, s, fmt.Sprintf("reader-%d", c))
		assert.Equal(t, seqRange(1, perConv), seqsOf(q), "pending of reader-%d", c)
		assert.Equal(t, idsOf(p.Items), idsOf(q), "pending of reader-%d vs history", c)
	}
	last := make(map[string]uint64)
	q := pending(t, s, "everyone")
	assert.Len(t, q, convs*perConv)
	for _, m := range q {
		assert.Equal(t, last[m.Conv]+1, m.Seq, "pending of everyone: %q after seq %d of %q", m.ID, last[m.Conv], m.Conv)
		last[m.Conv] = m.Seq
	}
}

// testConcurrentMixed: Appends, Pending+Ack and Join/Leave at the same time;
// every message is delivered exactly once through Pending/Ack, and the
// membership ends as the last operations left it.
func testConcurrentMixed(t *testing.T, s store.Store) {
	const n = 100
	conv := store.DirectConv("alice", "bob")
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			room := fmt.Sprintf("room-%d", i%4)
			if !assert.NoError(t, s.Join(t.Context(), room, "bob")) ||
				!assert.NoError(t, s.Leave(t.Context(), room, "bob")) ||
				!assert.NoError(t, s.Join(t.Context(), room, "carol")) {
				return
			}
			if _, err := s.Members(t.Context(), room); !assert.NoError(t, err) {
				return
			}
		}
	})
	writerDone := make(chan struct{}) // closed by the writer goroutine
	wg.Go(func() {
		defer close(writerDone)
		for i := range n {
			if _, _, err := s.Append(t.Context(), store.AppendRequest{
				Msg: msg(conv, fmt.Sprintf("m-%d", i), "alice", "bob"), Pending: []string{"bob"},
			}); !assert.NoError(t, err) {
				return
			}
		}
	})
	// Deliver like a hub: read the queue, ack what was read, until the
	// writer is done and a read after that found the rest.
	seen := make(map[string]int)
	for done := false; !done; {
		select {
		case <-writerDone:
			done = true
		default:
		}
		q, err := s.Pending(t.Context(), "bob")
		if !assert.NoError(t, err) {
			break
		}
		ids := idsOf(q)
		for _, id := range ids {
			seen[id]++
		}
		if !assert.NoError(t, s.Ack(t.Context(), "bob", ids...)) {
			break
		}
		if len(q) == 0 && !done {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	assert.Len(t, seen, n)
	for id, k := range seen {
		assert.Equal(t, 1, k, "message %q returned by Pending after it was acked", id)
	}
	assert.Empty(t, pending(t, s, "bob"))
	assert.Empty(t, rooms(t, s, "bob"))
	assert.ElementsMatch(t, []string{"room-0", "room-1", "room-2", "room-3"}, rooms(t, s, "carol"))
}

var appendTests = []test{
	{"KeepsEveryField", testKeepsEveryField},
	{"CopiesBody", func(t *testing.T, s store.Store) {
		body := []byte(`{"content":"original"}`)
		m := msg("c", "m1", "alice", "bob")
		m.Body = body
		appendOK(t, s, store.AppendRequest{Msg: m, Pending: []string{"bob"}})
		copy(body, `{"content":"CHANGED!"}`) // the caller reuses its buffer
		p := history(t, s, "c", store.Query{})
		require.Len(t, p.Items, 1)
		assert.Equal(t, `{"content":"original"}`, string(p.Items[0].Body), "history")
		q := pending(t, s, "bob")
		require.Len(t, q, 1)
		assert.Equal(t, `{"content":"original"}`, string(q[0].Body), "pending")
	}},
	{"RejectsInvalid", func(t *testing.T, s store.Store) {
		cases := []struct {
			name string
			edit func(*store.Message)
		}{
			{"empty conversation", func(m *store.Message) { m.Conv = "" }},
			{"empty sender", func(m *store.Message) { m.From = "" }},
			{"empty message id", func(m *store.Message) { m.ID = "" }},
		}
		for _, tc := range cases {
			m := msg("c", "m1", "alice", "bob")
			tc.edit(&m)
			_, _, err := s.Append(t.Context(), store.AppendRequest{Msg: m, Pending: []string{"bob"}, CID: "x"})
			assert.ErrorIs(t, err, store.ErrInvalid, tc.name)
		}
		assert.Empty(t, history(t, s, "c", store.Query{}).Items, "history after invalid appends")
		assert.Empty(t, pending(t, s, "bob"), "pending after invalid appends")
		// Nothing was recorded for the cid either.
		appendOK(t, s, store.AppendRequest{Msg: msg("c", "m1", "alice", "bob"), CID: "x"})
	}},
	{"EnqueuesPendingForListedUsers", func(t *testing.T, s store.Store) {
		conv := store.DirectConv("alice", "bob")
		m := appendOK(t, s, store.AppendRequest{Msg: msg(conv, "m1", "alice", "bob"), Pending: []string{"bob", "carol"}})
		for _, u := range []string{"bob", "carol"} {
			q := pending(t, s, u)
			if assert.Len(t, q, 1, "pending of %s", u) {
				assertSameMessage(t, m, q[0], "pending of %s", u)
			}
		}
		assert.Empty(t, pending(t, s, "alice"), "the sender was not listed")
		assert.Empty(t, pending(t, s, "dave"))
	}},
	{"RoomMessageQueuesNothing", func(t *testing.T, s store.Store) {
		m := msg(store.RoomConv("lobby"), "m1", "alice", "lobby")
		m.Cmd = 11
		require.NoError(t, s.Join(t.Context(), "lobby", "bob"))
		appendOK(t, s, store.AppendRequest{Msg: m})
		assert.Empty(t, pending(t, s, "bob"))
		assert.Empty(t, pending(t, s, "alice"))
		assert.Empty(t, pending(t, s, "lobby"))
		assert.Len(t, history(t, s, store.RoomConv("lobby"), store.Query{}).Items, 1)
	}},
}

// testKeepsEveryField: Append returns req.Msg with its Seq, and History and
// Pending return the same message, for messages of every shape.
func testKeepsEveryField(t *testing.T, s store.Store) {
	large := make([]byte, 64<<10)
	for i := range large {
		large[i] = 'a' + byte(i%26)
	}
	cases := []struct {
		name string
		msg  store.Message
	}{
		{"direct", msg(store.DirectConv("alice", "bob"), "0190a8f2-7b1c-7d4e-8f00-000000000001", "alice", "bob")},
		{"room", store.Message{ID: "r1", Conv: store.RoomConv("lobby"), TS: baseTS + 1, Cmd: 11, From: "alice", To: "lobby", Body: []byte(`{"media":1,"content":"hi"}`)}},
		{"application cmd", store.Message{ID: "a1", Conv: "app", TS: baseTS + 2, Cmd: 150, From: "alice", To: "bob", Body: []byte(`{"amount":12.5}`)}},
		{"nil body", store.Message{ID: "n1", Conv: "nil", TS: baseTS, Cmd: 10, From: "alice", To: "bob"}},
		{"zero ts and cmd", store.Message{ID: "z1", Conv: "zero", From: "alice", To: "bob", Body: []byte(`{}`)}},
		{"unicode", store.Message{ID: "ü1", Conv: "ünï cødé 🎉", TS: baseTS, Cmd: 10, From: "ålice", To: "bøb", Body: []byte(`{"content":"héllo wörld 🎉 \"quoted\" \\ \n"}`)}},
		{"opaque bytes", store.Message{ID: "b1", Conv: "bytes", TS: baseTS, Cmd: 10, From: "alice", To: "bob", Body: []byte{0, 1, 2, 0xff, 0xfe, '\n', '"', 0}}},
		{"large body", store.Message{ID: "l1", Conv: "large", TS: baseTS, Cmd: 10, From: "alice", To: "bob", Body: large}},
		{"seq given is replaced", store.Message{ID: "s1", Conv: "seq", Seq: 99, TS: baseTS, Cmd: 10, From: "alice", To: "bob", Body: []byte(`{}`)}},
	}
	for _, tc := range cases {
		want := withSeq(tc.msg, 1)
		got := appendOK(t, s, store.AppendRequest{Msg: tc.msg, Pending: []string{tc.msg.To}})
		assertSameMessage(t, want, got, "%s: returned by Append", tc.name)
		p := history(t, s, tc.msg.Conv, store.Query{})
		if assert.Len(t, p.Items, 1, tc.name) {
			assertSameMessage(t, want, p.Items[0], "%s: returned by History", tc.name)
		}
		q := pending(t, s, tc.msg.To)
		if assert.NotEmpty(t, q, tc.name) {
			assertSameMessage(t, want, q[len(q)-1], "%s: returned by Pending", tc.name)
		}
	}
}

var cidTests = []test{
	{"DuplicateReturnsFirstAndWritesNothing", func(t *testing.T, s store.Store) {
		conv := store.DirectConv("alice", "bob")
		first := appendOK(t, s, store.AppendRequest{Msg: msg(conv, "m1", "alice", "bob"), Pending: []string{"bob"}, CID: "c1"})
		resend := msg(conv, "m2", "alice", "bob") // the hub gives the resend a new id
		resend.Body = []byte(`{"content":"resent"}`)
		got, dup, err := s.Append(t.Context(), store.AppendRequest{Msg: resend, Pending: []string{"bob", "carol"}, CID: "c1"})
		require.NoError(t, err)
		assert.True(t, dup, "same (sender, cid) is a duplicate")
		assertSameMessage(t, first, got, "a duplicate returns the first message")

		p := history(t, s, conv, store.Query{})
		assert.Equal(t, []string{"m1"}, idsOf(p.Items), "history")
		assert.Equal(t, uint64(1), p.Last, "a duplicate takes no seq")
		assert.Equal(t, []string{"m1"}, idsOf(pending(t, s, "bob")), "pending of bob")
		assert.Empty(t, pending(t, s, "carol"), "pending of carol")

		next := appendOK(t, s, store.AppendRequest{Msg: msg(conv, "m3", "alice", "bob"), CID: "c2"})
		assert.Equal(t, uint64(2), next.Seq)
	}},
	{"OtherSenderIsNotDuplicate", func(t *testing.T, s store.Store) {
		conv := store.DirectConv("alice", "bob")
		a := appendOK(t, s, store.AppendRequest{Msg: msg(conv, "m1", "alice", "bob"), CID: "same"})
		b := appendOK(t, s, store.AppendRequest{Msg: msg(conv, "m2", "bob", "alice"), CID: "same"})
		assert.Equal(t, []uint64{1, 2}, []uint64{a.Seq, b.Seq})
		assert.Equal(t, []string{"m1", "m2"}, idsOf(history(t, s, conv, store.Query{}).Items))
	}},
	{"EmptyCIDIsNeverDuplicate", func(t *testing.T, s store.Store) {
		appendN(t, s, "c", "m", 3) // appendN sends no cid and requires dup false
		assert.Len(t, history(t, s, "c", store.Query{}).Items, 3)
	}},
	{"DuplicateAcrossConversations", func(t *testing.T, s store.Store) {
		first := appendOK(t, s, store.AppendRequest{Msg: msg("x", "m1", "alice", "bob"), CID: "c1"})
		got, dup, err := s.Append(t.Context(), store.AppendRequest{Msg: msg("y", "m2", "alice", "carol"), CID: "c1"})
		require.NoError(t, err)
		assert.True(t, dup, "(sender, cid) identifies the frame whatever its conversation")
		assertSameMessage(t, first, got)
		assert.Empty(t, history(t, s, "y", store.Query{}).Items)
	}},
	{"DuplicateAfterAck", func(t *testing.T, s store.Store) {
		first := appendOK(t, s, store.AppendRequest{Msg: msg("c", "m1", "alice", "bob"), Pending: []string{"bob"}, CID: "c1"})
		require.NoError(t, s.Ack(t.Context(), "bob", "m1"))
		got, dup, err := s.Append(t.Context(), store.AppendRequest{Msg: msg("c", "m2", "alice", "bob"), Pending: []string{"bob"}, CID: "c1"})
		require.NoError(t, err)
		assert.True(t, dup)
		assertSameMessage(t, first, got)
		assert.Empty(t, pending(t, s, "bob"), "a duplicate is not queued again")
	}},
	{"ConcurrentDuplicates", func(t *testing.T, s store.Store) {
		const n = 16
		type result struct {
			m   store.Message
			dup bool
		}
		results := make([]result, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				m, dup, err := s.Append(t.Context(), store.AppendRequest{
					Msg: msg("c", fmt.Sprintf("m%d", i), "alice", "bob"), Pending: []string{"bob"}, CID: "c1",
				})
				assert.NoError(t, err)
				results[i] = result{m, dup}
			})
		}
		wg.Wait()
		firsts := 0
		for _, r := range results {
			if !r.dup {
				firsts++
			}
		}
		require.Equal(t, 1, firsts, "exactly one of %d concurrent appends with one cid is stored", n)
		for _, r := range results {
			assert.Equal(t, results[0].m.ID, r.m.ID)
			assert.Equal(t, uint64(1), r.m.Seq)
		}
		assert.Len(t, history(t, s, "c", store.Query{}).Items, 1)
		assert.Len(t, pending(t, s, "bob"), 1)
	}},
}

var historyTests = []test{
	{"Windows", testHistoryWindows},
	{"DefaultLimit", func(t *testing.T, s store.Store) {
		const n = store.DefaultLimit + 10
		appendN(t, s, "c", "m", n)
		for _, limit := range []int{0, -1} {
			p := history(t, s, "c", store.Query{Limit: limit})
			assert.Equal(t, seqRange(n-store.DefaultLimit+1, n), seqsOf(p.Items), "backward, limit %d", limit)
			assert.True(t, p.More, "backward, limit %d", limit)
			p = history(t, s, "c", store.Query{Since: 5, Limit: limit})
			assert.Equal(t, seqRange(6, 5+store.DefaultLimit), seqsOf(p.Items), "forward, limit %d", limit)
			assert.True(t, p.More, "forward, limit %d", limit)
		}
	}},
	{"EmptyConversation", func(t *testing.T, s store.Store) {
		appendN(t, s, "other", "m", 2)
		for _, q := range []store.Query{{}, {Since: 1}, {Before: 5}, {Since: 1, Before: 5, Limit: 3}} {
			p := history(t, s, "never-written", q)
			assert.Empty(t, p.Items, "%+v", q)
			assert.False(t, p.More, "%+v", q)
			assert.Zero(t, p.First, "%+v", q)
			assert.Zero(t, p.Last, "%+v", q)
			assert.NotEmpty(t, p.Epoch, "%+v", q)
		}
	}},
	{"EpochIsStable", func(t *testing.T, s store.Store) {
		before := history(t, s, "c", store.Query{}).Epoch
		require.NotEmpty(t, before)
		assert.Equal(t, before, history(t, s, "c", store.Query{}).Epoch, "two reads of an empty conversation")
		appendN(t, s, "c", "m", 3)
		after := history(t, s, "c", store.Query{}).Epoch
		assert.Equal(t, before, after, "the first append keeps the epoch: no seq lost its meaning")
		appendN(t, s, "c", "n", 2)
		assert.Equal(t, after, history(t, s, "c", store.Query{Since: 1, Limit: 1}).Epoch, "more appends keep the epoch")
	}},
	{"RejectsEmptyConversation", func(t *testing.T, s store.Store) {
		_, err := s.History(t.Context(), "", store.Query{})
		assert.ErrorIs(t, err, store.ErrInvalid)
	}},
}

// testHistoryWindows checks Query windows on a conversation holding seqs
// 1..10.
func testHistoryWindows(t *testing.T, s store.Store) {
	appended := appendN(t, s, "c", "m", 10)
	cases := []struct {
		name  string
		q     store.Query
		want  []uint64
		more  bool
		check string
	}{
		{name: "all, no query", q: store.Query{}, want: seqRange(1, 10)},
		{name: "backward limit 3", q: store.Query{Limit: 3}, want: seqRange(8, 10), more: true},
		{name: "backward limit 9", q: store.Query{Limit: 9}, want: seqRange(2, 10), more: true},
		{name: "backward limit exactly all", q: store.Query{Limit: 10}, want: seqRange(1, 10)},
		{name: "backward limit beyond all", q: store.Query{Limit: 11}, want: seqRange(1, 10)},
		{name: "before 5 limit 2", q: store.Query{Before: 5, Limit: 2}, want: []uint64{3, 4}, more: true},
		{name: "before 3 limit 5", q: store.Query{Before: 3, Limit: 5}, want: []uint64{1, 2}},
		{name: "before 3 limit 2", q: store.Query{Before: 3, Limit: 2}, want: []uint64{1, 2}},
		{name: "before 2", q: store.Query{Before: 2}, want: []uint64{1}},
		{name: "before 1", q: store.Query{Before: 1}, want: nil},
		{name: "before beyond last", q: store.Query{Before: 100, Limit: 3}, want: seqRange(8, 10), more: true},
		{name: "before last+1", q: store.Query{Before: 11}, want: seqRange(1, 10)},
		{name: "before 8 limit 3", q: store.Query{Before: 8, Limit: 3}, want: []uint64{5, 6, 7}, more: true},
		{name: "since 2 limit 3", q: store.Query{Since: 2, Limit: 3}, want: []uint64{3, 4, 5}, more: true},
		{name: "since 7 limit 3", q: store.Query{Since: 7, Limit: 3}, want: []uint64{8, 9, 10}},
		{name: "since 6 limit 3", q: store.Query{Since: 6, Limit: 3}, want: []uint64{7, 8, 9}, more: true},
		{name: "since 1 no limit", q: store.Query{Since: 1}, want: seqRange(2, 10)},
		{name: "since 9", q: store.Query{Since: 9}, want: []uint64{10}},
		{name: "since last", q: store.Query{Since: 10}, want: nil},
		{name: "since beyond last", q: store.Query{Since: 100}, want: nil},
		{name: "since 2 before 6", q: store.Query{Since: 2, Before: 6, Limit: 10}, want: []uint64{3, 4, 5}},
		{name: "since 2 before 6 limit 2", q: store.Query{Since: 2, Before: 6, Limit: 2}, want: []uint64{3, 4}, more: true},
		{name: "since 2 before 6 limit 3", q: store.Query{Since: 2, Before: 6, Limit: 3}, want: []uint64{3, 4, 5}},
		{name: "since 4 before 5", q: store.Query{Since: 4, Before: 5}, want: nil},
		{name: "since 5 before 5", q: store.Query{Since: 5, Before: 5}, want: nil},
		{name: "since 8 before 3", q: store.Query{Since: 8, Before: 3}, want: nil},
		{name: "since 1 before beyond last limit 20", q: store.Query{Since: 1, Before: 50, Limit: 20}, want: seqRange(2, 10)},
	}
	for _, tc := range cases {
		p := history(t, s, "c", tc.q)
		assert.Equal(t, tc.want, nilIfEmpty(seqsOf(p.Items)), "%s: seqs of %+v", tc.name, tc.q)
		assert.Equal(t, tc.more, p.More, "%s: More of %+v", tc.name, tc.q)
		assert.Equal(t, uint64(1), p.First, "%s: First", tc.name)
		assert.Equal(t, uint64(10), p.Last, "%s: Last", tc.name)
		assert.NotEmpty(t, p.Epoch, "%s: Epoch", tc.name)
		for _, m := range p.Items {
			assertSameMessage(t, appended[m.Seq-1], m, "%s: item at seq %d", tc.name, m.Seq)
		}
	}
}

func nilIfEmpty(s []uint64) []uint64 {
	if len(s) == 0 {
		return nil
	}
	return s
}

var pendingTests = []test{
	{"OrderIsEnqueueOrder", func(t *testing.T, s store.Store) {
		// Interleaved from two conversations and two senders.
		var want []string
		for i := range 6 {
			from := []string{"alice", "carol"}[i%2]
			id := fmt.Sprintf("m%d", i)
			appendOK(t, s, store.AppendRequest{Msg: msg(store.DirectConv(from, "bob"), id, from, "bob"), Pending: []string{"bob"}})
			want = append(want, id)
		}
		q := pending(t, s, "bob")
		assert.Equal(t, want, idsOf(q))
		for _, m := range q {
			assert.NotZero(t, m.Seq, "pending messages carry their seq")
		}
	}},
	{"DoesNotRemove", func(t *testing.T, s store.Store) {
		appendOK(t, s, store.AppendRequest{Msg: msg("c", "m1", "alice", "bob"), Pending: []string{"bob"}})
		first := pending(t, s, "bob")
		assert.Equal(t, []string{"m1"}, idsOf(first))
		assertSameMessages(t, first, pending(t, s, "bob"), "second read")
	}},
	{"AckRemovesOnlyGivenIDs", func(t *testing.T, s store.Store) {
		for i := 1; i <= 5; i++ {
			appendOK(t, s, store.AppendRequest{Msg: msg("c", fmt.Sprintf("m%d", i), "alice", "bob"), Pending: []string{"bob"}})
		}
		require.NoError(t, s.Ack(t.Context(), "bob", "m1", "m3"))
		assert.Equal(t, []string{"m2", "m4", "m5"}, idsOf(pending(t, s, "bob")))
		require.NoError(t, s.Ack(t.Context(), "bob", "m5"))
		assert.Equal(t, []string{"m2", "m4"}, idsOf(pending(t, s, "bob")))
		require.NoError(t, s.Ack(t.Context(), "bob", "m2", "m4"))
		assert.Empty(t, pending(t, s, "bob"))
		assert.Len(t, history(t, s, "c", store.Query{}).Items, 5, "Ack leaves history alone")
		// The queue works on after being emptied.
		appendOK(t, s, store.AppendRequest{Msg: msg("c", "m6", "alice", "bob"), Pending: []string{"bob"}})
		assert.Equal(t, []string{"m6"}, idsOf(pending(t, s, "bob")))
	}},
	{"AckIgnoresUnknownIDs", func(t *testing.T, s store.Store) {
		appendOK(t, s, store.AppendRequest{Msg: msg("c", "m1", "alice", "bob"), Pending: []string{"bob"}})
		appendOK(t, s, store.AppendRequest{Msg: msg("c", "m2", "bob", "alice"), Pending: []string{"alice"}})
		require.NoError(t, s.Ack(t.Context(), "bob", "nope", "m2", "m1", "m1"))
		assert.Empty(t, pending(t, s, "bob"))
		assert.Equal(t, []string{"m2"}, idsOf(pending(t, s, "alice")), "bob's ack of alice's message")
		require.NoError(t, s.Ack(t.Context(), "bob", "m1"), "acking twice")
		require.NoError(t, s.Ack(t.Context(), "bob"), "no ids")
		require.NoError(t, s.Ack(t.Context(), "nobody", "m2"), "a user with no queue")
		assert.Equal(t, []string{"m2"}, idsOf(pending(t, s, "alice")))
	}},
	{"QueuesArePerUser", func(t *testing.T, s store.Store) {
		appendOK(t, s, store.AppendRequest{Msg: msg("r", "m1", "alice", "room"), Pending: []string{"bob", "carol"}})
		appendOK(t, s, store.AppendRequest{Msg: msg("r", "m2", "alice", "room"), Pending: []string{"carol"}})
		require.NoError(t, s.Ack(t.Context(), "bob", "m1"))
		assert.Empty(t, pending(t, s, "bob"))
		assert.Equal(t, []string{"m1", "m2"}, idsOf(pending(t, s, "carol")))
	}},
	{"UnknownUserIsEmpty", func(t *testing.T, s store.Store) {
		q, err := s.Pending(t.Context(), "nobody")
		require.NoError(t, err)
		assert.Empty(t, q)
	}},
}

var membershipTests = []test{
	{"JoinListsRoomsAndMembers", func(t *testing.T, s store.Store) {
		require.NoError(t, s.Join(t.Context(), "go", "alice"))
		require.NoError(t, s.Join(t.Context(), "go", "bob"))
		require.NoError(t, s.Join(t.Context(), "rust", "alice"))
		assert.ElementsMatch(t, []string{"go", "rust"}, rooms(t, s, "alice"))
		assert.ElementsMatch(t, []string{"go"}, rooms(t, s, "bob"))
		assert.ElementsMatch(t, []string{"alice", "bob"}, members(t, s, "go"))
		assert.ElementsMatch(t, []string{"alice"}, members(t, s, "rust"))
	}},
	{"JoinTwiceIsHarmless", func(t *testing.T, s store.Store) {
		require.NoError(t, s.Join(t.Context(), "go", "alice"))
		require.NoError(t, s.Join(t.Context(), "go", "alice"))
		assert.Equal(t, []string{"go"}, rooms(t, s, "alice"))
		assert.Equal(t, []string{"alice"}, members(t, s, "go"))
		require.NoError(t, s.Leave(t.Context(), "go", "alice"))
		assert.Empty(t, rooms(t, s, "alice"), "one Leave undoes any number of Joins")
		assert.Empty(t, members(t, s, "go"))
	}},
	{"LeaveRemovesOnlyThatMembership", func(t *testing.T, s store.Store) {
		for _, rm := range []string{"go", "rust"} {
			for _, u := range []string{"alice", "bob"} {
				require.NoError(t, s.Join(t.Context(), rm, u))
			}
		}
		require.NoError(t, s.Leave(t.Context(), "go", "alice"))
		assert.ElementsMatch(t, []string{"rust"}, rooms(t, s, "alice"))
		assert.ElementsMatch(t, []string{"go", "rust"}, rooms(t, s, "bob"))
		assert.ElementsMatch(t, []string{"bob"}, members(t, s, "go"))
		assert.ElementsMatch(t, []string{"alice", "bob"}, members(t, s, "rust"))
	}},
	{"LeaveWithoutJoinIsHarmless", func(t *testing.T, s store.Store) {
		require.NoError(t, s.Join(t.Context(), "go", "alice"))
		require.NoError(t, s.Leave(t.Context(), "go", "bob"), "a room one is not in")
		require.NoError(t, s.Leave(t.Context(), "nowhere", "alice"), "a room that does not exist")
		assert.Equal(t, []string{"go"}, rooms(t, s, "alice"))
		assert.Equal(t, []string{"alice"}, members(t, s, "go"))
		assert.Empty(t, rooms(t, s, "bob"))
	}},
	{"UnknownIsEmpty", func(t *testing.T, s store.Store) {
		assert.Empty(t, rooms(t, s, "nobody"))
		assert.Empty(t, members(t, s, "nowhere"))
	}},
}

// methods calls every context-taking method of store.Store once with valid
// arguments, for the Context and Close tests.
var methods = []struct {
	name string
	call func(ctx context.Context, s store.Store) error
}{
	{"Append", func(ctx context.Context, s store.Store) error {
		_, _, err := s.Append(ctx, store.AppendRequest{Msg: msg("c", "late", "alice", "bob"), Pending: []string{"bob"}, CID: "late"})
		return err
	}},
	{"History", func(ctx context.Context, s store.Store) error {
		_, err := s.History(ctx, "c", store.Query{})
		return err
	}},
	{"Pending", func(ctx context.Context, s store.Store) error {
		_, err := s.Pending(ctx, "bob")
		return err
	}},
	{"Ack", func(ctx context.Context, s store.Store) error { return s.Ack(ctx, "bob", "m1") }},
	{"Join", func(ctx context.Context, s store.Store) error { return s.Join(ctx, "go", "bob") }},
	{"Leave", func(ctx context.Context, s store.Store) error { return s.Leave(ctx, "go", "alice") }},
	{"Rooms", func(ctx context.Context, s store.Store) error {
		_, err := s.Rooms(ctx, "alice")
		return err
	}},
	{"Members", func(ctx context.Context, s store.Store) error {
		_, err := s.Members(ctx, "go")
		return err
	}},
}

// seed writes a little of everything, so that methods find data.
func seed(t *testing.T, s store.Store) {
	t.Helper()
	appendOK(t, s, store.AppendRequest{Msg: msg("c", "m1", "alice", "bob"), Pending: []string{"bob"}, CID: "c1"})
	require.NoError(t, s.Join(t.Context(), "go", "alice"))
}

var contextTests = []test{
	{"CanceledBeforeCall", func(t *testing.T, s store.Store) {
		seed(t, s)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		for _, m := range methods {
			err := m.call(ctx, s)
			assert.ErrorIs(t, err, context.Canceled, "%s with a canceled context", m.name)
		}
		// The store still works with a live context.
		for _, m := range methods {
			assert.NoError(t, m.call(t.Context(), s), "%s after the canceled calls", m.name)
		}
	}},
}

var closeTests = []test{
	{"MethodsReturnErrClosed", func(t *testing.T, s store.Store) {
		seed(t, s)
		require.NoError(t, s.Close())
		for _, m := range methods {
			err := m.call(t.Context(), s)
			assert.True(t, errors.Is(err, store.ErrClosed), "%s after Close: got %v, want ErrClosed", m.name, err)
		}
	}},
	{"CloseIsIdempotent", func(t *testing.T, s store.Store) {
		seed(t, s)
		require.NoError(t, s.Close())
		assert.NoError(t, s.Close(), "second Close")
		_, err := s.History(t.Context(), "c", store.Query{})
		assert.ErrorIs(t, err, store.ErrClosed, "History after two Closes")
	}},
	{"CloseWithoutUse", func(t *testing.T, s store.Store) {
		require.NoError(t, s.Close())
		_, err := s.Pending(t.Context(), "bob")
		assert.ErrorIs(t, err, store.ErrClosed)
	}},
}
