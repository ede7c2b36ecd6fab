package boltstore_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/boltstore"
)

// open opens a store at path and closes it at the end of the test.
func open(t *testing.T, path string, opts boltstore.Options) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func msg(conv, id, from, to string) store.Message {
	return store.Message{ID: id, Conv: conv, TS: 1_700_000_000_000, Cmd: 10, From: from, To: to,
		Body: []byte(fmt.Sprintf(`{"content":%q}`, id))}
}

func direct(from, to, id, cid string) store.AppendRequest {
	return store.AppendRequest{Msg: msg(store.DirectConv(from, to), id, from, to), Pending: []string{to}, CID: cid}
}

func ids(ms []store.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func TestStore_ReopenKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	ctx := t.Context()
	s, err := boltstore.Open(path, boltstore.Options{})
	require.NoError(t, err)
	epoch := s.Epoch()
	require.NotEmpty(t, epoch)

	for i := 1; i <= 5; i++ {
		m, dup, err := s.Append(ctx, direct("alice", "bob", fmt.Sprintf("m%d", i), fmt.Sprintf("c%d", i)))
		require.NoError(t, err)
		require.False(t, dup)
		require.Equal(t, uint64(i), m.Seq)
	}
	require.NoError(t, s.Ack(ctx, "bob", "m2"))
	require.NoError(t, s.Join(ctx, "lobby", "alice"))
	require.NoError(t, s.Join(ctx, "lobby", "bob"))
	require.NoError(t, s.Close())

	s2 := open(t, path, boltstore.Options{})
	assert.Equal(t, epoch, s2.Epoch(), "the epoch lives in the file")
	p, err := s2.History(ctx, store.DirectConv("alice", "bob"), store.Query{})
	require.NoError(t, err)
	assert.Equal(t, epoch, p.Epoch)
	assert.Equal(t, []string{"m1", "m2", "m3", "m4", "m5"}, ids(p.Items))
	assert.Equal(t, uint64(1), p.First)
	assert.Equal(t, uint64(5), p.Last)
	pend, err := s2.Pending(ctx, "bob")
	require.NoError(t, err)
	assert.Equal(t, []string{"m1", "m3", "m4", "m5"}, ids(pend))
	assert.Equal(t, msg(store.DirectConv("alice", "bob"), "m1", "alice", "bob").Body, pend[0].Body)
	members, err := s2.Members(ctx, "lobby")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"alice", "bob"}, members)

	// The cid record survives too, and seqs continue where they stopped.
	m, dup, err := s2.Append(ctx, direct("alice", "bob", "other-id", "c3"))
	require.NoError(t, err)
	assert.True(t, dup)
	assert.Equal(t, "m3", m.ID)
	assert.Equal(t, uint64(3), m.Seq)
	m, dup, err = s2.Append(ctx, direct("bob", "alice", "m6", ""))
	require.NoError(t, err)
	assert.False(t, dup)
	assert.Equal(t, uint64(6), m.Seq)
}

func TestStore_NewFileGetsNewEpoch(t *testing.T) {
	dir := t.TempDir()
	a := open(t, filepath.Join(dir, "a.db"), boltstore.Options{})
	b := open(t, filepath.Join(dir, "b.db"), boltstore.Options{})
	assert.NotEqual(t, a.Epoch(), b.Epoch())
}

func TestOpen_LockedFileFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	open(t, path, boltstore.Options{})

	start := time.Now()
	_, err := boltstore.Open(path, boltstore.Options{OpenTimeout: 200 * time.Millisecond})
	require.ErrorIs(t, err, boltstore.ErrLocked)
	assert.Contains(t, err.Error(), path)
	assert.Less(t, time.Since(start), 10*time.Second, "does not hang")

	_, err = boltstore.Open(path, boltstore.Options{OpenTimeout: -1})
	require.ErrorIs(t, err, boltstore.ErrLocked)
}

func TestOpen_RejectsWithoutOverwriting(t *testing.T) {
	dir := t.TempDir()

	// A valid store, to damage below.
	good := filepath.Join(dir, "good.db")
	s, err := boltstore.Open(good, boltstore.Options{})
	require.NoError(t, err)
	for i := range 300 {
		_, _, err := s.Append(t.Context(), direct("a", "b", fmt.Sprintf("msg-%03d", i), ""))
		require.NoError(t, err)
	}
	require.NoError(t, s.Close())
	goodBytes, err := os.ReadFile(good)
	require.NoError(t, err)
	pageSize := os.Getpagesize()
	require.Greater(t, len(goodBytes), 4*pageSize)

	// A bbolt database of another program.
	foreign := filepath.Join(dir, "foreign.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("accounts"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	}))
	require.NoError(t, db.Close())

	bothMetas := slices.Clone(goodBytes)
	for i := range 2 * pageSize {
		bothMetas[i] ^= 0x5a
	}
	// Keep the magic numbers, so the file still looks like bbolt's.
	copy(bothMetas[16:20], []byte{0xed, 0xda, 0x0c, 0xed})
	copy(bothMetas[pageSize+16:pageSize+20], []byte{0xed, 0xda, 0x0c, 0xed})

	overwritten := slices.Clone(goodBytes)
	for i := 2 * pageSize; i < len(overwritten); i++ {
		overwritten[i] = 0xff
	}

	cases := []struct {
		name    string
		content []byte // nil: use the file at path as is
		path    string
		want    error
	}{
		{name: "text file", content: []byte("hello, this is not a database\n"), want: boltstore.ErrNotBolt},
		{name: "random bytes", content: slices.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, 3000), want: boltstore.ErrNotBolt},
		{name: "short file", content: []byte{0xed, 0xda}, want: boltstore.ErrNotBolt},
		{name: "both meta pages damaged", content: bothMetas, want: boltstore.ErrCorrupt},
		{name: "truncated", content: goodBytes[:3*pageSize], want: boltstore.ErrCorrupt},
		{name: "data pages overwritten", content: overwritten, want: boltstore.ErrCorrupt},
		{name: "foreign bbolt database", path: foreign, want: boltstore.ErrNotStore},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = filepath.Join(dir, fmt.Sprintf("case%d.db", i))
				require.NoError(t, os.WriteFile(path, tc.content, 0o600))
			}
			before, err := os.ReadFile(path)
			require.NoError(t, err)
			s, err := boltstore.Open(path, boltstore.Options{})
			if s != nil {
				_ = s.Close()
			}
			require.ErrorIs(t, err, tc.want)
			assert.Contains(t, err.Error(), path, "the error names the file")
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, before, after, "the file is left untouched")
		})
	}

	t.Run("directory", func(t *testing.T) {
		_, err := boltstore.Open(dir, boltstore.Options{})
		require.ErrorIs(t, err, boltstore.ErrNotBolt)
	})

	t.Run("damaged leaf page with VerifyOnOpen", func(t *testing.T) {
		// Find a leaf page (flags 0x02) holding stored messages and break
		// its page type; only a walk of the tree notices.
		damaged := slices.Clone(goodBytes)
		found := false
		for off := 2 * pageSize; off+pageSize <= len(damaged); off += pageSize {
			page := damaged[off : off+pageSize]
			if page[8] == 0x02 && bytes.Contains(page, []byte("msg-100")) {
				page[8] = 0x00
				found = true
				break
			}
		}
		require.True(t, found, "a leaf page with messages")
		path := filepath.Join(dir, "leaf.db")
		require.NoError(t, os.WriteFile(path, damaged, 0o600))
		_, err := boltstore.Open(path, boltstore.Options{VerifyOnOpen: true})
		require.ErrorIs(t, err, boltstore.ErrCorrupt)
		assert.Contains(t, err.Error(), path)
		after, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, damaged, after, "the file is left untouched")

	})

	t.Run("sound file with VerifyOnOpen", func(t *testing.T) {
		s := open(t, good, boltstore.Options{VerifyOnOpen: true})
		p, err := s.History(t.Context(), store.DirectConv("a", "b"), store.Query{Limit: 100})
		require.NoError(t, err)
		assert.Len(t, p.Items, 100)
	})

	t.Run("empty file becomes a store", func(t *testing.T) {
		path := filepath.Join(dir, "empty.db")
		require.NoError(t, os.WriteFile(path, nil, 0o600))
		s := open(t, path, boltstore.Options{})
		assert.NotEmpty(t, s.Epoch())
	})
}

// TestStore_ConcurrentAppendsKeepSeqGapless runs many writers on a few
// conversations; run it under -race.
func TestStore_ConcurrentAppendsKeepSeqGapless(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "hub.db"), boltstore.Options{})
	const (
		writers = 64
		perW    = 40
		convs   = 3
	)
	type got struct {
		conv string
		seq  uint64
		id   string
	}
	results := make(chan got, writers*perW)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perW {
				conv := fmt.Sprintf("r:room%d", (w+i)%convs)
				id := fmt.Sprintf("w%d-%d", w, i)
				m, dup, err := s.Append(t.Context(), store.AppendRequest{
					Msg:     msg(conv, id, fmt.Sprintf("u%d", w), "x"),
					Pending: []string{fmt.Sprintf("p%d", w%5)},
					CID:     id,
				})
				if !assert.NoError(t, err) || !assert.False(t, dup) {
					return
				}
				results <- got{conv, m.Seq, id}
			}
		})
	}
	wg.Wait()
	close(results)

	seqs := map[string][]uint64{}
	byID := map[string]uint64{}
	for g := range results {
		seqs[g.conv] = append(seqs[g.conv], g.seq)
		byID[g.id] = g.seq
	}
	total := 0
	for conv, ss := range seqs {
		slices.Sort(ss)
		for i, seq := range ss {
			require.Equal(t, uint64(i+1), seq, "conversation %s: seqs are 1..n without gaps or repeats", conv)
		}
		total += len(ss)

		// The stored history agrees with what Append returned.
		p, err := s.History(t.Context(), conv, store.Query{Since: 0, Limit: 10_000})
		require.NoError(t, err)
		require.Len(t, p.Items, len(ss))
		for i, m := range p.Items {
			assert.Equal(t, uint64(i+1), m.Seq)
			assert.Equal(t, byID[m.ID], m.Seq, "message %s", m.ID)
		}
	}
	assert.Equal(t, writers*perW, total)

	// Each pending queue holds its writers' messages in seq order per conversation.
	n := 0
	for u := range 5 {
		pend, err := s.Pending(t.Context(), fmt.Sprintf("p%d", u))
		require.NoError(t, err)
		last := map[string]uint64{}
		for _, m := range pend {
			assert.Greater(t, m.Seq, last[m.Conv], "pending order follows commit order")
			last[m.Conv] = m.Seq
		}
		n += len(pend)
	}
	assert.Equal(t, writers*perW, n)
}

func TestStore_HistoryRetention(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "hub.db"), boltstore.Options{MaxHistory: 10, CheckpointEvery: 7})
	conv := store.DirectConv("a", "b")
	for i := 1; i <= 25; i++ {
		_, _, err := s.Append(t.Context(), store.AppendRequest{Msg: msg(conv, fmt.Sprint(i), "a", "b")})
		require.NoError(t, err)
	}
	p, err := s.History(t.Context(), conv, store.Query{Limit: 100})
	require.NoError(t, err)
	assert.Equal(t, uint64(16), p.First)
	assert.Equal(t, uint64(25), p.Last)
	require.Len(t, p.Items, 10)
	assert.Equal(t, uint64(16), p.Items[0].Seq)
	assert.False(t, p.More)

	p, err = s.History(t.Context(), conv, store.Query{Since: 3, Limit: 2})
	require.NoError(t, err)
	assert.Equal(t, []uint64{16, 17}, []uint64{p.Items[0].Seq, p.Items[1].Seq})
	assert.True(t, p.More)
}

// TestStore_PendingBoundsAcrossReopen: the bounds' counts live in the
// file: after Close and Open a full queue is still full, and an ack made
// before the reopen still counts.
func TestStore_PendingBoundsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	opts := boltstore.Options{MaxPending: 3, MaxPendingPerSender: 2}
	s, err := boltstore.Open(path, opts)
	require.NoError(t, err)
	reopen := func() {
		t.Helper()
		require.NoError(t, s.Close())
		require.NoError(t, boltstore.CheckQueues(path))
		s, err = boltstore.Open(path, opts)
		require.NoError(t, err)
	}
	defer func() { _ = s.Close() }()
	appendErr := func(from, id string) error {
		_, _, err := s.Append(t.Context(), direct(from, "b", id, ""))
		return err
	}
	require.NoError(t, appendErr("a", "1"))
	require.NoError(t, appendErr("a", "2"))
	require.ErrorIs(t, appendErr("a", "3"), store.ErrPendingFull)
	require.NoError(t, appendErr("c", "4"))
	reopen()
	require.ErrorIs(t, appendErr("a", "5"), store.ErrPendingFull, "a's share, after reopen")
	require.ErrorIs(t, appendErr("d", "6"), store.ErrPendingFull, "the total, after reopen")

	require.NoError(t, s.Ack(t.Context(), "b", "1"))
	reopen()
	require.NoError(t, appendErr("a", "7"))
	require.ErrorIs(t, appendErr("a", "8"), store.ErrPendingFull)
	pend, err := s.Pending(t.Context(), "b")
	require.NoError(t, err)
	assert.Equal(t, []string{"2", "4", "7"}, ids(pend))

	require.NoError(t, s.Ack(t.Context(), "b", "2", "4", "7"))
	reopen()
	pend, err = s.Pending(t.Context(), "b")
	require.NoError(t, err)
	assert.Empty(t, pend)
	require.NoError(t, appendErr("d", "9"))
}

// TestStore_QueuedMessageOutlivesHistory: a message its history no longer
// holds stays in the log while a queue holds it (Pending and the pages of
// PendingPage return it), and leaves with the last ack. The history is
// trimmed by a later checkpoint (Index) or in the checkpoint that indexes
// the message (AtOnce).
func TestStore_QueuedMessageOutlivesHistory(t *testing.T) {
	for _, c := range []struct {
		name  string
		every int
	}{{"Index", 1}, {"AtOnce", 0}} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "hub.db")
			opts := boltstore.Options{MaxHistory: 3, CheckpointEvery: c.every}
			s, err := boltstore.Open(path, opts)
			require.NoError(t, err)
			// reopen closes the store, checks the file and returns the
			// number of its log records, and opens it again.
			reopen := func() int {
				t.Helper()
				require.NoError(t, s.Close())
				require.NoError(t, boltstore.CheckQueues(path))
				n := countLog(t, path)
				s, err = boltstore.Open(path, opts)
				require.NoError(t, err)
				return n
			}
			defer func() { _ = s.Close() }()
			// queued checks user's queue, whole and in pages of 2.
			queued := func(user string, want ...string) {
				t.Helper()
				pend, err := s.Pending(t.Context(), user)
				require.NoError(t, err)
				assert.Equal(t, want, ids(pend), "pending of %s", user)
				walked, err := walkPages(t.Context(), s, user, 2)
				require.NoError(t, err)
				assert.Equal(t, want, ids(walked), "pending of %s in pages", user)
			}
			conv := store.DirectConv("a", "b")
			for i := 1; i <= 5; i++ {
				req := direct("a", "b", fmt.Sprint(i), fmt.Sprintf("c%d", i))
				req.Pending = []string{"b", "c"}
				_, _, err := s.Append(t.Context(), req)
				require.NoError(t, err)
			}
			queued("b", "1", "2", "3", "4", "5") // Index: trimmed already (or being)
			assert.Equal(t, 5, reopen(), "log records")
			p, err := s.History(t.Context(), conv, store.Query{})
			require.NoError(t, err)
			assert.Equal(t, []string{"3", "4", "5"}, ids(p.Items))
			queued("b", "1", "2", "3", "4", "5")
			queued("c", "1", "2", "3", "4", "5")

			require.NoError(t, s.Ack(t.Context(), "b", "1", "2"))
			require.NoError(t, s.Ack(t.Context(), "c", "1"))
			assert.Equal(t, 4, reopen(), "1 left the last queue, 2 is still in c's")
			queued("c", "2", "3", "4", "5")

			require.NoError(t, s.Ack(t.Context(), "c", "2", "3"))
			assert.Equal(t, 3, reopen(), "the history's three")
		})
	}
}

// countLog returns the number of records in the log of the store file at
// path, which must be closed.
func countLog(t *testing.T, path string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	n := 0
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte("log")).Stats().KeyN
		return nil
	}))
	return n
}

func TestStore_CIDRecordsBounded(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "hub.db"), boltstore.Options{MaxCIDs: 5, CheckpointEvery: 1})
	for i := 1; i <= 100; i++ {
		_, _, err := s.Append(t.Context(), direct("a", "b", fmt.Sprint(i), fmt.Sprintf("c%d", i)))
		require.NoError(t, err)
	}
	// The newest records are kept...
	m, dup, err := s.Append(t.Context(), direct("a", "b", "again", "c100"))
	require.NoError(t, err)
	assert.True(t, dup)
	assert.Equal(t, "100", m.ID)
	// ...the oldest were trimmed, so the same cid is a new message now.
	m, dup, err = s.Append(t.Context(), direct("a", "b", "fresh", "c1"))
	require.NoError(t, err)
	assert.False(t, dup)
	assert.Equal(t, "fresh", m.ID)
	assert.Equal(t, uint64(101), m.Seq)
}

func TestStore_DuplicatesInOneBatch(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "hub.db"), boltstore.Options{})
	const n = 50
	var wg sync.WaitGroup
	got := make([]store.Message, n)
	dups := make([]bool, n)
	for i := range n {
		wg.Go(func() {
			var err error
			got[i], dups[i], err = s.Append(t.Context(), direct("a", "b", fmt.Sprint(i), "same-cid"))
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	first := 0
	for i := range n {
		if !dups[i] {
			first++
		}
		assert.Equal(t, uint64(1), got[i].Seq)
		assert.Equal(t, got[0].ID, got[i].ID, "every call returns the one stored message")
	}
	assert.Equal(t, 1, first, "exactly one Append stored the message")
	pend, err := s.Pending(t.Context(), "b")
	require.NoError(t, err)
	assert.Len(t, pend, 1)
}

func TestStore_InvalidRequestDoesNotFailOthers(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "hub.db"), boltstore.Options{})
	tooLong := string(make([]byte, bolt.MaxKeySize+1))
	bad := []store.AppendRequest{
		{Msg: store.Message{ID: "x", From: "a"}},
		{Msg: store.Message{Conv: "c", From: "a"}},
		{Msg: store.Message{Conv: "c", ID: "x"}},
		{Msg: store.Message{Conv: tooLong, ID: "x", From: "a"}},
		{Msg: msg("c", "x", "a", "b"), Pending: []string{""}},
		{Msg: msg("c", "x", "a", "b"), Pending: []string{tooLong}},
	}
	var wg sync.WaitGroup
	for _, req := range bad {
		wg.Go(func() {
			_, _, err := s.Append(t.Context(), req)
			assert.ErrorIs(t, err, store.ErrInvalid)
		})
	}
	for i := range 20 {
		wg.Go(func() {
			_, _, err := s.Append(t.Context(), direct("a", "b", fmt.Sprint(i), ""))
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	p, err := s.History(t.Context(), store.DirectConv("a", "b"), store.Query{Limit: 100})
	require.NoError(t, err)
	assert.Len(t, p.Items, 20)
	assert.ErrorIs(t, s.Join(t.Context(), "", "a"), store.ErrInvalid)
	assert.ErrorIs(t, s.Join(t.Context(), "r", ""), store.ErrInvalid)
}

func TestStore_CloseFlushesAndRefuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	s, err := boltstore.Open(path, boltstore.Options{})
	require.NoError(t, err)

	// Writers racing with Close either succeed (and are on disk) or get ErrClosed.
	const n = 200
	var wg sync.WaitGroup
	okIDs := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprint(i)
			_, _, err := s.Append(context.Background(), direct("a", "b", id, ""))
			if err == nil {
				okIDs <- id
				return
			}
			assert.ErrorIs(t, err, store.ErrClosed)
		})
		if i == n/2 {
			require.NoError(t, s.Close())
		}
	}
	wg.Wait()
	close(okIDs)
	require.NoError(t, s.Close(), "Close is idempotent")

	_, _, err = s.Append(t.Context(), direct("a", "b", "late", ""))
	assert.ErrorIs(t, err, store.ErrClosed)
	_, err = s.History(t.Context(), "c", store.Query{})
	assert.ErrorIs(t, err, store.ErrClosed)
	_, err = s.Pending(t.Context(), "b")
	assert.ErrorIs(t, err, store.ErrClosed)
	assert.ErrorIs(t, s.Ack(t.Context(), "b", "1"), store.ErrClosed)
	assert.ErrorIs(t, s.Join(t.Context(), "r", "b"), store.ErrClosed)
	_, err = s.Rooms(t.Context(), "b")
	assert.ErrorIs(t, err, store.ErrClosed)

	s2 := open(t, path, boltstore.Options{})
	pend, err := s2.Pending(t.Context(), "b")
	require.NoError(t, err)
	var want []string
	for id := range okIDs {
		want = append(want, id)
	}
	assert.ElementsMatch(t, want, ids(pend), "every write that returned nil is in the file")
}

func TestStore_CancelledContext(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "hub.db"), boltstore.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _, err := s.Append(ctx, direct("a", "b", "1", ""))
	assert.ErrorIs(t, err, context.Canceled)
	_, err = s.History(ctx, store.DirectConv("a", "b"), store.Query{})
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, s.Join(ctx, "r", "a"), context.Canceled)

	// Under load, a cancelled write returns ctx.Err() or success, never hangs.
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), time.Duration(i%5)*100*time.Microsecond)
			defer cancel()
			_, _, err := s.Append(ctx, direct("a", "b", fmt.Sprint(i), ""))
			if err != nil {
				assert.ErrorIs(t, err, context.DeadlineExceeded)
			}
		})
	}
	wg.Wait()
	// The conversation's seqs are still gapless whatever was dropped.
	p, err := s.History(t.Context(), store.DirectConv("a", "b"), store.Query{Limit: 1000})
	require.NoError(t, err)
	for i, m := range p.Items {
		assert.Equal(t, uint64(i+1), m.Seq)
	}
}

func TestStore_NoSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	s, err := boltstore.Open(path, boltstore.Options{NoSync: true})
	require.NoError(t, err)
	_, _, err = s.Append(t.Context(), direct("a", "b", "1", ""))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	s2 := open(t, path, boltstore.Options{})
	pend, err := s2.Pending(t.Context(), "b")
	require.NoError(t, err)
	assert.Equal(t, []string{"1"}, ids(pend))
}

// TestStore_ReadsDuringCheckpoints reads while writers append and ack and
// checkpoints move the writes from the log into the index every few
// records: a reader must never see a message twice, miss one that an
// Append returned before the read began, or see a gap in the seqs. The
// same goes for a walk of PendingPage, whose pages meet checkpoints
// anywhere: before, between and during them.
func TestStore_ReadsDuringCheckpoints(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "hub.db"), boltstore.Options{CheckpointEvery: 5})
	conv := store.DirectConv("a", "b")
	const n = 300
	var (
		mu       sync.Mutex // guards returned
		returned = map[string]uint64{}
	)
	done := make(chan struct{})
	var writers sync.WaitGroup
	writers.Go(func() {
		for i := range n {
			id := fmt.Sprintf("m%03d", i)
			m, _, err := s.Append(t.Context(), direct("a", "b", id, id))
			if !assert.NoError(t, err) {
				return
			}
			mu.Lock()
			returned[id] = m.Seq
			mu.Unlock()
			if i%3 == 0 { // ack every third message right away
				assert.NoError(t, s.Ack(t.Context(), "b", id))
			}
		}
	})
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				mu.Lock()
				before := len(returned)
				mu.Unlock()

				p, err := s.History(t.Context(), conv, store.Query{Limit: n})
				if !assert.NoError(t, err) {
					return
				}
				for i, m := range p.Items {
					if !assert.Equal(t, uint64(i+1), m.Seq, "history is gapless and once") {
						return
					}
				}
				assert.GreaterOrEqual(t, len(p.Items), before, "history holds every returned append")

				pend, err := s.Pending(t.Context(), "b")
				if !assert.NoError(t, err) {
					return
				}
				seen := map[string]bool{}
				last := uint64(0)
				for _, m := range pend {
					assert.False(t, seen[m.ID], "pending %s twice", m.ID)
					seen[m.ID] = true
					assert.Greater(t, m.Seq, last, "pending in order")
					last = m.Seq
				}

				// A walk returns what Append returned before it began,
				// unless acked (every third), once and in order.
				mu.Lock()
				var want []string
				for id := range returned {
					if seqIndex(id)%3 != 0 {
						want = append(want, id)
					}
				}
				mu.Unlock()
				walked, err := walkPages(t.Context(), s, "b", 7)
				if !assert.NoError(t, err) {
					return
				}
				seen = map[string]bool{}
				last = 0
				for _, m := range walked {
					assert.False(t, seen[m.ID], "walk: %s twice", m.ID)
					seen[m.ID] = true
					assert.Greater(t, m.Seq, last, "walk in order")
					last = m.Seq
				}
				for _, id := range want {
					assert.True(t, seen[id], "walk: %s missing", id)
				}
			}
		})
	}
	writers.Wait()
	close(done)
	readers.Wait()

	pend, err := s.Pending(t.Context(), "b")
	require.NoError(t, err)
	assert.Len(t, pend, n-n/3)
	for _, m := range pend {
		assert.NotEqual(t, 0, seqIndex(m.ID)%3, "acked %s is gone", m.ID)
	}
}

func seqIndex(id string) int {
	var i int
	_, _ = fmt.Sscanf(id, "m%03d", &i)
	return i
}

// TestOpen_UpgradesLayout4: a file of the previous layout (no senders in
// the queues, no counts, no index by id; history trimming could leave a
// queue entry without its message) is upgraded by Open: the queues keep
// their messages in order, the dangling entry goes, and the bounds count
// what was queued before.
func TestOpen_UpgradesLayout4(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	s, err := boltstore.Open(path, boltstore.Options{})
	require.NoError(t, err)
	for i, from := range []string{"a", "a", "a", "c"} {
		_, _, err := s.Append(t.Context(), direct(from, "b", fmt.Sprint(i+1), ""))
		require.NoError(t, err)
	}
	require.NoError(t, s.Ack(t.Context(), "b", "1"))
	require.NoError(t, s.Close())

	// Turn the file into layout 4.
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"pendc", "pendid", "kept"} {
			if err := tx.DeleteBucket([]byte(name)); err != nil {
				return err
			}
		}
		q := tx.Bucket([]byte("pend")).Bucket([]byte("b"))
		var keys [][]byte
		if err := q.ForEach(func(k, _ []byte) error {
			keys = append(keys, append([]byte(nil), k...))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range keys {
			if err := q.Put(k, []byte{}); err != nil {
				return err
			}
		}
		dangling := make([]byte, 8)
		dangling[0] = 0x7f
		if err := q.Put(dangling, []byte{}); err != nil {
			return err
		}
		n := make([]byte, 8)
		n[7] = byte(len(keys) + 1)
		if err := tx.Bucket([]byte("pendn")).Put([]byte("b"), n); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("format"), []byte("wshub-boltstore-4"))
	}))
	require.NoError(t, db.Close())

	opts := boltstore.Options{MaxPendingPerSender: 3}
	s = open(t, path, opts)
	pend, err := s.Pending(t.Context(), "b")
	require.NoError(t, err)
	assert.Equal(t, []string{"2", "3", "4"}, ids(pend))
	_, _, err = s.Append(t.Context(), direct("a", "b", "5", ""))
	require.NoError(t, err, "a has 2 of 3 queued")
	_, _, err = s.Append(t.Context(), direct("a", "b", "6", ""))
	require.ErrorIs(t, err, store.ErrPendingFull, "a has 3 of 3 queued")
	require.NoError(t, s.Close())
	require.NoError(t, boltstore.CheckQueues(path))
	s = open(t, path, opts)
	require.NoError(t, s.Ack(t.Context(), "b", "2"))
	_, _, err = s.Append(t.Context(), direct("a", "b", "7", ""))
	require.NoError(t, err)
}

// TestBoltStore_InboxCheckpointed checks that checkpoints keep the
// conversation index and the read markers consistent (CheckQueues runs
// checkInbox) and that they survive reopen from the index alone.
func TestBoltStore_InboxCheckpointed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	s, err := boltstore.Open(path, boltstore.Options{CheckpointEvery: 1})
	require.NoError(t, err)
	ctx := t.Context()
	for i, p := range []string{"bob", "carol", "bob", "dave"} {
		m := store.Message{ID: fmt.Sprintf("m%d", i), Conv: store.DirectConv("alice", p), TS: int64(i), Cmd: 10, From: "alice", To: p}
		_, _, err := s.Append(ctx, store.AppendRequest{Msg: m})
		require.NoError(t, err)
	}
	marker, moved, err := s.MarkRead(ctx, "bob", store.DirectConv("alice", "bob"), 10)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), marker)
	assert.True(t, moved)
	require.NoError(t, s.Close())
	require.NoError(t, boltstore.CheckQueues(path))

	s, err = boltstore.Open(path, boltstore.Options{})
	require.NoError(t, err)
	defer s.Close()
	items, more, err := s.Conversations(ctx, "alice", 2)
	require.NoError(t, err)
	assert.True(t, more)
	require.Len(t, items, 2)
	assert.Equal(t, []string{"dave", "bob"}, []string{items[0].Peer, items[1].Peer})
	assert.Equal(t, store.ConvInfo{Conv: store.DirectConv("alice", "bob"), Kind: store.ConvDirect, Peer: "bob",
		Seq: 2, TS: 2, Read: 2, Seen: 2}, items[1])
}

// Close writes bbolt's freelist (commits skip it), so that the next Open
// reads it rather than walking every page; a file left by a crash has
// none, and opens all the same.
func TestClose_WritesTheFreelist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	ctx := t.Context()
	for round := range 2 {
		s, err := boltstore.Open(path, boltstore.Options{})
		require.NoError(t, err)
		for i := range 5 {
			_, _, err := s.Append(ctx, direct("a", "b", fmt.Sprint(round, "-", i), ""))
			require.NoError(t, err)
		}
		written, err := boltstore.FreelistWritten(path)
		require.NoError(t, err)
		assert.False(t, written, "round %d: a commit wrote the freelist", round)
		require.NoError(t, s.Close())
		written, err = boltstore.FreelistWritten(path)
		require.NoError(t, err)
		assert.True(t, written, "round %d: Close did not write the freelist", round)
	}
	s := open(t, path, boltstore.Options{})
	page, err := s.History(ctx, store.DirectConv("a", "b"), store.Query{Limit: 20})
	require.NoError(t, err)
	assert.Len(t, page.Items, 10)
}
