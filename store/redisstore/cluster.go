package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotReplicated is returned (wrapped) by a write, Append first, when
// fewer replicas than required (Options.WaitReplicas) acknowledged it
// within Options.WaitTimeout. The write took effect on the master and may
// still reach the replicas, or be lost in a failover: the caller sends no
// receipt, and a resend with the same cid waits again.
var ErrNotReplicated = errors.New("wshub/redisstore: write not acknowledged by enough replicas")

// Defaults of the durability options.
const (
	// DefaultWaitTimeout is the WaitTimeout used when it is zero.
	DefaultWaitTimeout = time.Second
	// replicaCheckInterval is how long the replica count of a master
	// learned from INFO replication is trusted (WaitReplicas auto).
	replicaCheckInterval = 5 * time.Second
	// retryFor bounds how long one step is retried after a MOVED, ASK or
	// connection error (a failover in progress).
	retryFor = 3 * time.Second
)

// call is one script call of a step.
type call struct {
	script *redis.Script
	keys   []string
	args   []any
}

// replicaInfo is what INFO replication said about one master.
type replicaInfo struct {
	n  int
	at time.Time
}

// replicaCache holds the replica counts of the masters, by address.
type replicaCache struct {
	mu sync.Mutex
	m  map[string]replicaInfo
}

// nodeFor returns the client of the server holding key: the master of
// key's slot on a cluster, else the store's client.
func (s *Store) nodeFor(ctx context.Context, key string) (redis.UniversalClient, string, error) {
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		n, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return nil, "", err
		}
		return n, n.Options().Addr, nil
	}
	return s.client, "", nil
}

// replicasFor returns the number of replicas a write on node must reach
// before it counts as done: 0 (no WAIT), Options.WaitReplicas, or with
// the automatic setting 1 when the master has a replica connected.
func (s *Store) replicasFor(ctx context.Context, node redis.UniversalClient, addr string) int {
	switch {
	case s.opts.WaitReplicas < 0:
		return 0
	case s.opts.WaitReplicas > 0:
		return s.opts.WaitReplicas
	}
	s.replicas.mu.Lock()
	ri, ok := s.replicas.m[addr]
	s.replicas.mu.Unlock()
	if ok && time.Since(ri.at) < replicaCheckInterval {
		return min(ri.n, 1)
	}
	info, err := node.Info(ctx, "replication").Result()
	if err != nil {
		return min(ri.n, 1) // keep what was known; the write itself will tell
	}
	n := 0
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
			n, _ = strconv.Atoi(v)
		}
	}
	s.replicas.mu.Lock()
	if s.replicas.m == nil {
		s.replicas.m = make(map[string]replicaInfo)
	}
	s.replicas.m[addr] = replicaInfo{n: n, at: time.Now()}
	s.replicas.mu.Unlock()
	return min(n, 1)
}

// forgetReplicas drops the replica count of addr, so that the next step
// on it asks again (after a failover, an error).
func (s *Store) forgetReplicas(addr string) {
	s.replicas.mu.Lock()
	delete(s.replicas.m, addr)
	s.replicas.mu.Unlock()
}

// step runs calls, whose keys are all in key's slot, in one pipeline on
// the server holding key, followed by WAIT when replicas must acknowledge
// them (see Options.WaitReplicas): the WAIT goes on the same connection
// as the scripts, so it covers their writes. It returns the scripts'
// results. A MOVED, ASK or connection error (a failover) reloads the
// cluster's slot map and runs the step again, for up to retryFor: every
// step is idempotent (a cid record, a cursor, ZADD NX, SADD) except an
// Append without cid, as before.
func (s *Store) step(ctx context.Context, key string, calls ...call) ([]redis.Cmder, error) {
	deadline := time.Now().Add(retryFor)
	loaded := false
	for attempt := 0; ; attempt++ {
		node, addr, err := s.nodeFor(ctx, key)
		var cmds []redis.Cmder
		need := 0
		if err == nil {
			need = s.replicasFor(ctx, node, addr)
			cmds, err = s.pipeline(ctx, node, need, calls)
		}
		if err == nil {
			if need > 0 {
				got, werr := cmds[len(cmds)-1].(*redis.Cmd).Int()
				if werr != nil {
					return nil, werr
				}
				if got < need {
					s.forgetReplicas(addr)
					return nil, fmt.Errorf("%w: %d of %d replicas within %v", ErrNotReplicated, got, need, s.opts.WaitTimeout)
				}
				cmds = cmds[:len(cmds)-1]
			}
			return cmds, nil
		}
		if isNoScript(err) && !loaded {
			loaded = true
			for _, c := range calls {
				if lerr := c.script.Load(ctx, node).Err(); lerr != nil {
					return nil, lerr
				}
			}
			continue
		}
		if !retryable(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		s.forgetReplicas(addr)
		if cc, ok := s.client.(*redis.ClusterClient); ok {
			cc.ReloadState(ctx)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.done:
			return nil, err
		case <-time.After(time.Duration(min(attempt+1, 5)) * 50 * time.Millisecond):
		}
	}
}

// pipeline sends the calls (EVALSHA) and, when need > 0, WAIT need
// timeout, in one pipeline on node, and returns the first error.
func (s *Store) pipeline(ctx context.Context, node redis.UniversalClient, need int, calls []call) ([]redis.Cmder, error) {
	cmds, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range calls {
			p.EvalSha(ctx, c.script.Hash(), c.keys, c.args...)
		}
		if need > 0 {
			p.Do(ctx, "WAIT", need, max(s.opts.WaitTimeout.Milliseconds(), 1))
		}
		return nil
	})
	if err != nil {
		for _, c := range cmds {
			if c.Err() != nil {
				return cmds, c.Err()
			}
		}
	}
	return cmds, err
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// retryable tells whether err may come from a failover or a resharding:
// the step is then run again on the slot's (new) master.
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrClosed) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	msg := err.Error()
	for _, p := range []string{"MOVED ", "ASK ", "CLUSTERDOWN", "TRYAGAIN", "LOADING", "READONLY", "MASTERDOWN", "connection refused", "connection reset", "broken pipe", "i/o timeout"} {
		if strings.HasPrefix(msg, p) || strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// OpenCluster connects to the Redis Cluster reachable at any of addrs
// ("host:port" seeds), checks that every master answers PING and returns
// a Store that owns the client (Close closes it). The client honours ctx
// deadlines and cancellation on every call and reloads the cluster's slot
// map every second, so that after a failover it stops dialing the dead
// master within a second (go-redis's default is a minute).
func OpenCluster(ctx context.Context, addrs []string, opts Options) (*Store, error) {
	if len(addrs) == 0 {
		return nil, errors.New("wshub/redisstore: open cluster: no address")
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                      addrs,
		ContextTimeoutEnabled:      true,
		ClusterStateReloadInterval: time.Second,
	})
	opts.CloseClient = true
	s, err := New(cc, opts)
	if err != nil {
		_ = cc.Close()
		return nil, err
	}
	err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() })
	if err != nil {
		_ = cc.Close()
		return nil, fmt.Errorf("wshub/redisstore: open cluster %s: %w", strings.Join(addrs, ","), err)
	}
	return s, nil
}
