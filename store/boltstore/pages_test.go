package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/boltstore"
)

// eachPage walks user's queue page by page with limit, calling fn with
// each page (fn may acknowledge it before the next is read), and returns
// the number of messages the pages held. It returns an error instead of
// failing the test, so that other goroutines than the test's may call it.
func eachPage(ctx context.Context, s *boltstore.Store, user string, limit int, fn func(page []store.Message) error) (int, error) {
	n, cursor := 0, ""
	for i := 0; ; i++ {
		if i == 10_000 {
			return n, errors.New("the walk does not end")
		}
		page, next, err := s.PendingPage(ctx, user, cursor, limit)
		if err != nil {
			return n, fmt.Errorf("page %d: %w", i, err)
		}
		n += len(page)
		if err := fn(page); err != nil {
			return n, err
		}
		if next == "" {
			return n, nil
		}
		if len(page) == 0 {
			return n, fmt.Errorf("page %d: empty before the end", i)
		}
		cursor = next
	}
}

// walkPages returns what a walk of user's queue in pages of limit reads.
func walkPages(ctx context.Context, s *boltstore.Store, user string, limit int) ([]store.Message, error) {
	var all []store.Message
	_, err := eachPage(ctx, s, user, limit, func(page []store.Message) error {
		all = append(all, page...)
		return nil
	})
	return all, err
}

// TestStore_PendingPageAcrossCheckpoints checkpoints between the pages of
// a walk, where the conformance group's stores checkpoint when they
// please: a page's messages move from the overlay into the index under
// the cursor, an ack of an index entry waits in the overlay while the
// walk is still in the index, and a page straddles the two.
func TestStore_PendingPageAcrossCheckpoints(t *testing.T) {
	ctx := t.Context()
	// No checkpoints but the ones the test makes.
	s := open(t, filepath.Join(t.TempDir(), "hub.db"), boltstore.Options{CheckpointInterval: time.Hour})
	queue := func(first, end int) {
		t.Helper()
		for i := first; i < end; i++ {
			_, _, err := s.Append(ctx, direct("a", "b", fmt.Sprintf("m%d", i), ""))
			require.NoError(t, err)
		}
	}
	page := func(cursor string) ([]string, string) {
		t.Helper()
		ms, next, err := s.PendingPage(ctx, "b", cursor, 2)
		require.NoError(t, err)
		return ids(ms), next
	}
	checkpoint := func() { boltstore.ExpireNow(s) } // without MaxAge nothing expires

	queue(0, 6)
	got, cursor := page("")
	assert.Equal(t, []string{"m0", "m1"}, got, "from the overlay")
	checkpoint()
	queue(6, 9)
	require.NoError(t, s.Ack(ctx, "b", "m2", "m7")) // an index entry, an overlay entry
	got, cursor = page(cursor)
	assert.Equal(t, []string{"m3", "m4"}, got, "from the index, without the acked m2")
	got, cursor = page(cursor)
	assert.Equal(t, []string{"m5", "m6"}, got, "the index's last and the overlay's first")
	checkpoint()
	got, cursor = page(cursor)
	assert.Equal(t, []string{"m8"}, got, "from the index again, without the acked m7")
	assert.Empty(t, cursor, "the end")
}

// TestStore_PendingPageCursors: a cursor is the store's own text, a log
// position in canonical decimal that the log reached; any other text is
// store.ErrInvalid, and a cursor outlives a reopen of the file.
func TestStore_PendingPageCursors(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "hub.db")
	s, err := boltstore.Open(path, boltstore.Options{})
	require.NoError(t, err)
	defer func() { _ = s.Close() }()
	for i := range 4 {
		_, _, err := s.Append(ctx, direct("a", "b", fmt.Sprintf("m%d", i), ""))
		require.NoError(t, err)
	}
	for _, cursor := range []string{
		"0", "01", "+1", "-1", " 1", "1 ", "1.0", "0x1", "one",
		"5",                    // past the last position (4)
		"18446744073709551615", // the largest position: one past it is 0
		"18446744073709551616", // no uint64
	} {
		_, _, err := s.PendingPage(ctx, "b", cursor, 10)
		assert.ErrorIs(t, err, store.ErrInvalid, "cursor %q", cursor)
	}

	page, cursor, err := s.PendingPage(ctx, "b", "", 2)
	require.NoError(t, err)
	require.Equal(t, []string{"m0", "m1"}, ids(page))
	require.NoError(t, s.Close())
	s, err = boltstore.Open(path, boltstore.Options{})
	require.NoError(t, err)
	page, cursor, err = s.PendingPage(ctx, "b", cursor, 2)
	require.NoError(t, err)
	assert.Equal(t, []string{"m2", "m3"}, ids(page), "after a reopen")
	assert.Empty(t, cursor)
}

// TestStore_PendingPageAckWork walks a checkpointed queue as the hub does,
// acknowledging each page before reading the next, with no checkpoint
// during the walk: the acks of the index's entries pile up in the overlay.
// A page must not copy them all (the walk would do O(N²/limit) work); it
// looks up, at most, the ids of the entries it reads. Some entries in the
// middle, more than a page of them, are acknowledged before the walk, so
// that pages are read past acknowledged entries too.
func TestStore_PendingPageAckWork(t *testing.T) {
	const queued, limit = 1000, 10
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "hub.db"), boltstore.Options{NoSync: true, CheckpointInterval: time.Hour})
	var want, skipped []string
	for i := range queued {
		id := fmt.Sprintf("m%d", i)
		_, _, err := s.Append(ctx, direct("a", "b", id, ""))
		require.NoError(t, err)
		if i >= 500 && i < 535 {
			skipped = append(skipped, id)
		} else {
			want = append(want, id)
		}
	}
	boltstore.ExpireNow(s) // the queue into the index (nothing expires)
	require.NoError(t, s.Ack(ctx, "b", skipped...))
	checkpoints := s.Stats().Checkpoints
	work := boltstore.CountAckWork(s)

	var walked []string
	_, err := eachPage(ctx, s, "b", limit, func(page []store.Message) error {
		walked = append(walked, ids(page)...)
		if len(page) == 0 {
			return nil
		}
		return s.Ack(ctx, "b", ids(page)...)
	})
	require.NoError(t, err)
	assert.Equal(t, want, walked)
	require.Equal(t, checkpoints, s.Stats().Checkpoints, "a checkpoint during the walk")
	// An entry is looked up once, and again as the one more of its page
	// that tells whether more follow.
	t.Logf("%d acks looked up by a walk of %d messages in pages of %d", work.Load(), queued, limit)
	assert.LessOrEqual(t, work.Load(), int64(2*queued), "acks copied or looked up by a walk of %d messages", queued)
}
