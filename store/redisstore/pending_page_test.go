package redisstore_test

import (
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/redisstore"
)

// The cases of PendingPage that storetest.RunPendingPages cannot reach:
// they delete or damage the queue's keys by hand, or acknowledge the
// messages after a cursor. Each runs on one server and on the cluster.

// pageStore returns a Store on client with a fresh prefix, and that
// prefix.
func pageStore(t *testing.T, client redis.UniversalClient, name string) (*redisstore.Store, string) {
	t.Helper()
	prefix := newPrefix(name)
	s, err := redisstore.New(client, redisstore.Options{Prefix: prefix, MaxPending: -1, MaxPendingPerSender: -1})
	require.NoError(t, err)
	return s, prefix
}

// enqueue appends the direct messages ids from alice to user, queued for
// user.
func enqueue(t *testing.T, s *redisstore.Store, user string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		_, _, err := s.Append(t.Context(), directReq("alice", user, id))
		require.NoError(t, err, "Append %s", id)
	}
}

// readPage reads one page and returns its ids and the next cursor.
func readPage(t *testing.T, s *redisstore.Store, user, cursor string, limit int) ([]string, string) {
	t.Helper()
	page, next, err := s.PendingPage(t.Context(), user, cursor, limit)
	require.NoError(t, err, "PendingPage(%q, %q, %d)", user, cursor, limit)
	return idsOf(page), next
}

// walkFrom reads pages of limit from cursor until next is "", and
// returns the ids read.
func walkFrom(t *testing.T, s *redisstore.Store, user, cursor string, limit int) []string {
	t.Helper()
	var all []string
	for range 1000 {
		page, next := readPage(t, s, user, cursor, limit)
		all = append(all, page...)
		if next == "" {
			return all
		}
		cursor = next
	}
	t.Fatal("the walk does not end")
	return nil
}

// queueKeys are the keys of user's pending queue under prefix.
func queueKeys(prefix, user string) []string {
	tag := prefix + "{u:" + user + "}"
	return []string{tag + "p", tag + "m", tag + "n", tag + "pe"}
}

// testPendingPageKeys walks queues whose keys are changed between two
// pages by Ack, by hand, or were written without an epoch.
func testPendingPageKeys(t *testing.T, client redis.UniversalClient) {
	// The last messages of the queue, the cursor's own among them, are
	// acknowledged between two pages, the queue not emptied: a message
	// enqueued then comes after the cursor, although the queue's highest
	// score went down.
	t.Run("LastMessagesAckedThenEnqueued", func(t *testing.T) {
		s, _ := pageStore(t, client, "pgtail")
		enqueue(t, s, "bob", "m0", "m1", "m2", "m3")
		page, next := readPage(t, s, "bob", "", 3)
		require.Equal(t, []string{"m0", "m1", "m2"}, page)
		require.NotEmpty(t, next)
		require.NoError(t, s.Ack(t.Context(), "bob", "m2", "m3"))
		enqueue(t, s, "bob", "m4")
		assert.Equal(t, []string{"m4"}, walkFrom(t, s, "bob", next, 3))
	})

	// The queue's keys vanish between two pages (deleted, or lost with
	// the server's data) without the queue being emptied by Ack, and the
	// queue is filled again: the walk returns its new messages, none
	// skipped (the queue gone, they are the queue's only messages; the
	// epoch alone gone, the walk starts the queue again).
	for _, tc := range []struct {
		name string
		del  func(keys []string) []string
	}{
		{"AllQueueKeysLost", func(keys []string) []string { return keys }},
		{"QueueLostEpochLeft", func(keys []string) []string { return keys[:3] }},
		{"EpochLostQueueLeft", func(keys []string) []string { return keys[3:] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, prefix := pageStore(t, client, "pglost")
			enqueue(t, s, "bob", "m0", "m1", "m2", "m3", "m4")
			page, next := readPage(t, s, "bob", "", 3)
			require.Equal(t, []string{"m0", "m1", "m2"}, page)
			require.NotEmpty(t, next)
			require.NoError(t, client.Del(t.Context(), tc.del(queueKeys(prefix, "bob"))...).Err())
			enqueue(t, s, "bob", "m5", "m6")
			got := walkFrom(t, s, "bob", next, 3)
			q, err := s.Pending(t.Context(), "bob")
			require.NoError(t, err)
			if tc.name == "EpochLostQueueLeft" {
				// The documented cost of a lost epoch: the walk starts
				// again at the beginning (a repeat, never a skip).
				assert.Equal(t, []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6"}, got)
				assert.Equal(t, got, idsOf(q))
				return
			}
			assert.Equal(t, []string{"m5", "m6"}, got)
			assert.Equal(t, got, idsOf(q))
		})
	}

	// A queue without epoch (written before queues had one): the first
	// page's cursor gives it one, which the Appends during the walk keep,
	// so the walk returns each message once.
	t.Run("QueueWithoutEpoch", func(t *testing.T) {
		s, prefix := pageStore(t, client, "pgold")
		enqueue(t, s, "bob", "m0", "m1", "m2", "m3", "m4")
		pe := queueKeys(prefix, "bob")[3]
		require.NoError(t, client.Del(t.Context(), pe).Err())
		page, next := readPage(t, s, "bob", "", 2)
		require.Equal(t, []string{"m0", "m1"}, page)
		require.NotEmpty(t, next)
		n, err := client.Exists(t.Context(), pe).Result()
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "the page gave the queue an epoch")
		enqueue(t, s, "bob", "m5")
		require.NoError(t, s.Ack(t.Context(), "bob", "m4"))
		enqueue(t, s, "bob", "m6")
		assert.Equal(t, []string{"m2", "m3", "m5", "m6"}, walkFrom(t, s, "bob", next, 2))
	})

	// Ids of the queue without a value (a partial eviction) are skipped,
	// and the page is filled from the ids after them.
	t.Run("IdsWithoutValueSkipped", func(t *testing.T) {
		s, prefix := pageStore(t, client, "pgholes")
		enqueue(t, s, "bob", "m0", "m1", "m2", "m3", "m4", "m5")
		require.NoError(t, client.HDel(t.Context(), queueKeys(prefix, "bob")[1], "m1", "m2", "m5").Err())
		page, next := readPage(t, s, "bob", "", 2)
		assert.Equal(t, []string{"m0", "m3"}, page)
		require.NotEmpty(t, next)
		page, next = readPage(t, s, "bob", next, 2)
		assert.Equal(t, []string{"m4"}, page)
		assert.Empty(t, next)
	})
}

// TestStore_PendingPageKeys runs testPendingPageKeys on one server.
func TestStore_PendingPageKeys(t *testing.T) {
	testPendingPageKeys(t, needRedis(t).Client(t))
}

// TestCluster_PendingPageKeys runs testPendingPageKeys on the cluster.
func TestCluster_PendingPageKeys(t *testing.T) {
	testPendingPageKeys(t, needCluster(t).Client(t))
}

// TestStore_PendingPageInvalidCursor: texts that are not cursors of the
// Store are rejected with store.ErrInvalid; the Store's own is read.
func TestStore_PendingPageInvalidCursor(t *testing.T) {
	s, _ := newStore(t, redisstore.Options{})
	enqueue(t, s, "bob", "m0", "m1", "m2")
	_, good := readPage(t, s, "bob", "", 1)
	require.NotEmpty(t, good)
	for _, bad := range []string{
		"x", ":", "1", "1:", ":e", "0:e", "01:e", "-1:e", "+1:e", " 1:e", "1:E", "1:e:f", "1:e f",
		"4503599627370497:e", "99999999999999999999:e", "1:" + string(make([]byte, 65)),
		good + "\x00", "1:" + fmt.Sprintf("%065d", 0),
	} {
		_, _, err := s.PendingPage(t.Context(), "bob", bad, 10)
		assert.ErrorIs(t, err, store.ErrInvalid, "%q", bad)
	}
	page, _ := readPage(t, s, "bob", good, 10)
	assert.Equal(t, []string{"m1", "m2"}, page, "the Store's own cursor")
}
