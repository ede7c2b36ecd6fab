package redisstore_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/internal/redistest"
)

// shared is the redis-server of this test package, started by TestMain.
// It is written once before the tests run and only read after.
var shared struct {
	srv *redistest.Server // nil when redis-server is missing or failed to start
	err error             // why srv is nil
}

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "redisstore-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		shared.srv, shared.err = redistest.StartIn(dir, 0, "--appendonly", "no")
		if shared.srv != nil {
			defer shared.srv.Stop()
		}
		defer stopSharedCluster()
		return m.Run()
	}())
}

// needRedis returns the package's server, or skips the test when
// redis-server is not installed (fails under CI=true, and whenever it is
// installed but did not start).
func needRedis(tb testing.TB) *redistest.Server {
	tb.Helper()
	if shared.srv != nil {
		return shared.srv
	}
	if errors.Is(shared.err, exec.ErrNotFound) && os.Getenv("CI") != "true" {
		tb.Skipf("redis-server not available: %v", shared.err)
	}
	tb.Fatalf("redis-server: %v", shared.err)
	return nil
}

// prefixSeq numbers the key prefixes of the tests' stores.
var prefixSeq atomic.Int64

// newPrefix returns a key prefix no other store of this test run uses.
func newPrefix(name string) string {
	return fmt.Sprintf("test%d-%s:", prefixSeq.Add(1), name)
}

// keysWithPrefix returns the keys of the server starting with prefix,
// which must hold no glob characters.
func keysWithPrefix(tb testing.TB, c *redis.Client, prefix string) []string {
	tb.Helper()
	var keys []string
	iter := c.Scan(tb.Context(), 0, prefix+"*", 1000).Iterator()
	for iter.Next(tb.Context()) {
		keys = append(keys, iter.Val())
	}
	require.NoError(tb, iter.Err())
	return keys
}
