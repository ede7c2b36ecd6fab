package boltstore_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/boltstore"
)

// clock is a settable clock for OpenWithClock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestRetention_MaxAge: messages committed more than MaxAge ago leave
// their histories (Page.First moves up, or to 0 when none is left), newer
// ones stay; a queued message stays queued until acked, whatever its age;
// seqs go on after expiry, also in a conversation of which nothing was
// left (a room keeps its last seq; a direct conversation is forgotten and
// starts again above the seq floor); an expired direct conversation leaves
// the inboxes; and all of it holds after a reopen.
func TestRetention_MaxAge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	clk := newClock()
	opts := boltstore.Options{MaxAge: 10 * time.Minute, CheckpointEvery: 1 << 30, CheckpointInterval: time.Hour}
	s, err := boltstore.OpenWithClock(path, opts, clk.Now)
	require.NoError(t, err)
	defer func() { _ = s.Close() }()
	// reopen closes the store, checks the file and returns the number of
	// its log records, and opens it again.
	reopen := func() int {
		t.Helper()
		require.NoError(t, s.Close())
		require.NoError(t, boltstore.CheckQueues(path))
		n := countLog(t, path)
		s, err = boltstore.OpenWithClock(path, opts, clk.Now)
		require.NoError(t, err)
		return n
	}
	ctx := t.Context()
	ab := store.DirectConv("a", "b")
	cd := store.DirectConv("c", "d")
	room := store.RoomConv("r")
	require.NoError(t, s.Join(ctx, "r", "c"))
	send := func(req store.AppendRequest) store.Message {
		t.Helper()
		m, _, err := s.Append(ctx, req)
		require.NoError(t, err)
		return m
	}

	// unqueued is a direct message queued for nobody.
	unqueued := func(from, to, id string) store.AppendRequest {
		req := direct(from, to, id, "")
		req.Pending = nil
		return req
	}
	// t=0: a->b 1..5 (1 and 2 queued for b), c->d 1, room 1..3.
	for i := 1; i <= 5; i++ {
		if i <= 2 {
			send(direct("a", "b", fmt.Sprint(i), ""))
		} else {
			send(unqueued("a", "b", fmt.Sprint(i)))
		}
	}
	send(unqueued("c", "d", "cd1"))
	for i := 1; i <= 3; i++ {
		send(store.AppendRequest{Msg: msg(room, fmt.Sprintf("r%d", i), "c", "")})
	}
	require.Zero(t, boltstore.ExpireNow(s), "nothing is old yet")

	// t=6m: a->b 6..8.
	clk.Advance(6 * time.Minute)
	for i := 6; i <= 8; i++ {
		send(unqueued("a", "b", fmt.Sprint(i)))
	}
	// t=11m: the first nine are older than MaxAge.
	clk.Advance(5 * time.Minute)
	require.Equal(t, 9, boltstore.ExpireNow(s))
	require.Zero(t, boltstore.ExpireNow(s), "done once")

	check := func(when string) {
		t.Helper()
		p, err := s.History(ctx, ab, store.Query{})
		require.NoError(t, err)
		assert.Equal(t, []string{"6", "7", "8"}, ids(p.Items), when)
		assert.Equal(t, [2]uint64{6, 8}, [2]uint64{p.First, p.Last}, when)
		p, err = s.History(ctx, ab, store.Query{Since: 2, Limit: 2})
		require.NoError(t, err)
		assert.Equal(t, []string{"6", "7"}, ids(p.Items), when)
		p, err = s.History(ctx, room, store.Query{})
		require.NoError(t, err)
		assert.Empty(t, p.Items, when)
		assert.Equal(t, [2]uint64{0, 3}, [2]uint64{p.First, p.Last}, "%s: nothing retained, the room's last seq stays", when)
		p, err = s.History(ctx, cd, store.Query{})
		require.NoError(t, err)
		assert.Equal(t, store.Page{Epoch: s.Epoch()}, p, "%s: the direct conversation is forgotten", when)
		// Queued messages outlive their history, old as they are.
		pend, err := s.Pending(ctx, "b")
		require.NoError(t, err)
		assert.Equal(t, []string{"1", "2"}, ids(pend), when)
		// The expired direct conversation left c's inbox; the room stays
		// (a membership), with its last seq.
		convs, _, err := s.Conversations(ctx, "c", 10)
		require.NoError(t, err)
		require.Len(t, convs, 1, "%s: %+v", when, convs)
		assert.Equal(t, room, convs[0].Conv, when)
		assert.Equal(t, uint64(3), convs[0].Seq, when)
		convs, _, err = s.Conversations(ctx, "d", 10)
		require.NoError(t, err)
		assert.Empty(t, convs, when)
	}
	check("after expiry")
	reopen()
	check("after reopen")

	// The ack releases 1; 2 stays queued; the history's three stay.
	require.NoError(t, s.Ack(ctx, "b", "1"))
	assert.Equal(t, 4, reopen(), "log: 2 (queued), 6, 7, 8")

	// Seqs go on, also where nothing was left: the room from its last
	// seq, the forgotten direct conversation above the seq floor (1, its
	// own last seq), with the recipient's marker just below.
	assert.Equal(t, uint64(9), send(unqueued("a", "b", "9")).Seq)
	assert.Equal(t, uint64(4), send(store.AppendRequest{Msg: msg(room, "r4", "c", "")}).Seq)
	m := send(unqueued("c", "d", "cd2"))
	assert.Equal(t, uint64(2), m.Seq)
	convs, _, err := s.Conversations(ctx, "d", 10)
	require.NoError(t, err)
	require.Len(t, convs, 1)
	assert.Equal(t, store.ConvInfo{Conv: cd, Kind: store.ConvDirect, Peer: "c", Seq: 2, TS: m.TS, Read: 1, Seen: 2}, convs[0], "one unread")
	p, err := s.History(ctx, cd, store.Query{})
	require.NoError(t, err)
	assert.Equal(t, []string{"cd2"}, ids(p.Items))
	assert.Equal(t, [2]uint64{2, 2}, [2]uint64{p.First, p.Last})

	// Everything expires: the queue still holds 2.
	clk.Advance(time.Hour)
	require.Equal(t, 6, boltstore.ExpireNow(s), "6, 7, 8 and the three new ones (2 was handled before)")
	reopen()
	pend, err := s.Pending(ctx, "b")
	require.NoError(t, err)
	assert.Equal(t, []string{"2"}, ids(pend))
	require.NoError(t, s.Ack(ctx, "b", "2"))
	assert.Zero(t, reopen(), "nothing left in the log")
	// Both direct conversations were forgotten; the floor is 9 (a-b's
	// last), so neither repeats a seq.
	assert.Equal(t, uint64(10), send(unqueued("a", "b", "10")).Seq)
	assert.Equal(t, uint64(10), send(unqueued("d", "c", "cd3")).Seq)
	convs, _, err = s.Conversations(ctx, "c", 10)
	require.NoError(t, err)
	require.Len(t, convs, 2)
	assert.Equal(t, [3]uint64{10, 9, 10}, [3]uint64{convs[0].Seq, convs[0].Read, convs[0].Seen}, "%+v", convs[0])
	assert.Equal(t, store.ConvInfo{Conv: room, Kind: store.ConvRoom, Peer: "r", Seq: 4, Read: 4}, convs[1], "the room: its messages expired, its seq and c's marker stay")
	reopen()
	convs2, _, err := s.Conversations(ctx, "c", 10)
	require.NoError(t, err)
	assert.Equal(t, convs, convs2, "after reopen")
}

// TestRetention_Batches: a backlog of expired messages is trimmed in
// passes of at most the batch size, oldest first, each leaving the file
// consistent.
func TestRetention_Batches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	clk := newClock()
	opts := boltstore.Options{MaxAge: time.Minute, NoSync: true}
	s, err := boltstore.OpenTuned(path, opts, clk.Now, 7)
	require.NoError(t, err)
	for i := range 100 {
		req := direct(fmt.Sprintf("u%d", i%10), "z", fmt.Sprint(i), "")
		req.Pending = nil
		_, _, err := s.Append(t.Context(), req)
		require.NoError(t, err)
	}
	clk.Advance(2 * time.Minute)
	require.Equal(t, 100, boltstore.ExpireNow(s))
	st := s.Stats()
	assert.Equal(t, uint64(100), st.Expired)
	assert.Equal(t, uint64(15), st.ExpirePasses, "ceil(100/7)")
	require.NoError(t, s.Close())
	require.NoError(t, boltstore.CheckQueues(path))
	assert.Zero(t, countLog(t, path))
}

// plateau writes rounds of messages to conversations between new users,
// one simulated minute apart, with messages queued for the recipient and
// acked a round later, and expires after each round. It returns the size
// in use (Stats.Size) after each round and the store's file.
func plateau(t *testing.T, maxAge time.Duration, rounds int) (sizes []int64, path string) {
	const convs, perConv, body = 20, 10, 200
	path = filepath.Join(t.TempDir(), "hub.db")
	clk := newClock()
	s, err := boltstore.OpenWithClock(path, boltstore.Options{MaxAge: maxAge, NoSync: true}, clk.Now)
	require.NoError(t, err)
	defer func() {
		st := s.Stats()
		if st.ExpirePasses > 0 {
			t.Logf("MaxAge %v: %d messages expired in %d passes, %v per pass", maxAge, st.Expired, st.ExpirePasses, st.ExpireTime/time.Duration(st.ExpirePasses))
		}
		require.NoError(t, s.Close())
	}()
	payload := bytes.Repeat([]byte("x"), body)
	var toAck map[string][]string // user -> ids
	for r := range rounds {
		clk.Advance(time.Minute)
		acks := toAck
		toAck = map[string][]string{}
		for c := range convs {
			from, to := fmt.Sprintf("u%d-%da", r, c), fmt.Sprintf("u%d-%db", r, c)
			for i := range perConv {
				req := direct(from, to, fmt.Sprintf("%d-%d-%d", r, c, i), "")
				req.Msg.Body = payload
				req.Pending = []string{to}
				_, _, err := s.Append(t.Context(), req)
				require.NoError(t, err)
				toAck[to] = append(toAck[to], req.Msg.ID)
			}
		}
		for u, ids := range acks {
			require.NoError(t, s.Ack(t.Context(), u, ids...))
		}
		boltstore.ExpireNow(s)
		sizes = append(sizes, s.Stats().Size)
	}
	return sizes, path
}

// TestRetention_FileSizePlateaus: under a steady load to ever new
// conversations, the file stops growing once messages expire as fast as
// new ones come (bbolt reuses the freed pages): after 40 more rounds it is
// at most 16 pages larger (a round writes about 26 pages of messages);
// without MaxAge it grows by about a round's worth every round.
func TestRetention_FileSizePlateaus(t *testing.T) {
	const k, m = 20, 40 // MaxAge is 10 rounds
	sizes, path := plateau(t, 10*time.Minute, k+m)
	for r := 0; r < len(sizes); r += 5 {
		t.Logf("MaxAge 10m: after round %2d: %7d bytes in use", r+1, sizes[r])
	}
	t.Logf("MaxAge 10m: after round %2d: %7d bytes in use", len(sizes), sizes[len(sizes)-1])
	slack := 16 * int64(os.Getpagesize())
	assert.LessOrEqual(t, sizes[k+m-1], sizes[k-1]+slack,
		"size after round %d is %d, after round %d %d: grew by more than %d", k+m, sizes[k+m-1], k, sizes[k-1], slack)
	require.NoError(t, boltstore.CheckQueues(path))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	t.Logf("MaxAge 10m: file on disk %d bytes", fi.Size())

	unbounded, _ := plateau(t, 0, k+m)
	for r := 0; r < len(unbounded); r += 5 {
		t.Logf("no MaxAge:  after round %2d: %7d bytes in use", r+1, unbounded[r])
	}
	t.Logf("no MaxAge:  after round %2d: %7d bytes in use", len(unbounded), unbounded[len(unbounded)-1])
	assert.Greater(t, unbounded[k+m-1]-unbounded[k-1], 10*slack, "without MaxAge the file grows")
}

// TestRetention_Compact: Compact copies a store whose messages expired
// into a smaller file that opens as the same store: epoch, seqs, queues.
func TestRetention_Compact(t *testing.T) {
	dir := t.TempDir()
	_, src := plateau(t, 10*time.Minute, 30)
	dst := filepath.Join(dir, "compact.db")

	s, err := boltstore.Open(src, boltstore.Options{})
	require.NoError(t, err)
	epoch := s.Epoch()
	pend, err := s.Pending(t.Context(), "u29-0b")
	require.NoError(t, err)
	require.Len(t, pend, 10, "the last round is not acked")
	require.ErrorIs(t, boltstore.Compact(t.Context(), src, dst), boltstore.ErrLocked, "the file is open")
	require.NoError(t, s.Close())

	require.NoError(t, boltstore.Compact(t.Context(), src, dst))
	require.Error(t, boltstore.Compact(t.Context(), src, dst), "dst exists")
	require.NoError(t, boltstore.CheckQueues(dst))
	before, err := os.Stat(src)
	require.NoError(t, err)
	after, err := os.Stat(dst)
	require.NoError(t, err)
	t.Logf("compacted %d bytes into %d", before.Size(), after.Size())
	assert.Less(t, after.Size(), before.Size())

	// The copy is the same store: the same appends get the same seqs as
	// in the original, in a live conversation and in a forgotten one.
	live := store.DirectConv("u29-0a", "u29-0b")
	appendBoth := func(path string) (epoch string, pend []store.Message, seqs [2]uint64, page store.Page) {
		s, err := boltstore.Open(path, boltstore.Options{})
		require.NoError(t, err)
		defer func() { require.NoError(t, s.Close()) }()
		pend, err = s.Pending(t.Context(), "u29-0b")
		require.NoError(t, err)
		for i, from := range []string{"u29-0a", "u0-0a"} {
			req := direct(from, from[:len(from)-1]+"b", "next", "")
			m, _, err := s.Append(t.Context(), req)
			require.NoError(t, err)
			seqs[i] = m.Seq
		}
		page, err = s.History(t.Context(), live, store.Query{})
		require.NoError(t, err)
		return s.Epoch(), pend, seqs, page
	}
	cEpoch, cPend, cSeqs, cPage := appendBoth(dst)
	require.NoError(t, boltstore.CheckQueues(dst))
	oEpoch, oPend, oSeqs, oPage := appendBoth(src)
	assert.Equal(t, epoch, cEpoch)
	assert.Equal(t, oEpoch, cEpoch)
	assert.Equal(t, pend, cPend)
	assert.Equal(t, oPend, cPend)
	assert.Equal(t, oSeqs, cSeqs)
	assert.Equal(t, oPage, cPage)
	assert.Greater(t, cSeqs[1], uint64(10), "u0-0a's conversation had seqs up to 10 before it was forgotten")
	assert.Len(t, cPage.Items, 11)

	require.ErrorIs(t, boltstore.Compact(t.Context(), filepath.Join(dir, "nope.db"), filepath.Join(dir, "x.db")), os.ErrNotExist)
}
