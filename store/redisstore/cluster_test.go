package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/internal/redistest"
	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/redisstore"
	"github.com/wshub/wshub/store/storetest"
)

// sharedCluster is the 3-master, 3-replica Redis Cluster of this test
// binary, started by the first test that needs it and stopped by TestMain.
var sharedCluster struct {
	once sync.Once
	dir  string
	c    *redistest.Cluster
	err  error
}

// needCluster returns the shared cluster, starting it on first use; it
// skips the test when redis-server or redis-cli is missing, unless
// CI=true.
func needCluster(tb testing.TB) *redistest.Cluster {
	tb.Helper()
	sharedCluster.once.Do(func() {
		sharedCluster.dir, sharedCluster.err = os.MkdirTemp("", "redisstore-cluster-")
		if sharedCluster.err == nil {
			sharedCluster.c, sharedCluster.err = redistest.StartClusterIn(sharedCluster.dir, 3, 1, "--appendonly", "no")
		}
	})
	if sharedCluster.c != nil {
		return sharedCluster.c
	}
	if errors.Is(sharedCluster.err, exec.ErrNotFound) && os.Getenv("CI") != "true" {
		tb.Skipf("redis cluster not available: %v", sharedCluster.err)
	}
	tb.Fatalf("redis cluster: %v", sharedCluster.err)
	return nil
}

// stopSharedCluster stops the shared cluster if a test started it.
func stopSharedCluster() {
	if sharedCluster.c != nil {
		sharedCluster.c.Stop()
	}
	if sharedCluster.dir != "" {
		_ = os.RemoveAll(sharedCluster.dir)
	}
}

// clusterStore returns a Store on c with a fresh prefix and its own
// cluster client (as a hub process would have), closed at the end.
func clusterStore(t testing.TB, c *redistest.Cluster, opts redisstore.Options) *redisstore.Store {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = newPrefix("cluster")
	}
	s, err := redisstore.New(c.Client(t), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestCluster_Conformance runs the conformance suite on a Redis Cluster
// (3 masters, 3 replicas), a fresh prefix per subtest on one shared
// cluster client.
func TestCluster_Conformance(t *testing.T) {
	c := needCluster(t)
	cc := c.Client(t)
	storetest.RunQuirks(t, quirks, func(t *testing.T) store.Store {
		s, err := redisstore.New(cc, redisstore.Options{Prefix: newPrefix("cconf")})
		require.NoError(t, err)
		return s
	})
}

// TestCluster_PendingPages runs the PendingPager suite on the cluster.
func TestCluster_PendingPages(t *testing.T) {
	c := needCluster(t)
	cc := c.Client(t)
	storetest.RunPendingPages(t, func(t *testing.T) store.Store {
		s, err := redisstore.New(cc, redisstore.Options{Prefix: newPrefix("cpages")})
		require.NoError(t, err)
		return s
	})
}

// TestCluster_PendingBounds runs the bounds suite on the cluster.
func TestCluster_PendingBounds(t *testing.T) {
	c := needCluster(t)
	cc := c.Client(t)
	storetest.RunPendingBoundsQuirks(t, quirks, func(t *testing.T, b storetest.Bounds) store.Store {
		s, err := redisstore.New(cc, redisstore.Options{
			Prefix: newPrefix("cbounds"), MaxPending: b.MaxPending, MaxPendingPerSender: b.MaxPendingPerSender,
		})
		require.NoError(t, err)
		return s
	})
}

// TestCluster_Durable runs the durability suite on the cluster: reopening
// is a new cluster client and Store with the same prefix.
func TestCluster_Durable(t *testing.T) {
	c := needCluster(t)
	storetest.RunDurable(t, func(t *testing.T, dir string) store.Store {
		s, err := redisstore.OpenCluster(t.Context(), c.Addrs(), redisstore.Options{Prefix: dir + ":"})
		require.NoError(t, err)
		return s
	})
}

// TestCluster_KeysSpread: after appends to many conversations every
// master holds keys of the store.
func TestCluster_KeysSpread(t *testing.T) {
	c := needCluster(t)
	s := clusterStore(t, c, redisstore.Options{})
	for i := range 100 {
		from, to := fmt.Sprintf("u%d", i), fmt.Sprintf("u%d", i+1)
		_, _, err := s.Append(t.Context(), store.AppendRequest{
			Msg:     store.Message{ID: fmt.Sprintf("m%d", i), Conv: store.DirectConv(from, to), From: from, To: to, TS: 1},
			Pending: []string{to}, CID: fmt.Sprint(i),
		})
		require.NoError(t, err)
	}
	masters, err := c.Masters(t.Context())
	require.NoError(t, err)
	require.Len(t, masters, 3)
	var counts []int64
	for _, m := range masters {
		n, err := m.Client(t).DBSize(t.Context()).Result()
		require.NoError(t, err)
		assert.Positive(t, n, "keys on master %s", m.Addr)
		counts = append(counts, n)
	}
	t.Logf("keys per master after 100 direct messages between 101 users: %v", counts)
}

// directReq is a direct message from from to to with a cid.
func directReq(from, to, id string) store.AppendRequest {
	return store.AppendRequest{
		Msg:     store.Message{ID: id, Conv: store.DirectConv(from, to), From: from, To: to, TS: time.Now().UnixMilli(), Cmd: 10},
		Pending: []string{to}, CID: "cid-" + id, Origin: "conn-" + from,
	}
}

// collectUser subscribes (sharded) to user's channel and returns a
// function giving the messages announced so far, in order.
func collectUser(t *testing.T, cc redis.UniversalClient, s *redisstore.Store, user string) func() []store.Message {
	t.Helper()
	ps := cc.SSubscribe(t.Context(), redisstore.UserChannel(s, user))
	t.Cleanup(func() { _ = ps.Close() })
	_, err := ps.Receive(t.Context()) // the subscription's confirmation
	require.NoError(t, err)
	var mu sync.Mutex
	var got []store.Message
	ch := ps.Channel()
	go func() {
		for m := range ch {
			msg, _, err := redisstore.DecodeAnnouncedMessage(m.Payload)
			if err != nil {
				continue
			}
			mu.Lock()
			got = append(got, msg)
			mu.Unlock()
		}
	}()
	return func() []store.Message {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

func idsOf(ms []store.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// testGapRepair: a crash between step 1 and step 2 (AppendConvStepOnly)
// leaves a message in history only; the next Append of the conversation
// enqueues it, before its own, and announces both in seq order; a resend
// of a crashed message's cid enqueues it too.
func testGapRepair(t *testing.T, cc redis.UniversalClient, s *redisstore.Store) {
	ctx := t.Context()
	bob := collectUser(t, cc, s, "bob")
	alice := collectUser(t, cc, s, "alice")

	m1, err := redisstore.AppendConvStepOnly(ctx, s, directReq("alice", "bob", "m1"))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), m1.Seq)
	q, err := s.Pending(ctx, "bob")
	require.NoError(t, err)
	assert.Empty(t, q, "step 1 alone queues nothing")

	_, dup, err := s.Append(ctx, directReq("bob", "alice", "m2"))
	require.NoError(t, err)
	require.False(t, dup)
	q, err = s.Pending(ctx, "bob")
	require.NoError(t, err)
	assert.Equal(t, []string{"m1"}, idsOf(q), "the next Append filled bob's gap")
	q, err = s.Pending(ctx, "alice")
	require.NoError(t, err)
	assert.Equal(t, []string{"m2"}, idsOf(q))

	// A crash, then the client's resend of the same cid.
	_, err = redisstore.AppendConvStepOnly(ctx, s, directReq("alice", "bob", "m3"))
	require.NoError(t, err)
	got, dup, err := s.Append(ctx, directReq("alice", "bob", "m3"))
	require.NoError(t, err)
	assert.True(t, dup)
	assert.Equal(t, uint64(3), got.Seq)
	q, err = s.Pending(ctx, "bob")
	require.NoError(t, err)
	assert.Equal(t, []string{"m1", "m3"}, idsOf(q), "the resend queued the crashed message")

	// Again, with several crashed messages in a row.
	for _, id := range []string{"m4", "m5", "m6"} {
		_, err = redisstore.AppendConvStepOnly(ctx, s, directReq("alice", "bob", id))
		require.NoError(t, err)
	}
	_, _, err = s.Append(ctx, directReq("alice", "bob", "m7"))
	require.NoError(t, err)
	q, err = s.Pending(ctx, "bob")
	require.NoError(t, err)
	assert.Equal(t, []string{"m1", "m3", "m4", "m5", "m6", "m7"}, idsOf(q))

	want := []string{"m1", "m2", "m3", "m4", "m5", "m6", "m7"}
	for name, got := range map[string]func() []store.Message{"bob": bob, "alice": alice} {
		require.Eventually(t, func() bool { return len(got()) >= len(want) }, 5*time.Second, 10*time.Millisecond, "announcements to %s: %v", name, idsOf(got()))
		ms := got()
		assert.Equal(t, want, idsOf(ms), "announcements to %s in seq order, once each", name)
		for i, m := range ms {
			assert.Equal(t, uint64(i+1), m.Seq)
		}
	}
	cs, _, err := s.Conversations(ctx, "bob", 0)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	assert.Equal(t, uint64(7), cs[0].Seq, "bob's inbox entry")
}

// TestCluster_GapRepair runs testGapRepair on the cluster.
func TestCluster_GapRepair(t *testing.T) {
	c := needCluster(t)
	cc := c.Client(t)
	s, err := redisstore.New(cc, redisstore.Options{Prefix: newPrefix("gap")})
	require.NoError(t, err)
	testGapRepair(t, cc, s)
}

// TestStore_GapRepair runs testGapRepair on one redis-server.
func TestStore_GapRepair(t *testing.T) {
	client := needRedis(t).Client(t)
	s, err := redisstore.New(client, redisstore.Options{Prefix: newPrefix("gap")})
	require.NoError(t, err)
	testGapRepair(t, client, s)
}

// testTwoProcessesOneConversation: two Stores with clients of their own
// append concurrently to one direct conversation (both directions): every
// message is queued for its recipient exactly once, in seq order, and
// announced to each user in seq order.
func testTwoProcessesOneConversation(t *testing.T, clients [2]redis.UniversalClient) {
	ctx := t.Context()
	prefix := newPrefix("two")
	var stores [2]*redisstore.Store
	for i := range stores {
		s, err := redisstore.New(clients[i], redisstore.Options{Prefix: prefix})
		require.NoError(t, err)
		stores[i] = s
	}
	ann := collectUser(t, clients[0], stores[0], "bob")
	const perWorker, workers = 40, 4
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			s := stores[w%2]
			for i := range perWorker {
				from, to := "alice", "bob"
				if w >= 2 {
					from, to = "bob", "alice"
				}
				_, _, err := s.Append(ctx, directReq(from, to, fmt.Sprintf("w%d-%d", w, i)))
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	conv := store.DirectConv("alice", "bob")
	p, err := stores[1].History(ctx, conv, store.Query{Limit: 1000})
	require.NoError(t, err)
	require.Len(t, p.Items, workers*perWorker)
	for _, user := range []string{"alice", "bob"} {
		q, err := stores[0].Pending(ctx, user)
		require.NoError(t, err)
		var want []string
		for _, m := range p.Items {
			if m.To == user {
				want = append(want, m.ID)
			}
		}
		assert.Equal(t, want, idsOf(q), "%s's queue: every message once, in seq order", user)
	}
	require.Eventually(t, func() bool { return len(ann()) >= len(p.Items) }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, idsOf(p.Items), idsOf(ann()), "bob's announcements in seq order, once each")
}

// TestCluster_TwoProcessesOneConversation runs
// testTwoProcessesOneConversation on the cluster.
func TestCluster_TwoProcessesOneConversation(t *testing.T) {
	c := needCluster(t)
	testTwoProcessesOneConversation(t, [2]redis.UniversalClient{c.Client(t), c.Client(t)})
}

// TestStore_TwoProcessesOneConversation runs
// testTwoProcessesOneConversation on one redis-server.
func TestStore_TwoProcessesOneConversation(t *testing.T) {
	srv := needRedis(t)
	testTwoProcessesOneConversation(t, [2]redis.UniversalClient{srv.Client(t), srv.Client(t)})
}

// TestCluster_PrefixWithBraceRejected: the keys' hash tags follow the
// prefix, which must hold none.
func TestCluster_PrefixWithBraceRejected(t *testing.T) {
	_, err := redisstore.New(redis.NewClient(&redis.Options{}), redisstore.Options{Prefix: "a{b}:"})
	require.Error(t, err)
}

// TestCluster_FailoverLosesNothingReceipted: several goroutines append
// direct messages with cids on a cluster whose masters wait for their
// replica (WaitReplicas automatic), retrying a failed Append with the
// same cid as a client does; a master is killed with SIGKILL mid-traffic
// and its replica takes over. Every message whose Append returned nil is
// then in its conversation's history and in its recipient's queue
// exactly once.
func TestCluster_FailoverLosesNothingReceipted(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1, "--appendonly", "no")
	failover(t, c, redisstore.Options{Prefix: "fo:"}, true, func(victim *redistest.Server) {
		victim.Kill()
	})
}

// TestCluster_FailoverAfterReplicaFellBehind: as
// TestCluster_FailoverLosesNothingReceipted, but the victim's replica
// falls behind first: it is stopped, the master drops its link and
// writes more than its replication backlog, and the replica, resumed,
// needs a full resynchronization, which the master delays (diskless
// sync, 5 s); the master is killed meanwhile, so the replica takes over
// without the writes since it was stopped. With WaitReplicas 1 those
// writes were refused (ErrNotReplicated): no receipt is lost. Without
// WAIT they would have been receipted, and lost.
func TestCluster_FailoverAfterReplicaFellBehind(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1, "--appendonly", "no", "--repl-backlog-size", "16384",
		"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "5")
	failover(t, c, redisstore.Options{Prefix: "fo:", WaitReplicas: 1, WaitTimeout: 100 * time.Millisecond}, false, func(victim *redistest.Server) {
		ctx := t.Context()
		replica := replicaOf(t, c, victim)
		mc := victim.Client(t)
		replica.Pause()
		require.NoError(t, mc.Do(ctx, "client", "kill", "type", "replica").Err())
		filler := strings.Repeat("x", 64<<10) // past the backlog
		for i, set := 0, 0; set < 4; i++ {    // keys of the victim's slots
			err := mc.Do(ctx, "set", fmt.Sprintf("filler%d", i), filler).Err()
			if err == nil {
				set++
			} else {
				require.Contains(t, err.Error(), "MOVED")
			}
		}
		time.Sleep(300 * time.Millisecond)
		replica.Resume()
		time.Sleep(500 * time.Millisecond)
		info, err := replica.Client(t).Info(ctx, "replication").Result()
		require.NoError(t, err)
		require.NotContains(t, info, "master_link_status:up", "the replica is behind")
		victim.Kill()
	})
}

// replicaOf returns the running replica of master.
func replicaOf(t *testing.T, c *redistest.Cluster, master *redistest.Server) *redistest.Server {
	t.Helper()
	_, port, _ := strings.Cut(master.Addr, ":")
	for _, n := range c.Nodes {
		info, err := n.Client(t).Info(t.Context(), "replication").Result()
		if err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_port:"+port+"\r\n") {
			return n
		}
	}
	t.Fatalf("no replica of %s", master.Addr)
	return nil
}

// failover runs appending goroutines on c, calls disrupt with one of the
// masters, waits for the cluster to be healthy again, and checks that
// every receipted message is in history and queued exactly once.
// trafficAfter requires receipts after the failover.
func failover(t *testing.T, c *redistest.Cluster, opts redisstore.Options, trafficAfter bool, disrupt func(victim *redistest.Server)) {
	ctx := t.Context()
	s, err := redisstore.OpenCluster(ctx, c.Addrs(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })

	const workers = 8
	var (
		mu                 sync.Mutex
		receipts           = map[string]store.Message{} // id -> stored message
		attempts, failures atomic.Int64
		notRepl            atomic.Int64
		stop               atomic.Bool
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				from, to := fmt.Sprintf("s%d", w), fmt.Sprintf("r%d", (w+i)%5)
				req := directReq(from, to, fmt.Sprintf("w%d-%d", w, i))
				for !stop.Load() {
					attempts.Add(1)
					actx, cancel := context.WithTimeout(ctx, 5*time.Second)
					m, _, err := s.Append(actx, req)
					cancel()
					if err == nil {
						mu.Lock()
						receipts[m.ID] = m
						mu.Unlock()
						break
					}
					failures.Add(1)
					if errors.Is(err, redisstore.ErrNotReplicated) {
						notRepl.Add(1)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	masters, err := c.Masters(ctx)
	require.NoError(t, err)
	victim := masters[0]
	mu.Lock()
	before := len(receipts)
	mu.Unlock()
	disrupt(victim)
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	require.NoError(t, c.WaitHealthy(hctx))
	cancel()
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	lostHistory, lostQueue, doubled := 0, 0, 0
	histories := map[string]map[string]int{}
	for _, m := range receipts {
		h, ok := histories[m.Conv]
		if !ok {
			p, err := s.History(ctx, m.Conv, store.Query{Limit: 10000})
			require.NoError(t, err)
			h = map[string]int{}
			for _, it := range p.Items {
				h[it.ID]++
			}
			histories[m.Conv] = h
		}
		if h[m.ID] == 0 {
			lostHistory++
		}
	}
	queues := map[string]map[string]int{}
	for _, m := range receipts {
		q, ok := queues[m.To]
		if !ok {
			ms, err := s.Pending(ctx, m.To)
			require.NoError(t, err)
			q = map[string]int{}
			for _, it := range ms {
				q[it.ID]++
			}
			queues[m.To] = q
		}
		switch q[m.ID] {
		case 0:
			lostQueue++
		case 1:
		default:
			doubled++
		}
	}
	t.Logf("failover: disrupted %s after %d receipts; %d receipts in all, %d Append calls, %d failed (%d ErrNotReplicated); lost from history %d, from queues %d, queued twice %d",
		victim.Addr, before, len(receipts), attempts.Load(), failures.Load(), notRepl.Load(), lostHistory, lostQueue, doubled)
	assert.Zero(t, lostHistory, "receipted messages missing from history")
	assert.Zero(t, lostQueue, "receipted messages missing from their queue")
	assert.Zero(t, doubled, "messages queued twice")
	if trafficAfter {
		assert.Greater(t, len(receipts), before, "traffic went on after the failover")
	}
}

// testPresenceAnnounced: SetPresence and RetirePresence announce their
// transitions with SPUBLISH on the presence channel, in order.
func testPresenceAnnounced(t *testing.T, cc redis.UniversalClient) {
	s, ps := listeningStore(t, cc, "pres", redisstore.PresenceChannel)
	_, err := s.SetPresence(t.Context(), "P", time.Minute, []string{"alice", "bob"}, nil)
	require.NoError(t, err)
	require.NoError(t, s.RetirePresence(t.Context(), "P"))
	on, err := s.Online(t.Context(), []string{"alice"})
	require.NoError(t, err)
	assert.Equal(t, []bool{false}, on)
	var got []string
	for range 4 {
		m, err := ps.ReceiveMessage(t.Context())
		require.NoError(t, err)
		require.Greater(t, len(m.Payload), 2)
		got = append(got, m.Payload[:2]+m.Payload[len(m.Payload)-1:])
	}
	slices.Sort(got[:2])
	slices.Sort(got[2:])
	assert.Equal(t, []string{"p1b", "p1e", "p0b", "p0e"}, got, "alice and bob online, then offline")
}

// TestCluster_PresenceAnnounced runs testPresenceAnnounced on the cluster.
func TestCluster_PresenceAnnounced(t *testing.T) {
	testPresenceAnnounced(t, needCluster(t).Client(t))
}

// TestStore_PresenceAnnounced runs testPresenceAnnounced on one server.
func TestStore_PresenceAnnounced(t *testing.T) {
	testPresenceAnnounced(t, needRedis(t).Client(t))
}

// testMembershipAnnounced: Join and Leave announce on the user's channel
// when they change membership, once; both sets follow.
func testMembershipAnnounced(t *testing.T, cc redis.UniversalClient) {
	ctx := t.Context()
	s, ps := listeningStore(t, cc, "member", func(s *redisstore.Store) string { return redisstore.UserChannel(s, "alice") })
	var err error
	require.NoError(t, s.Join(ctx, "go", "alice"))
	require.NoError(t, s.Join(ctx, "go", "alice"))
	members, err := s.Members(ctx, "go")
	require.NoError(t, err)
	assert.Equal(t, []string{"alice"}, members)
	rooms, err := s.Rooms(ctx, "alice")
	require.NoError(t, err)
	assert.Equal(t, []string{"go"}, rooms)
	require.NoError(t, s.Leave(ctx, "go", "alice"))
	require.NoError(t, s.Leave(ctx, "go", "alice"))
	var kinds []byte
	for range 2 {
		m, err := ps.ReceiveMessage(ctx)
		require.NoError(t, err)
		kinds = append(kinds, m.Payload[0])
	}
	assert.Equal(t, "jl", string(kinds), "one join, one leave")
	members, err = s.Members(ctx, "go")
	require.NoError(t, err)
	assert.Empty(t, members)
}

// TestCluster_MembershipAnnounced runs testMembershipAnnounced on the
// cluster.
func TestCluster_MembershipAnnounced(t *testing.T) {
	testMembershipAnnounced(t, needCluster(t).Client(t))
}

// TestStore_MembershipAnnounced runs testMembershipAnnounced on one
// server.
func TestStore_MembershipAnnounced(t *testing.T) {
	testMembershipAnnounced(t, needRedis(t).Client(t))
}

// testGapFillKeepsPendingAndOrigin: a message whose process died after
// the conversation's step, with a pending list other than the default
// (the sender's other devices) and an origin, is filled into the queues
// of its pending list and announced with its origin by the next Append of
// the conversation.
func testGapFillKeepsPendingAndOrigin(t *testing.T, cc redis.UniversalClient) {
	ctx := t.Context()
	s, ps := listeningStore(t, cc, "gapmeta", func(s *redisstore.Store) string { return redisstore.UserChannel(s, "alice") })
	var err error

	req := directReq("alice", "bob", "m1")
	req.Pending = []string{"bob", "alice"} // and alice's other devices
	req.Origin = "alice-phone"
	_, err = redisstore.AppendConvStepOnly(ctx, s, req)
	require.NoError(t, err)
	_, _, err = s.Append(ctx, directReq("bob", "alice", "m2"))
	require.NoError(t, err)

	q, err := s.Pending(ctx, "alice")
	require.NoError(t, err)
	assert.Equal(t, []string{"m1", "m2"}, idsOf(q), "alice's queue got the crashed message, by its pending list")
	q, err = s.Pending(ctx, "bob")
	require.NoError(t, err)
	assert.Equal(t, []string{"m1"}, idsOf(q))
	var origins []string
	for range 2 {
		m, err := ps.ReceiveMessage(ctx)
		require.NoError(t, err)
		msg, origin, err := redisstore.DecodeAnnouncedMessage(m.Payload)
		require.NoError(t, err)
		origins = append(origins, msg.ID+"@"+origin)
	}
	assert.Equal(t, []string{"m1@alice-phone", "m2@conn-bob"}, origins)
}

// TestCluster_GapFillKeepsPendingAndOrigin runs
// testGapFillKeepsPendingAndOrigin on the cluster.
func TestCluster_GapFillKeepsPendingAndOrigin(t *testing.T) {
	testGapFillKeepsPendingAndOrigin(t, needCluster(t).Client(t))
}

// TestStore_GapFillKeepsPendingAndOrigin runs
// testGapFillKeepsPendingAndOrigin on one server.
func TestStore_GapFillKeepsPendingAndOrigin(t *testing.T) {
	testGapFillKeepsPendingAndOrigin(t, needRedis(t).Client(t))
}

// TestStore_ResendAfterConversationLost: a resend of a cid whose
// conversation was lost and started again (its seqs mean other messages
// now) returns the first message and leaves the users' cursors alone, so
// the new stream's messages are still queued.
func TestStore_ResendAfterConversationLost(t *testing.T) {
	client := needRedis(t).Client(t)
	prefix := newPrefix("lostresend")
	s, err := redisstore.New(client, redisstore.Options{Prefix: prefix})
	require.NoError(t, err)
	ctx := t.Context()
	for _, id := range []string{"m1", "m2", "m3"} {
		_, _, err := s.Append(ctx, directReq("alice", "bob", id))
		require.NoError(t, err)
	}
	require.NoError(t, client.Del(ctx, prefix+"{c:"+store.DirectConv("alice", "bob")+"}h").Err())
	for _, id := range []string{"n1", "n2"} {
		_, _, err := s.Append(ctx, directReq("alice", "bob", id))
		require.NoError(t, err)
	}
	m, dup, err := s.Append(ctx, directReq("alice", "bob", "m3"))
	require.NoError(t, err)
	assert.True(t, dup)
	assert.Equal(t, "m3", m.ID)
	n3, _, err := s.Append(ctx, directReq("alice", "bob", "n3"))
	require.NoError(t, err)
	assert.Equal(t, uint64(3), n3.Seq)
	q, err := s.Pending(ctx, "bob")
	require.NoError(t, err)
	assert.Equal(t, []string{"m1", "m2", "m3", "n1", "n2", "n3"}, idsOf(q))
}

// listeningStore returns a Store on cc with a fresh prefix named name, and
// a sharded subscription, confirmed, to the channel of it that channel
// names.
func listeningStore(t *testing.T, cc redis.UniversalClient, name string, channel func(*redisstore.Store) string) (*redisstore.Store, *redis.PubSub) {
	t.Helper()
	s, err := redisstore.New(cc, redisstore.Options{Prefix: newPrefix(name)})
	require.NoError(t, err)
	ps := cc.SSubscribe(t.Context(), channel(s))
	t.Cleanup(func() { _ = ps.Close() })
	_, err = ps.Receive(t.Context())
	require.NoError(t, err)
	return s, ps
}
