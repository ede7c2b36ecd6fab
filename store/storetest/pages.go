package storetest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
)

// RunPendingPages checks store.PendingPager, which the stores returned by
// newStore must implement: walks of a pending queue page by page, with
// acknowledgements and appends between the pages. newStore returns a
// fresh, empty store for each subtest (the suite closes it).
func RunPendingPages(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	for _, tc := range pageTests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			require.NotNil(t, s, "newStore returned nil")
			t.Cleanup(func() { assert.NoError(t, s.Close(), "Close at the end of the subtest") })
			tc.fn(t, s)
		})
	}
}

var pageTests = []test{
	{"EmptyQueue", func(t *testing.T, s store.Store) {
		page, next := pageOf(t, s, "bob", "", 10)
		assert.Empty(t, page)
		assert.Empty(t, next)
	}},
	{"WalkIsPendingInPages", func(t *testing.T, s store.Store) {
		queue(t, s, "bob", 0, 10)
		for _, limit := range []int{1, 3, 5, 10, 11, 100} {
			got := walk(t, s, "bob", limit, nil)
			assertSameMessages(t, pending(t, s, "bob"), got, "limit %d", limit)
		}
	}},
	{"LimitBelowOneIsOne", func(t *testing.T, s store.Store) {
		queue(t, s, "bob", 0, 3)
		page, next := pageOf(t, s, "bob", "", 0)
		assert.Equal(t, []string{"m0"}, idsOf(page))
		assert.NotEmpty(t, next)
	}},
	{"AnotherUsersQueueIsApart", func(t *testing.T, s store.Store) {
		queue(t, s, "bob", 0, 3)
		page, next := pageOf(t, s, "carol", "", 10)
		assert.Empty(t, page)
		assert.Empty(t, next)
	}},
	{"AckedDuringTheWalkAreSkipped", func(t *testing.T, s store.Store) {
		queue(t, s, "bob", 0, 9)
		got := walk(t, s, "bob", 3, func(page int) {
			if page == 1 {
				// The first page (the cursor's own message included)
				// and one of the next page.
				require.NoError(t, s.Ack(t.Context(), "bob", "m0", "m1", "m2", "m4"))
			}
		})
		assert.Equal(t, []string{"m0", "m1", "m2", "m3", "m5", "m6", "m7", "m8"}, idsOf(got))
	}},
	{"EnqueuedDuringTheWalkComeLater", func(t *testing.T, s store.Store) {
		queue(t, s, "bob", 0, 4)
		got := walk(t, s, "bob", 3, func(page int) {
			if page == 1 {
				queue(t, s, "bob", 4, 2)
			}
		})
		assert.Equal(t, []string{"m0", "m1", "m2", "m3", "m4", "m5"}, idsOf(got))
	}},
	{"EmptiedAndFilledAgainBetweenPages", func(t *testing.T, s store.Store) {
		queue(t, s, "bob", 0, 5)
		got := walk(t, s, "bob", 3, func(page int) {
			if page == 1 {
				require.NoError(t, s.Ack(t.Context(), "bob", "m0", "m1", "m2", "m3", "m4"))
				require.Empty(t, pending(t, s, "bob"))
				queue(t, s, "bob", 5, 2)
			}
		})
		assert.Equal(t, []string{"m0", "m1", "m2", "m5", "m6"}, idsOf(got))
	}},
	{"BadCursorIsInvalid", func(t *testing.T, s store.Store) {
		queue(t, s, "bob", 0, 2)
		_, _, err := pager(t, s).PendingPage(t.Context(), "bob", "\x00 not a cursor", 10)
		assert.ErrorIs(t, err, store.ErrInvalid)
		_, _, err = pager(t, s).PendingPage(t.Context(), "", "", 10)
		assert.ErrorIs(t, err, store.ErrInvalid, "empty user")
	}},
}

// pager returns s as a store.PendingPager.
func pager(t *testing.T, s store.Store) store.PendingPager {
	t.Helper()
	p, ok := s.(store.PendingPager)
	require.True(t, ok, "%T does not implement store.PendingPager", s)
	return p
}

// queue appends n direct messages to user, ids m<first>... from two
// senders in turn.
func queue(t *testing.T, s store.Store, user string, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		from := []string{"alice", "carol"}[i%2]
		appendOK(t, s, store.AppendRequest{Msg: msg(store.DirectConv(from, user), fmt.Sprintf("m%d", i), from, user), Pending: []string{user}})
	}
}

// pageOf reads one page.
func pageOf(t *testing.T, s store.Store, user, cursor string, limit int) ([]store.Message, string) {
	t.Helper()
	page, next, err := pager(t, s).PendingPage(t.Context(), user, cursor, limit)
	require.NoError(t, err, "PendingPage(%q, %q, %d)", user, cursor, limit)
	if limit < 1 {
		limit = 1
	}
	require.LessOrEqual(t, len(page), limit, "page longer than the limit")
	return page, next
}

// walk reads user's queue page by page until next is "", calling between
// (when not nil) after each page with the number of pages read so far.
func walk(t *testing.T, s store.Store, user string, limit int, between func(page int)) []store.Message {
	t.Helper()
	var all []store.Message
	cursor := ""
	for n := 1; ; n++ {
		require.Less(t, n, 1000, "the walk does not end")
		page, next := pageOf(t, s, user, cursor, limit)
		all = append(all, page...)
		if next == "" {
			return all
		}
		require.NotEmpty(t, page, "an empty page before the end")
		cursor = next
		if between != nil {
			between(n)
		}
	}
}
