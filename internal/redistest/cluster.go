package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of redis-server processes on 127.0.0.1,
// formed with redis-cli --cluster create. Its methods are called by one
// goroutine at a time.
type Cluster struct {
	// Nodes are the servers, the masters first as formed (a failover
	// changes which are masters: see Masters).
	Nodes []*Server
	// NodeTimeout is the cluster-node-timeout the nodes run with: a master
	// that stops answering is failed over to its replica after it.
	NodeTimeout time.Duration
}

// StartCluster starts masters masters with replicas replicas each (3 and
// 1 make the usual smallest cluster that survives the loss of a master),
// with the extra redis-server args, forms the cluster, waits until every
// node reports cluster_state:ok and every replica is in sync, and stops
// the servers when the test ends. It skips the test when redis-server or
// redis-cli is missing, unless CI=true.
func StartCluster(tb testing.TB, masters, replicas int, args ...string) *Cluster {
	tb.Helper()
	c, err := StartClusterIn(tb.TempDir(), masters, replicas, args...)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) && os.Getenv("CI") != "true" {
			tb.Skipf("redis cluster not available: %v", err)
		}
		tb.Fatalf("redis cluster: %v", err)
	}
	tb.Cleanup(c.Stop)
	return c
}

// StartClusterIn is StartCluster with the nodes' directories under dir;
// the caller stops the cluster.
func StartClusterIn(dir string, masters, replicas int, args ...string) (*Cluster, error) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, err
	}
	if masters < 3 {
		return nil, fmt.Errorf("redistest: a Redis Cluster needs at least 3 masters, not %d", masters)
	}
	c := &Cluster{NodeTimeout: time.Second}
	nodeArgs := append([]string{
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(c.NodeTimeout.Milliseconds(), 10),
		"--cluster-require-full-coverage", "no",
	}, args...)
	for i := range masters * (1 + replicas) {
		d := filepath.Join(dir, "node"+strconv.Itoa(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			c.Stop()
			return nil, err
		}
		s, err := startClusterNode(d, nodeArgs)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	create := []string{"--cluster", "create"}
	for _, s := range c.Nodes {
		create = append(create, s.Addr)
	}
	create = append(create, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	out, err := exec.Command(cli, create...).CombinedOutput()
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis-cli %s: %v: %s", strings.Join(create, " "), err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.WaitHealthy(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// startClusterNode starts a node whose port and cluster bus port (port +
// 10000) were both free a moment ago.
func startClusterNode(dir string, args []string) (*Server, error) {
	var lastErr error
	for range 5 {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		if p+10000 > 65535 {
			continue
		}
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+10000))); err != nil {
			continue
		} else {
			l.Close()
		}
		s, err := StartIn(dir, p, args...)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = errors.New("no free port pair for a cluster node")
	}
	return nil, lastErr
}

// Addrs returns the nodes' addresses, the seed list of a cluster client.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		out[i] = s.Addr
	}
	return out
}

// Client returns a cluster client of the cluster, closed at the end of
// the test. It reloads the slot map every second: go-redis reloads it on
// MOVED replies, and otherwise only every ClusterStateReloadInterval
// (default 60 s), so a client of a master that died would keep dialing
// it that long after its replica took over.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true, ClusterStateReloadInterval: time.Second})
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

// alive reports whether s's process is running.
func (s *Server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// info runs a command on one node and returns its text reply.
func nodeInfo(ctx context.Context, addr string, args ...any) (string, error) {
	cl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer cl.Close()
	return cl.Do(ctx, args...).Text()
}

// Masters returns the running nodes that are masters now.
func (c *Cluster) Masters(ctx context.Context) ([]*Server, error) {
	var out []*Server
	for _, s := range c.Nodes {
		if !s.alive() {
			continue
		}
		role, err := nodeInfo(ctx, s.Addr, "info", "replication")
		if err != nil {
			return nil, err
		}
		if strings.Contains(role, "role:master") {
			out = append(out, s)
		}
	}
	return out, nil
}

// WaitHealthy waits until every running node reports cluster_state:ok
// and all 16384 slots assigned, and every running replica's link to its
// master is up.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	var last string
	for {
		ok := true
		for _, s := range c.Nodes {
			if !s.alive() {
				continue
			}
			info, err := nodeInfo(ctx, s.Addr, "cluster", "info")
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
				ok, last = false, fmt.Sprintf("%s: %v %s", s.Addr, err, info)
				break
			}
			repl, err := nodeInfo(ctx, s.Addr, "info", "replication")
			if err != nil || (strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up")) {
				ok, last = false, fmt.Sprintf("%s: %v %s", s.Addr, err, repl)
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redistest: cluster not healthy: %w; last: %s", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop stops every node.
func (c *Cluster) Stop() {
	for _, s := range c.Nodes {
		s.Stop()
	}
}
