package redistest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/internal/redistest"
)

func TestStartCluster_FormsAndFailsOver(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cc := c.Client(t)
	for i := range 100 {
		require.NoError(t, cc.Set(ctx, fmt.Sprint("k", i), i, 0).Err())
	}
	// Replication is asynchronous: wait until every master's replica has
	// the keys, or the failover below may lose some.
	require.NoError(t, cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.Do(ctx, "WAIT", 1, 10000).Int()
		if err == nil && n < 1 {
			err = fmt.Errorf("%s: no replica acknowledged", m.Options().Addr)
		}
		return err
	}))
	masters, err := c.Masters(ctx)
	require.NoError(t, err)
	require.Len(t, masters, 3)
	// Every master holds some of the keys.
	for _, m := range masters {
		n, err := m.Client(t).DBSize(ctx).Result()
		require.NoError(t, err)
		require.Positive(t, n, "master %s holds no key", m.Addr)
	}
	masters[0].Kill()
	t.Logf("killed %s", masters[0].Addr)
	require.NoError(t, c.WaitHealthy(ctx))
	masters, err = c.Masters(ctx)
	require.NoError(t, err)
	require.Len(t, masters, 3, "a replica took over")
	for i := range 100 {
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := cc.Get(ctx, fmt.Sprint("k", i)).Err()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				cs, _ := masters[0].Client(t).ClusterSlots(ctx).Result()
				t.Fatalf("k%d: %v (slots %v)", i, err, cs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
