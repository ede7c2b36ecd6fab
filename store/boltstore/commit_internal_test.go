package boltstore

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
)

// TestCommit_FailingRequestDoesNotFailItsBatch runs one batch by hand (no
// committer goroutine) in which one request fails inside the transaction:
// it gets its error, the others are committed, with gapless seqs.
func TestCommit_FailingRequestDoesNotFailItsBatch(t *testing.T) {
	s, err := openFile(filepath.Join(t.TempDir(), "hub.db"), Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.db.Close()) }()

	conv := store.DirectConv("a", "b")
	var batch []*request
	for i := range 6 {
		r, err := newAppendRequest(store.AppendRequest{
			Msg:     store.Message{ID: fmt.Sprint(i), Conv: conv, From: "a", To: "b", Body: []byte("{}")},
			Pending: []string{"b"},
		})
		require.NoError(t, err)
		if i == 2 || i == 4 {
			r.kind = 99 // fails in logRequest, after the others before it were written
		}
		r.ctx = context.Background()
		r.res = make(chan error, 1)
		batch = append(batch, r)
	}
	reqs := append([]*request(nil), batch...) // commit reuses batch's array
	s.commit(batch)

	answered := <-s.notify
	require.Len(t, answered, 4)
	for i, r := range reqs {
		if i == 2 || i == 4 {
			assert.Error(t, <-r.res, "request %d fails", i)
			continue
		}
		assert.Contains(t, answered, r, "request %d is answered by the notifier", i)
	}
	var seqs []uint64
	for _, r := range answered {
		seqs = append(seqs, r.out.Seq)
	}
	assert.Equal(t, []uint64{1, 2, 3, 4}, seqs)

	p, err := s.History(t.Context(), conv, store.Query{})
	require.NoError(t, err)
	var ids []string
	for _, m := range p.Items {
		ids = append(ids, m.ID)
	}
	assert.Equal(t, []string{"0", "1", "3", "5"}, ids)
	pend, err := s.Pending(t.Context(), "b")
	require.NoError(t, err)
	assert.Len(t, pend, 4)
	assert.Equal(t, uint64(4), *s.counts.totals["b"], "the retried transactions' counts were rolled back")
	assert.Equal(t, uint64(4), *s.counts.senders[string(pairKey("b", "a"))])
}

// TestCommit_RefusedAppendDoesNotFailItsBatch runs one batch by hand in
// which appends past a sender's bound are refused, between others that are
// not, and an ack in the same batch makes room for a later append: the
// refused get ErrPendingFull and write nothing, the rest commit in one
// transaction with gapless seqs.
func TestCommit_RefusedAppendDoesNotFailItsBatch(t *testing.T) {
	s, err := openFile(filepath.Join(t.TempDir(), "hub.db"), Options{MaxPendingPerSender: 2})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.db.Close()) }()

	conv := store.DirectConv("a", "b")
	appendReq := func(id, from string) *request {
		r, err := newAppendRequest(store.AppendRequest{
			Msg:     store.Message{ID: id, Conv: conv, From: from, To: "b", Body: []byte("{}")},
			Pending: []string{"b"},
		})
		require.NoError(t, err)
		return r
	}
	ack := &request{kind: opAck, user: "b", ids: []string{"a1", "a1", "nope"}}
	batch := []*request{
		appendReq("a1", "a"),
		appendReq("a2", "a"),
		appendReq("a3", "a"), // refused: a's share is 2
		appendReq("c1", "c"),
		ack,                  // a1 leaves: room for one more of a's
		appendReq("a4", "a"), // stored
		appendReq("a5", "a"), // refused
		appendReq("c2", "c"),
	}
	refused := map[int]bool{2: true, 6: true}
	for _, r := range batch {
		r.ctx = context.Background()
		r.res = make(chan error, 1)
	}
	reqs := append([]*request(nil), batch...) // commit reuses batch's array
	s.commit(batch)

	answered := <-s.notify
	require.Len(t, answered, len(reqs), "every request is answered by the notifier")
	assert.Equal(t, uint64(1), s.stats.commits.Load(), "one transaction, no retry")
	var seqs []uint64
	for i, r := range reqs {
		if refused[i] {
			assert.ErrorIs(t, r.refused, store.ErrPendingFull, "request %d", i)
			assert.Nil(t, r.rec, "request %d logs nothing", i)
			continue
		}
		assert.NoError(t, r.refused, "request %d", i)
		if r.kind == opAppend {
			seqs = append(seqs, r.out.Seq)
		}
	}
	assert.Equal(t, []uint64{1, 2, 3, 4, 5}, seqs)

	p, err := s.History(t.Context(), conv, store.Query{})
	require.NoError(t, err)
	var ids []string
	for _, m := range p.Items {
		ids = append(ids, m.ID)
	}
	assert.Equal(t, []string{"a1", "a2", "c1", "a4", "c2"}, ids)
	pend, err := s.Pending(t.Context(), "b")
	require.NoError(t, err)
	ids = ids[:0]
	for _, m := range pend {
		ids = append(ids, m.ID)
	}
	assert.Equal(t, []string{"a2", "c1", "a4", "c2"}, ids)
	assert.Equal(t, uint64(4), *s.counts.totals["b"], "the committer's count of b's queue")
	assert.Equal(t, uint64(2), *s.counts.senders[string(pairKey("b", "a"))], "of a's messages in it")
	assert.Equal(t, uint64(2), *s.counts.senders[string(pairKey("b", "c"))], "of c's messages in it")
}

// TestCommit_BatchOfRefusalsCommitsNothing: a batch whose appends are all
// refused (or duplicates) is rolled back instead of committed and synced,
// and its callers are answered all the same.
func TestCommit_BatchOfRefusalsCommitsNothing(t *testing.T) {
	s, err := openFile(filepath.Join(t.TempDir(), "hub.db"), Options{MaxPendingPerSender: 1})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.db.Close()) }()
	run := func(ids ...string) []*request {
		var batch []*request
		for _, id := range ids {
			r, err := newAppendRequest(store.AppendRequest{
				Msg:     store.Message{ID: id, Conv: "c", From: "a", To: "b"},
				Pending: []string{"b"},
				CID:     "cid-" + id,
			})
			require.NoError(t, err)
			r.ctx, r.res = context.Background(), make(chan error, 1)
			batch = append(batch, r)
		}
		reqs := append([]*request(nil), batch...)
		s.commit(batch)
		require.Len(t, <-s.notify, len(reqs))
		return reqs
	}
	run("1")
	require.Equal(t, uint64(1), s.stats.commits.Load())
	reqs := run("2", "1", "3") // refused, duplicate, refused
	assert.Equal(t, uint64(1), s.stats.commits.Load(), "nothing to commit")
	assert.ErrorIs(t, reqs[0].refused, store.ErrPendingFull)
	assert.True(t, reqs[1].dup)
	assert.Equal(t, "1", reqs[1].out.ID)
	assert.ErrorIs(t, reqs[2].refused, store.ErrPendingFull)
}
