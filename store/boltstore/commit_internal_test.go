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
}
