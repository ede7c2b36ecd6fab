package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/internal/redistest"
	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/redisstore"
)

// newStore returns a Store with a fresh prefix on the package's server,
// closed at the end of the test, and a client to look at its keys.
func newStore(t *testing.T, opts redisstore.Options) (*redisstore.Store, *redis.Client) {
	t.Helper()
	srv := needRedis(t)
	if opts.Prefix == "" {
		opts.Prefix = newPrefix("t")
	}
	s, err := redisstore.Open(t.Context(), srv.Addr, opts)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	return s, srv.Client(t)
}

func dm(id, from, to string) store.Message {
	return store.Message{
		ID: id, Conv: store.DirectConv(from, to), TS: 1_700_000_000_000, Cmd: 10,
		From: from, To: to, Body: []byte(`{"content":"` + id + `"}`),
	}
}

func appendOK(t *testing.T, s store.Store, req store.AppendRequest) store.Message {
	t.Helper()
	m, dup, err := s.Append(t.Context(), req)
	require.NoError(t, err)
	require.False(t, dup, "Append %q: unexpected duplicate", req.Msg.ID)
	return m
}

func ids(ms []store.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func seqs(ms []store.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func seqRange(lo, hi uint64) []uint64 {
	var out []uint64
	for s := lo; s <= hi; s++ {
		out = append(out, s)
	}
	return out
}

// TestStore_TwoProcessesShareSeqsAndDedup: two Stores, each with its own
// connection pool like two hub processes, append concurrently to one
// conversation and resend the same cids; seqs are 1..N without gaps and
// each (sender, cid) is stored once.
func TestStore_TwoProcessesShareSeqsAndDedup(t *testing.T) {
	prefix := newPrefix("two")
	a, _ := newStore(t, redisstore.Options{Prefix: prefix})
	b, _ := newStore(t, redisstore.Options{Prefix: prefix})
	hubs := []*redisstore.Store{a, b}
	conv := store.RoomConv("busy")

	const writers, each = 8, 40 // per hub
	var mu sync.Mutex           // guards got and firsts
	var got []uint64
	firsts := make(map[string]string) // cid -> id stored
	var wg sync.WaitGroup
	for h, s := range hubs {
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					// Sender w sends cid i once through each hub: one
					// of the two Appends is a duplicate of the other.
					from := fmt.Sprintf("user%d", w)
					m, dup, err := s.Append(t.Context(), store.AppendRequest{
						Msg: store.Message{ID: fmt.Sprintf("h%d-w%d-%d", h, w, i), Conv: conv, Cmd: 11, From: from, To: "busy"},
						CID: fmt.Sprintf("cid-%d", i),
					})
					if !assert.NoError(t, err) {
						return
					}
					mu.Lock()
					key := from + "/" + fmt.Sprint(i)
					if !dup {
						got = append(got, m.Seq)
						assert.NotContains(t, firsts, key, "stored twice")
						firsts[key] = m.ID
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	require.False(t, t.Failed())
	slices.Sort(got)
	assert.Equal(t, seqRange(1, writers*each), got, "seqs of the stored messages")
	assert.Len(t, firsts, writers*each)

	// Both hubs read the same history, epoch and last seq.
	pa, err := a.History(t.Context(), conv, store.Query{Limit: 1000})
	require.NoError(t, err)
	pb, err := b.History(t.Context(), conv, store.Query{Limit: 1000})
	require.NoError(t, err)
	assert.Equal(t, seqRange(1, writers*each), seqs(pa.Items))
	assert.Equal(t, ids(pa.Items), ids(pb.Items))
	assert.Equal(t, pa.Epoch, pb.Epoch)
	stored := make([]string, 0, len(firsts))
	for _, id := range firsts {
		stored = append(stored, id)
	}
	assert.ElementsMatch(t, stored, ids(pa.Items), "history holds exactly the first of each (sender, cid)")
	// A resend through either hub returns the stored message.
	for _, s := range hubs {
		m, dup, err := s.Append(t.Context(), store.AppendRequest{
			Msg: store.Message{ID: "late", Conv: conv, From: "user3"}, CID: "cid-7",
		})
		require.NoError(t, err)
		assert.True(t, dup)
		assert.Equal(t, firsts["user3/7"], m.ID)
	}
}

func TestStore_HistoryKeepsNewestMaxHistory(t *testing.T) {
	s, _ := newStore(t, redisstore.Options{MaxHistory: 5})
	m := dm("m", "alice", "bob")
	for i := 1; i <= 12; i++ {
		m.ID = fmt.Sprint("m", i)
		appendOK(t, s, store.AppendRequest{Msg: m})
	}
	p, err := s.History(t.Context(), m.Conv, store.Query{Limit: 100})
	require.NoError(t, err)
	assert.Equal(t, seqRange(8, 12), seqs(p.Items))
	assert.Equal(t, uint64(8), p.First)
	assert.Equal(t, uint64(12), p.Last)
	assert.False(t, p.More)

	p, err = s.History(t.Context(), m.Conv, store.Query{Since: 2, Limit: 3})
	require.NoError(t, err)
	assert.Equal(t, []uint64{8, 9, 10}, seqs(p.Items), "reading forward from below First starts at First")
	assert.True(t, p.More)
	p, err = s.History(t.Context(), m.Conv, store.Query{Before: 9, Limit: 3})
	require.NoError(t, err)
	assert.Equal(t, []uint64{8}, seqs(p.Items), "reading backward stops at First")
	assert.False(t, p.More)
	p, err = s.History(t.Context(), m.Conv, store.Query{Before: 8})
	require.NoError(t, err)
	assert.Empty(t, p.Items)
	assert.False(t, p.More)
}

// TestStore_LoweredHistoryBoundTrimsGradually: a Store with a lower
// MaxHistory than the data deletes at most 100 excess messages per Append,
// and the history it reports is always exactly what is retained.
func TestStore_LoweredHistoryBoundTrimsGradually(t *testing.T) {
	prefix := newPrefix("lowered")
	unbounded, client := newStore(t, redisstore.Options{Prefix: prefix, MaxHistory: -1})
	bounded, _ := newStore(t, redisstore.Options{Prefix: prefix, MaxHistory: 10})
	m := dm("m", "alice", "bob")
	for i := 1; i <= 300; i++ {
		m.ID = fmt.Sprint("m", i)
		appendOK(t, unbounded, store.AppendRequest{Msg: m})
	}
	key := prefix + "{c:" + m.Conv + "}h"
	wantFirst := []uint64{101, 201, 294} // each Append removes up to 100
	for i, want := range wantFirst {
		m.ID = fmt.Sprint("n", i)
		appendOK(t, bounded, store.AppendRequest{Msg: m})
		p, err := bounded.History(t.Context(), m.Conv, store.Query{Since: 1, Limit: 1000})
		require.NoError(t, err)
		assert.Equal(t, want, p.First, "First after %d appends", i+1)
		assert.Equal(t, seqRange(want, 301+uint64(i)), seqs(p.Items))
		n, err := client.HLen(t.Context(), key).Result()
		require.NoError(t, err)
		assert.Equal(t, int64(2*len(p.Items)+3), n, "fields of the conversation hash: messages, their meta fields (no Pending given: not the default), n, f, e")
	}
}

// TestStore_PendingCountsKeys: the per-sender counts live in one hash per
// recipient that follows the queue: written by Append and Ack, gone with
// the queue's last message (as its epoch hash is), and rebuilt from
// scratch when a count was left behind without its queue.
func TestStore_PendingCountsKeys(t *testing.T) {
	prefix := newPrefix("counts")
	s, client := newStore(t, redisstore.Options{Prefix: prefix, MaxPending: 10, MaxPendingPerSender: 2})
	counts := func() map[string]string {
		t.Helper()
		m, err := client.HGetAll(t.Context(), prefix+"{u:bob}n").Result()
		require.NoError(t, err)
		return m
	}
	appendOK(t, s, store.AppendRequest{Msg: dm("m1", "alice", "bob"), Pending: []string{"bob", "bob"}})
	appendOK(t, s, store.AppendRequest{Msg: dm("m2", "alice", "bob"), Pending: []string{"bob"}})
	appendOK(t, s, store.AppendRequest{Msg: dm("c1", "carol", "bob"), Pending: []string{"bob"}})
	assert.Equal(t, map[string]string{"alice": "2", "carol": "1"}, counts(), "a recipient listed twice counts once")
	e, err := client.HGetAll(t.Context(), prefix+"{u:bob}pe").Result()
	require.NoError(t, err)
	assert.Equal(t, "3", e["n"], "the queue's last score")
	assert.NotEmpty(t, e["e"], "the queue's epoch")
	_, _, err = s.Append(t.Context(), store.AppendRequest{Msg: dm("m3", "alice", "bob"), Pending: []string{"bob"}})
	require.ErrorIs(t, err, store.ErrPendingFull)
	assert.Contains(t, err.Error(), `"bob" holds 2 messages from "alice"`)

	require.NoError(t, s.Ack(t.Context(), "bob", "m1", "m1", "nope", "c1"))
	assert.Equal(t, map[string]string{"alice": "1"}, counts())
	require.NoError(t, s.Ack(t.Context(), "bob", "m2"))
	n, err := client.Exists(t.Context(), prefix+"{u:bob}p", prefix+"{u:bob}m", prefix+"{u:bob}n", prefix+"{u:bob}pe").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "an empty queue leaves no keys")

	// A count left without its queue (a partial loss of keys) does not
	// block the sender: an empty queue starts its counts afresh.
	require.NoError(t, client.HSet(t.Context(), prefix+"{u:bob}n", "alice", "2").Err())
	appendOK(t, s, store.AppendRequest{Msg: dm("m4", "alice", "bob"), Pending: []string{"bob"}})
	assert.Equal(t, map[string]string{"alice": "1"}, counts())
}

// TestStore_LargeReads reads a queue and a window of more values than one
// HMGET of the scripts takes.
func TestStore_LargeReads(t *testing.T) {
	s, _ := newStore(t, redisstore.Options{MaxPending: -1, MaxPendingPerSender: -1})
	const n = 2500
	var wg sync.WaitGroup
	for w := range 5 {
		wg.Go(func() {
			for i := range n / 5 {
				_, _, err := s.Append(t.Context(), store.AppendRequest{
					Msg: dm(fmt.Sprintf("w%d-%04d", w, i), "alice", "bob"), Pending: []string{"bob"},
				})
				if !assert.NoError(t, err) {
					return
				}
			}
		})
	}
	wg.Wait()
	q, err := s.Pending(t.Context(), "bob")
	require.NoError(t, err)
	require.Len(t, q, n)
	assert.True(t, slices.IsSorted(seqs(q)), "pending of one conversation is in seq order")
	p, err := s.History(t.Context(), store.DirectConv("alice", "bob"), store.Query{Limit: n})
	require.NoError(t, err)
	assert.Equal(t, seqRange(1, n), seqs(p.Items))
	assert.Equal(t, ids(q), ids(p.Items))
}

func TestStore_CIDRecordExpires(t *testing.T) {
	s, _ := newStore(t, redisstore.Options{CIDRetention: 5 * time.Millisecond})
	first := appendOK(t, s, store.AppendRequest{Msg: dm("m1", "alice", "bob"), CID: "c1"})
	time.Sleep(20 * time.Millisecond)
	m := appendOK(t, s, store.AppendRequest{Msg: dm("m2", "alice", "bob"), CID: "c1"})
	assert.Equal(t, first.Seq+1, m.Seq, "after its record expired, a resend is a new message")
}

func TestStore_CIDRecordHasRetentionTTL(t *testing.T) {
	prefix := newPrefix("cidttl")
	for _, tc := range []struct {
		retention time.Duration
		want      time.Duration
	}{
		{0, redisstore.DefaultCIDRetention},
		{time.Hour, time.Hour},
	} {
		s, client := newStore(t, redisstore.Options{Prefix: prefix, CIDRetention: tc.retention})
		from := fmt.Sprint("sender", tc.retention)
		appendOK(t, s, store.AppendRequest{Msg: dm("m1", from, "bob"), CID: "c1"})
		ttl, err := client.PTTL(t.Context(), fmt.Sprintf("%s{c:%s}k:%d:%sc1", prefix, store.DirectConv(from, "bob"), len(from), from)).Result()
		require.NoError(t, err)
		assert.Greater(t, ttl, tc.want-time.Minute, "retention %v", tc.retention)
		assert.LessOrEqual(t, ttl, tc.want, "retention %v", tc.retention)
	}
}

// TestStore_NewEpochWhenKeysVanish: when the keys of a store vanish (as
// with FLUSHALL or eviction), the conversation reports a new epoch and
// starts again at seq 1, and keeps that epoch from then on.
func TestStore_NewEpochWhenKeysVanish(t *testing.T) {
	prefix := newPrefix("vanish")
	s, client := newStore(t, redisstore.Options{Prefix: prefix})
	other, _ := newStore(t, redisstore.Options{Prefix: prefix})
	conv := store.DirectConv("alice", "bob")
	for i := 1; i <= 3; i++ {
		appendOK(t, s, store.AppendRequest{Msg: dm(fmt.Sprint("m", i), "alice", "bob"), Pending: []string{"bob"}, CID: fmt.Sprint("c", i)})
	}
	before, err := s.History(t.Context(), conv, store.Query{})
	require.NoError(t, err)
	require.Equal(t, uint64(3), before.Last)

	keys := keysWithPrefix(t, client, prefix)
	require.NotEmpty(t, keys)
	require.NoError(t, client.Del(t.Context(), keys...).Err())

	after, err := other.History(t.Context(), conv, store.Query{})
	require.NoError(t, err)
	assert.NotEqual(t, before.Epoch, after.Epoch, "a lost stream gets a new epoch")
	assert.NotEmpty(t, after.Epoch)
	assert.Empty(t, after.Items)
	assert.Zero(t, after.Last)

	m := appendOK(t, s, store.AppendRequest{Msg: dm("m4", "alice", "bob"), CID: "c1"})
	assert.Equal(t, uint64(1), m.Seq, "seqs start again")
	for _, st := range []*redisstore.Store{s, other} {
		p, err := st.History(t.Context(), conv, store.Query{})
		require.NoError(t, err)
		assert.Equal(t, after.Epoch, p.Epoch, "the new epoch is kept by the first Append, for every Store")
		assert.Equal(t, []string{"m4"}, ids(p.Items))
	}

	// Lost without a read in between: the Append makes the new epoch.
	require.NoError(t, client.Del(t.Context(), keysWithPrefix(t, client, prefix)...).Err())
	appendOK(t, other, store.AppendRequest{Msg: dm("m5", "alice", "bob")})
	p, err := s.History(t.Context(), conv, store.Query{})
	require.NoError(t, err)
	assert.NotEqual(t, after.Epoch, p.Epoch)
	assert.NotEqual(t, before.Epoch, p.Epoch)
	assert.Equal(t, []uint64{1}, seqs(p.Items))
}

// TestStore_EmptyConversationKeyExpires: reading a never-written
// conversation stores its epoch under a TTL, which its first Append
// removes.
func TestStore_EmptyConversationKeyExpires(t *testing.T) {
	prefix := newPrefix("empty")
	s, client := newStore(t, redisstore.Options{Prefix: prefix})
	key := prefix + "{c:never}h"
	p, err := s.History(t.Context(), "never", store.Query{})
	require.NoError(t, err)
	ttl, err := client.PTTL(t.Context(), key).Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, 23*time.Hour)
	assert.LessOrEqual(t, ttl, 24*time.Hour)

	m := dm("m1", "alice", "bob")
	m.Conv = "never"
	appendOK(t, s, store.AppendRequest{Msg: m})
	ttl, err = client.PTTL(t.Context(), key).Result()
	require.NoError(t, err)
	assert.Equal(t, time.Duration(-1), ttl, "a written conversation does not expire")
	q, err := s.History(t.Context(), "never", store.Query{})
	require.NoError(t, err)
	assert.Equal(t, p.Epoch, q.Epoch)
}

// TestStore_HistoryTTL: with HistoryTTL a conversation expires that long
// after its last Append, and comes back with a new epoch.
func TestStore_HistoryTTL(t *testing.T) {
	prefix := newPrefix("ttl")
	s, client := newStore(t, redisstore.Options{Prefix: prefix, HistoryTTL: 50 * time.Millisecond})
	conv := store.DirectConv("alice", "bob")
	appendOK(t, s, store.AppendRequest{Msg: dm("m1", "alice", "bob")})
	p, err := s.History(t.Context(), conv, store.Query{})
	require.NoError(t, err)
	require.Len(t, p.Items, 1)
	ttl, err := client.PTTL(t.Context(), prefix+"{c:"+conv+"}h").Result()
	require.NoError(t, err)
	assert.LessOrEqual(t, ttl, 50*time.Millisecond)

	time.Sleep(100 * time.Millisecond)
	q, err := s.History(t.Context(), conv, store.Query{})
	require.NoError(t, err)
	assert.Empty(t, q.Items)
	assert.NotEqual(t, p.Epoch, q.Epoch)
	m := appendOK(t, s, store.AppendRequest{Msg: dm("m2", "alice", "bob")})
	assert.Equal(t, uint64(1), m.Seq)
}

// TestStore_AckedAppendSurvivesRedisCrashWithAOF: with appendonly yes and
// appendfsync always, everything acknowledged before redis-server is
// killed with SIGKILL is there after it restarts from its AOF.
func TestStore_AckedAppendSurvivesRedisCrashWithAOF(t *testing.T) {
	needRedis(t)
	srv, err := redistest.StartIn(t.TempDir(), 0, "--appendonly", "yes", "--appendfsync", "always")
	require.NoError(t, err)
	t.Cleanup(srv.Stop)

	ctx := t.Context()
	s, err := redisstore.Open(ctx, srv.Addr, redisstore.Options{})
	require.NoError(t, err)
	conv := store.DirectConv("alice", "bob")
	var want []store.Message
	for i := 1; i <= 20; i++ {
		m := dm(fmt.Sprint("m", i), "alice", "bob")
		m.Body = []byte{'{', '}', 0, 0xff, byte(i)}
		want = append(want, appendOK(t, s, store.AppendRequest{Msg: m, Pending: []string{"bob"}, CID: fmt.Sprint("c", i)}))
	}
	require.NoError(t, s.Ack(ctx, "bob", "m1", "m2"))
	require.NoError(t, s.Join(ctx, "go", "alice"))
	before, err := s.History(ctx, conv, store.Query{})
	require.NoError(t, err)

	srv.Kill()
	_, err = s.History(ctx, conv, store.Query{})
	require.Error(t, err, "the server is down")
	require.NoError(t, s.Close())
	require.NoError(t, srv.Restart())

	s, err = redisstore.Open(ctx, srv.Addr, redisstore.Options{})
	require.NoError(t, err)
	defer s.Close()
	after, err := s.History(ctx, conv, store.Query{})
	require.NoError(t, err)
	assert.Equal(t, before.Epoch, after.Epoch)
	assert.Equal(t, want, after.Items)
	q, err := s.Pending(ctx, "bob")
	require.NoError(t, err)
	assert.Equal(t, want[2:], q)
	m, dup, err := s.Append(ctx, store.AppendRequest{Msg: dm("resend", "alice", "bob"), CID: "c20"})
	require.NoError(t, err)
	assert.True(t, dup)
	assert.Equal(t, want[19], m)
	rooms, err := s.Rooms(ctx, "alice")
	require.NoError(t, err)
	assert.Equal(t, []string{"go"}, rooms)
	next := appendOK(t, s, store.AppendRequest{Msg: dm("m21", "alice", "bob")})
	assert.Equal(t, uint64(21), next.Seq)
}

func TestNew_RejectsRingClients(t *testing.T) {
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cluster.Close()
	_, err := redisstore.New(cluster, redisstore.Options{})
	assert.NoError(t, err, "a Redis Cluster is supported")
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	_, err = redisstore.New(ring, redisstore.Options{})
	assert.ErrorIs(t, err, redisstore.ErrUnsupportedClient)
	_, err = redisstore.New(nil, redisstore.Options{})
	assert.Error(t, err)
}

func TestClose_ClosesTheClientOnlyWhenOwned(t *testing.T) {
	srv := needRedis(t)
	for _, own := range []bool{false, true} {
		client := redis.NewClient(&redis.Options{Addr: srv.Addr})
		s, err := redisstore.New(client, redisstore.Options{Prefix: newPrefix("close"), CloseClient: own})
		require.NoError(t, err)
		require.NoError(t, s.Ping(t.Context()))
		require.NoError(t, s.Close())
		assert.ErrorIs(t, s.Ping(t.Context()), store.ErrClosed)
		err = client.Ping(t.Context()).Err()
		if own {
			assert.ErrorIs(t, err, redis.ErrClosed, "CloseClient: the client is closed")
		} else {
			assert.NoError(t, err, "the caller's client stays open")
			require.NoError(t, client.Close())
		}
	}
}

func TestOpen(t *testing.T) {
	srv := needRedis(t)
	t.Run("URLWithDatabase", func(t *testing.T) {
		prefix := newPrefix("url")
		s, err := redisstore.Open(t.Context(), "redis://"+srv.Addr+"/3", redisstore.Options{Prefix: prefix})
		require.NoError(t, err)
		defer s.Close()
		appendOK(t, s, store.AppendRequest{Msg: dm("m1", "alice", "bob")})
		db3 := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: 3})
		defer db3.Close()
		n, err := db3.Exists(t.Context(), prefix+"{c:"+store.DirectConv("alice", "bob")+"}h").Result()
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "the conversation is in database 3")
		assert.Empty(t, keysWithPrefix(t, srv.Client(t), prefix), "and not in database 0")
	})
	t.Run("BadURL", func(t *testing.T) {
		_, err := redisstore.Open(t.Context(), "redis://"+srv.Addr+"/notanumber", redisstore.Options{})
		assert.Error(t, err)
	})
	t.Run("Unreachable", func(t *testing.T) {
		port, err := redistest.FreePort()
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		_, err = redisstore.Open(ctx, fmt.Sprint("127.0.0.1:", port), redisstore.Options{})
		assert.Error(t, err)
		assert.NoError(t, ctx.Err(), "fails at once instead of waiting for ctx")
	})
}

func TestStore_RejectsEmptyNames(t *testing.T) {
	s, _ := newStore(t, redisstore.Options{})
	ctx := t.Context()
	_, _, err := s.Append(ctx, store.AppendRequest{Msg: dm("m1", "alice", "bob"), Pending: []string{"bob", ""}})
	assert.ErrorIs(t, err, store.ErrInvalid, "an empty pending user")
	_, err = s.Pending(ctx, "")
	assert.ErrorIs(t, err, store.ErrInvalid)
	assert.ErrorIs(t, s.Ack(ctx, "", "m1"), store.ErrInvalid)
	assert.ErrorIs(t, s.Join(ctx, "", "alice"), store.ErrInvalid)
	assert.ErrorIs(t, s.Join(ctx, "go", ""), store.ErrInvalid)
	assert.ErrorIs(t, s.Leave(ctx, "go", ""), store.ErrInvalid)
	_, err = s.Rooms(ctx, "")
	assert.ErrorIs(t, err, store.ErrInvalid)
	_, err = s.Members(ctx, "")
	assert.ErrorIs(t, err, store.ErrInvalid)
	p, err := s.History(ctx, store.DirectConv("alice", "bob"), store.Query{})
	require.NoError(t, err)
	assert.Empty(t, p.Items, "the rejected Append wrote nothing")
}

// TestStore_WrongTypeKeyWritesNothing: a key of the wrong type (written
// by another program) in a user's slot fails that user's step of the
// Append before any write to it (carol's pending hash, her queue, her
// counts, her queue's epoch hash, the sender's read markers, a
// conversation index or its heads hash): the Append returns the error, so
// no receipt, and the key is left as it was. The conversation's step may
// have run: once the key is repaired, the client's resend (same cid)
// completes the Append, the message stored and queued once.
func TestStore_WrongTypeKeyWritesNothing(t *testing.T) {
	for _, key := range []string{"{u:carol}m", "{u:carol}p", "{u:carol}n", "{u:carol}pe", "{u:alice}rm", "{u:bob}ci", "{u:alice}ch"} {
		t.Run(key, func(t *testing.T) {
			prefix := newPrefix("wrongtype")
			s, client := newStore(t, redisstore.Options{Prefix: prefix})
			appendOK(t, s, store.AppendRequest{Msg: dm("d1", "dave", "carol"), Pending: []string{"carol"}})
			if key == "{u:carol}pe" {
				// An empty queue, whose next message starts a new one:
				// the epoch hash is then the first key the step writes
				// (it deletes what an old queue left).
				require.NoError(t, s.Ack(t.Context(), "carol", "d1"))
			}
			require.NoError(t, client.Del(t.Context(), prefix+key).Err())
			require.NoError(t, client.Set(t.Context(), prefix+key, "not the right type", 0).Err())
			_, _, err := s.Append(t.Context(), store.AppendRequest{
				Msg: dm("m1", "alice", "bob"), Pending: []string{"bob", "carol"}, CID: "c1",
			})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "WRONGTYPE")
			v, err := client.Get(t.Context(), prefix+key).Result()
			require.NoError(t, err)
			assert.Equal(t, "not the right type", v, "the key is untouched")

			require.NoError(t, client.Del(t.Context(), prefix+key).Err())
			m, _, err := s.Append(t.Context(), store.AppendRequest{Msg: dm("m1", "alice", "bob"), Pending: []string{"bob", "carol"}, CID: "c1"})
			require.NoError(t, err)
			assert.Equal(t, uint64(1), m.Seq, "stored once")
			p, err := s.History(t.Context(), store.DirectConv("alice", "bob"), store.Query{})
			require.NoError(t, err)
			assert.Equal(t, []string{"m1"}, ids(p.Items))
			for _, u := range []string{"bob", "carol"} {
				q, err := s.Pending(t.Context(), u)
				require.NoError(t, err)
				n := 0
				for _, it := range q {
					if it.ID == "m1" {
						n++
					}
				}
				assert.Equal(t, 1, n, "m1 queued once for %s", u)
			}
			items, _, err := s.Conversations(t.Context(), "bob", 0)
			require.NoError(t, err)
			if assert.Len(t, items, 1) {
				assert.Equal(t, uint64(1), items[0].Seq)
			}
		})
	}
}

func TestStore_DamagedValueIsErrCorrupt(t *testing.T) {
	prefix := newPrefix("corrupt")
	s, client := newStore(t, redisstore.Options{Prefix: prefix})
	conv := store.DirectConv("alice", "bob")
	appendOK(t, s, store.AppendRequest{Msg: dm("m1", "alice", "bob"), Pending: []string{"bob"}})
	for _, bad := range []string{"garbage", "1:", "1:\x02rest", "1:\x01\x05ab", "x:\x01"} {
		require.NoError(t, client.HSet(t.Context(), prefix+"{c:"+conv+"}h", "1", bad).Err())
		_, err := s.History(t.Context(), conv, store.Query{})
		assert.ErrorIs(t, err, redisstore.ErrCorrupt, "%q", bad)
		require.NoError(t, client.HSet(t.Context(), prefix+"{u:bob}m", "m1", bad).Err())
		_, err = s.Pending(t.Context(), "bob")
		assert.ErrorIs(t, err, redisstore.ErrCorrupt, "%q", bad)
	}
}

// TestStore_ScriptCacheFlushed: after Redis lost its script cache (SCRIPT
// FLUSH, a restart), the scripts are sent again.
func TestStore_ScriptCacheFlushed(t *testing.T) {
	s, client := newStore(t, redisstore.Options{})
	appendOK(t, s, store.AppendRequest{Msg: dm("m1", "alice", "bob"), Pending: []string{"bob"}})
	require.NoError(t, client.ScriptFlush(t.Context()).Err())
	m := appendOK(t, s, store.AppendRequest{Msg: dm("m2", "alice", "bob"), Pending: []string{"bob"}})
	assert.Equal(t, uint64(2), m.Seq)
	require.NoError(t, client.ScriptFlush(t.Context()).Err())
	p, err := s.History(t.Context(), m.Conv, store.Query{})
	require.NoError(t, err)
	assert.Equal(t, []string{"m1", "m2"}, ids(p.Items))
	require.NoError(t, client.ScriptFlush(t.Context()).Err())
	q, err := s.Pending(t.Context(), "bob")
	require.NoError(t, err)
	assert.Equal(t, []string{"m1", "m2"}, ids(q))
}

// TestStore_CallsAfterCloseDuringUse: Close while other goroutines use an
// owned client; every call returns nil or an error, calls after Close
// return ErrClosed.
func TestStore_CallsAfterCloseDuringUse(t *testing.T) {
	srv := needRedis(t)
	s, err := redisstore.Open(t.Context(), srv.Addr, redisstore.Options{Prefix: newPrefix("closing")})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				_, _, err := s.Append(t.Context(), store.AppendRequest{Msg: dm(fmt.Sprint(w, "-", i), "alice", "bob")})
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if !assert.NoError(t, err) {
					return
				}
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, s.Close())
	wg.Wait()
	_, err = s.History(t.Context(), "c", store.Query{})
	assert.ErrorIs(t, err, store.ErrClosed)
}

// TestStore_InboxAfterConversationLost: when a conversation's key is lost
// and its seqs start again, its index entry is replaced (found through the
// heads hash), not duplicated.
func TestStore_InboxAfterConversationLost(t *testing.T) {
	prefix := newPrefix("inboxlost")
	s, client := newStore(t, redisstore.Options{Prefix: prefix})
	conv := store.DirectConv("alice", "bob")
	for i := 1; i <= 3; i++ {
		appendOK(t, s, store.AppendRequest{Msg: dm(fmt.Sprint("m", i), "alice", "bob")})
	}
	require.NoError(t, client.Del(t.Context(), prefix+"{c:"+conv+"}h").Err())
	m := appendOK(t, s, store.AppendRequest{Msg: dm("m4", "bob", "alice")})
	require.Equal(t, uint64(1), m.Seq)
	for _, user := range []string{"alice", "bob"} {
		items, more, err := s.Conversations(t.Context(), user, 0)
		require.NoError(t, err)
		assert.False(t, more)
		require.Len(t, items, 1, user)
		assert.Equal(t, uint64(1), items[0].Seq, user)
		n, err := client.ZCard(t.Context(), prefix+"{u:"+user+"}ci").Result()
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "one index entry for %s", user)
	}
	items, _, err := s.Conversations(t.Context(), "bob", 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), items[0].Read, "bob's marker moved to his new message")
}
