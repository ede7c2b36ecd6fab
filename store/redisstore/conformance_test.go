package redisstore_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/redisstore"
	"github.com/wshub/wshub/store/storetest"
)

// quirks are this store's documented departures from the strictest
// contract: cids scoped to conversations, bounds checked before the
// write.
var quirks = storetest.Quirks{BoundsOvershoot: true, CIDPerConversation: true}

// TestRedisStore_Conformance runs the suite with a fresh key prefix (so an
// empty store) per subtest, all on one shared client as hub processes
// would use it.
func TestRedisStore_Conformance(t *testing.T) {
	srv := needRedis(t)
	client := srv.Client(t)
	storetest.RunQuirks(t, quirks, func(t *testing.T) store.Store {
		s, err := redisstore.New(client, redisstore.Options{Prefix: newPrefix("conf")})
		require.NoError(t, err)
		return s
	})
}

// TestRedisStore_PendingPages runs the PendingPager suite, a fresh key
// prefix per subtest.
func TestRedisStore_PendingPages(t *testing.T) {
	srv := needRedis(t)
	client := srv.Client(t)
	storetest.RunPendingPages(t, func(t *testing.T) store.Store {
		s, err := redisstore.New(client, redisstore.Options{Prefix: newPrefix("pages")})
		require.NoError(t, err)
		return s
	})
}

// TestRedisStore_PendingBounds runs the bounds suite, a fresh key prefix
// per subtest. The bounds are checked before Append's first step (see the
// package doc): racing Appends may overshoot them by their number.
func TestRedisStore_PendingBounds(t *testing.T) {
	srv := needRedis(t)
	client := srv.Client(t)
	storetest.RunPendingBoundsQuirks(t, quirks, func(t *testing.T, b storetest.Bounds) store.Store {
		s, err := redisstore.New(client, redisstore.Options{
			Prefix: newPrefix("bounds"), MaxPending: b.MaxPending, MaxPendingPerSender: b.MaxPendingPerSender,
		})
		require.NoError(t, err)
		return s
	})
}

// TestRedisStore_Durable runs the durability suite: reopening is what a
// restarted hub process does, a new connection and Store on the same Redis
// with the same prefix (derived from the subtest's dir).
func TestRedisStore_Durable(t *testing.T) {
	srv := needRedis(t)
	storetest.RunDurable(t, func(t *testing.T, dir string) store.Store {
		s, err := redisstore.Open(t.Context(), srv.Addr, redisstore.Options{Prefix: dir + ":"})
		require.NoError(t, err)
		return s
	})
}
