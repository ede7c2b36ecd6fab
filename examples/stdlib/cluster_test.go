package main_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/internal/chaosproxy/chaostest"
	"github.com/wshub/wshub/internal/redistest"
)

// Two example processes on a Redis Cluster (3 masters, 3 replicas) act as
// one hub: direct messages live and queued, a room with members on both,
// presence across them.
func TestExample_TwoProcessesOnARedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3, 1)
	bin := buildExample(t)
	seeds := strings.Join(cl.Addrs()[:3], ",")
	a := launch(t, bin, "-store", "redis", "-redis-cluster", "-redis", seeds)
	b := launch(t, bin, "-store", "redis", "-redis-cluster", "-redis", seeds)
	a.listening(t)
	b.listening(t)

	alice := dialReady(t, a.addr, "alice")
	bob := dialReady(t, b.addr, "bob")
	require.NoError(t, alice.WriteJSON(&wshub.Frame{Cmd: wshub.CmdPresence, IDs: []string{"bob"}}))
	r := nextOfCmd(t, alice, wshub.CmdPresence)
	require.Len(t, r.Items, 1)
	if !*r.Items[0].Online { // bob's connect is announced within a presence interval
		f := nextOfCmd(t, alice, wshub.CmdPresence)
		assert.Equal(t, "bob", f.UserID)
		assert.True(t, *f.Online, "bob is online on the other process")
	}

	require.NoError(t, alice.WriteJSON(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "1", Content: "across a cluster"}))
	assert.Equal(t, uint64(1), nextOfCmd(t, alice, wshub.CmdReceipt).Seq)
	m := nextOfCmd(t, bob, wshub.CmdSingle)
	assert.Equal(t, "across a cluster", m.Content)
	assert.Equal(t, "alice", m.UserID)

	for _, ws := range []*websocket.Conn{alice, bob} {
		require.NoError(t, ws.WriteJSON(&wshub.Frame{Cmd: wshub.CmdJoin, DstID: "lobby"}))
		nextOfCmd(t, ws, wshub.CmdJoin)
	}
	require.NoError(t, bob.WriteJSON(&wshub.Frame{Cmd: wshub.CmdRoom, DstID: "lobby", CID: "2", Content: "hi room"}))
	nextOfCmd(t, bob, wshub.CmdReceipt)
	assert.Equal(t, "hi room", nextOfCmd(t, alice, wshub.CmdRoom).Content)

	// Queued on one process for an offline user, delivered by the other.
	require.NoError(t, alice.WriteJSON(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "carol", CID: "3", Content: "while you were out"}))
	nextOfCmd(t, alice, wshub.CmdReceipt)
	carol := dialReady(t, b.addr, "carol")
	assert.Equal(t, "while you were out", nextOfCmd(t, carol, wshub.CmdSingle).Content)
}

// Two example processes on a Redis Cluster (3 masters with a replica
// each, append-only files fsynced always) act as one hub for 20 clients
// while a master is killed with SIGKILL mid-traffic and its replica takes
// over. Once everyone drained, every receipted direct message to an
// ack=1 user was delivered exactly once and in order, and every receipted
// room message reached every other member or was reported recovered
// false.
func TestExample_ClusterFailoverLosesNothingReceipted(t *testing.T) {
	cl := redistest.StartCluster(t, 3, 1, "--appendonly", "yes", "--appendfsync", "always")
	bin := buildExample(t)
	seeds := strings.Join(cl.Addrs(), ",")
	var urls []string
	for range 2 {
		e := launch(t, bin, "-store", "redis", "-redis-cluster", "-redis", seeds)
		e.listening(t)
		urls = append(urls, "ws://"+e.addr+"/ws")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	w, err := chaostest.Start(ctx, chaosConfig(t, urls, 1))
	require.NoError(t, err)
	defer w.Close()

	w.StartSending()
	time.Sleep(3 * time.Second) // traffic before the kill, whatever the machine's speed
	masters, err := cl.Masters(ctx)
	require.NoError(t, err)
	require.Len(t, masters, 3)
	killed := time.Now()
	masters[0].Kill()
	require.NoError(t, cl.WaitHealthy(ctx), "a replica takes over")
	t.Logf("master %s killed; cluster healthy again after %v", masters[0].Addr, time.Since(killed).Round(time.Millisecond))
	time.Sleep(3 * time.Second) // traffic after the failover
	w.StopSending(30 * time.Second)
	res := w.Drain(30 * time.Second)
	t.Logf("figures: %v", res)

	assertNothingLost(t, res)
}
