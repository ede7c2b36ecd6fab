package demo

import (
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/boltstore"
	"github.com/wshub/wshub/store/memstore"
	"github.com/wshub/wshub/store/redisstore"
)

// Bounds are the store's bounds the examples' flags set. Zero means the
// store's default, negative unbounded.
type Bounds struct {
	MaxPending          int // -max-pending: most messages queued for one user
	MaxPendingPerSender int // -max-pending-per-sender: most of them from one sender
	// RedisCluster (-redis-cluster) says that the -redis addresses, a
	// comma-separated list, are seed nodes of a Redis Cluster.
	RedisCluster bool
}

// OpenStore opens the store the examples' -store flag names: "mem", "bolt"
// (the bbolt file dbPath) or "redis" (the Redis at redisAddr: history,
// pending queues and, with several example processes on one Redis,
// routing between them), with bounds b. It does not wait for Redis: see
// openRedis.
func OpenStore(kind, dbPath, redisAddr string, b Bounds) (store.Store, error) {
	switch kind {
	case "mem":
		return memstore.New(memstore.Options{MaxPending: b.MaxPending, MaxPendingPerSender: b.MaxPendingPerSender}), nil
	case "bolt":
		return boltstore.Open(dbPath, boltstore.Options{MaxPending: b.MaxPending, MaxPendingPerSender: b.MaxPendingPerSender})
	case "redis":
		return openRedis(redisAddr, b)
	}
	return nil, fmt.Errorf("unknown -store %q: want mem, bolt or redis", kind)
}

// openRedis returns a Store on the Redis at addr ("host:port" or a URL
// that redis.ParseURL understands) without connecting to it, so that an
// example started while Redis is down keeps running: its hub subscribes
// to the store's feed once Redis answers, retrying with backoff and
// logging each failure, and answers 503 until then. (redisstore.Open
// would check Redis at once and fail.)
func openRedis(addr string, b Bounds) (store.Store, error) {
	opts := redisstore.Options{CloseClient: true, MaxPending: b.MaxPending, MaxPendingPerSender: b.MaxPendingPerSender}
	var client redis.UniversalClient
	if b.RedisCluster {
		var addrs []string
		for _, a := range strings.Split(addr, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("-redis-cluster: -redis names no address")
		}
		// Reload the slot map every second: go-redis would otherwise keep
		// dialing a dead master for a minute after its replica took over.
		client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true,
			ClusterStateReloadInterval: time.Second})
	} else {
		var ro *redis.Options
		if strings.Contains(addr, "://") {
			var err error
			if ro, err = redis.ParseURL(addr); err != nil {
				return nil, fmt.Errorf("-redis %s: %w", addr, err)
			}
		} else {
			ro = &redis.Options{Addr: addr}
		}
		ro.ContextTimeoutEnabled = true // as Open does: every call honours its ctx
		client = redis.NewClient(ro)
	}
	st, err := redisstore.New(client, opts)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	return st, nil
}
