package boltstore

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/wshub/wshub/store"
)

// TestPendingPage_CheckpointBetweenReads checkpoints in the middle of a
// page: after its first read of the index (m0..m10, of which m1..m10 are
// acknowledged in the overlay) and before the acks are looked up. The acks
// leave the page short, so it reads the index again, which now holds the
// overlay's entries o1 and o2 as well, while the page's copy of the
// overlay holds them too: without the checks of the overlay's generation
// the page would return them twice.
func TestPendingPage_CheckpointBetweenReads(t *testing.T) {
	ctx := t.Context()
	s, err := Open(filepath.Join(t.TempDir(), "hub.db"), Options{NoSync: true, CheckpointInterval: time.Hour})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	appendTo := func(id string) {
		t.Helper()
		_, _, err := s.Append(ctx, store.AppendRequest{
			Msg:     store.Message{ID: id, Conv: store.DirectConv("a", "b"), From: "a", To: "b", Body: []byte("{}")},
			Pending: []string{"b"},
		})
		require.NoError(t, err)
	}
	var acked []string
	for i := range 12 {
		appendTo(fmt.Sprintf("m%d", i))
		if i >= 1 && i <= 10 {
			acked = append(acked, fmt.Sprintf("m%d", i))
		}
	}
	ExpireNow(s) // m0..m11 into the index
	require.NoError(t, s.Ack(ctx, "b", acked...))
	appendTo("o1")
	appendTo("o2")

	// The hook runs under mu's read lock, with the acks about to be
	// looked up: the checkpoint commits, then waits for the lock to swap
	// the overlay.
	calls := 0
	checkpointed := make(chan struct{})
	s.mu.Lock()
	s.ackWork = func(int) {
		if calls++; calls > 1 {
			return
		}
		gen := s.ov.gen
		go func() {
			ExpireNow(s)
			close(checkpointed)
		}()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			var at uint64
			if err := s.db.View(func(tx *bolt.Tx) error {
				at = seqOf(tx.Bucket(bucketMeta).Get(keyGen))
				return nil
			}); err != nil {
				t.Error(err)
				return
			}
			if at >= gen {
				return
			}
		}
		t.Error("the checkpoint did not commit")
	}
	s.mu.Unlock()

	page, next, err := s.PendingPage(ctx, "b", "", 10)
	require.NoError(t, err)
	<-checkpointed
	var got []string
	for _, m := range page {
		got = append(got, m.ID)
	}
	assert.Equal(t, []string{"m0", "m11", "o1", "o2"}, got)
	assert.Empty(t, next, "the end")
	assert.Equal(t, 1, calls, "acks looked up once: the page is read again after the checkpoint")
}
