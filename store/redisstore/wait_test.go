package redisstore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/internal/redistest"
	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/redisstore"
)

// startReplicated starts a master and one replica in sync with it.
func startReplicated(t *testing.T) (master, replica *redistest.Server) {
	t.Helper()
	master = redistest.Start(t, "--appendonly", "no")
	host, port, _ := strings.Cut(master.Addr, ":")
	replica = redistest.Start(t, "--appendonly", "no", "--replicaof", host, port)
	rc := replica.Client(t)
	require.Eventually(t, func() bool {
		info, err := rc.Info(t.Context(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	}, 10*time.Second, 20*time.Millisecond, "replica in sync")
	return master, replica
}

// TestStore_WaitForReplica: with WaitReplicas automatic and a replica
// connected, an Append the replica does not acknowledge (it is stopped)
// returns ErrNotReplicated, and so does its resend while the replica is
// stopped; once it answers again, the resend returns the message, whose
// every write the replica then holds.
func TestStore_WaitForReplica(t *testing.T) {
	master, replica := startReplicated(t)
	s, err := redisstore.New(master.Client(t), redisstore.Options{Prefix: "w:", WaitTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	ctx := t.Context()
	_, _, err = s.Append(ctx, directReq("alice", "bob", "m1"))
	require.NoError(t, err, "replica answering")

	replica.Pause()
	t.Cleanup(replica.Resume)
	_, _, err = s.Append(ctx, directReq("alice", "bob", "m2"))
	require.ErrorIs(t, err, redisstore.ErrNotReplicated, "replica stopped")
	_, _, err = s.Append(ctx, directReq("alice", "bob", "m2"))
	require.ErrorIs(t, err, redisstore.ErrNotReplicated, "the resend waits again")
	_, _, err = s.MarkRead(ctx, "bob", store.DirectConv("alice", "bob"), 2)
	require.ErrorIs(t, err, redisstore.ErrNotReplicated, "MarkRead waits as well")

	replica.Resume()
	m, dup, err := s.Append(ctx, directReq("alice", "bob", "m2"))
	require.NoError(t, err)
	assert.True(t, dup)
	assert.Equal(t, uint64(2), m.Seq)

	// The replica holds what the master acknowledged.
	rs, err := redisstore.New(replica.Client(t), redisstore.Options{Prefix: "w:", WaitReplicas: -1})
	require.NoError(t, err)
	q, err := rs.Pending(ctx, "bob")
	require.NoError(t, err)
	assert.Equal(t, []string{"m1", "m2"}, idsOf(q))
}

// TestStore_WaitReplicasExplicit: WaitReplicas 1 on a server without
// replicas refuses every write with ErrNotReplicated; negative never
// waits.
func TestStore_WaitReplicasExplicit(t *testing.T) {
	client := needRedis(t).Client(t)
	s, err := redisstore.New(client, redisstore.Options{Prefix: newPrefix("wait"), WaitReplicas: 1, WaitTimeout: 20 * time.Millisecond})
	require.NoError(t, err)
	_, _, err = s.Append(t.Context(), directReq("alice", "bob", "m1"))
	require.ErrorIs(t, err, redisstore.ErrNotReplicated)
	require.ErrorIs(t, s.Join(t.Context(), "room", "alice"), redisstore.ErrNotReplicated)

	s, err = redisstore.New(client, redisstore.Options{Prefix: newPrefix("wait"), WaitReplicas: -1})
	require.NoError(t, err)
	_, _, err = s.Append(t.Context(), directReq("alice", "bob", "m1"))
	require.NoError(t, err)
}
