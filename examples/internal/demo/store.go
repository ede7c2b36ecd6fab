package demo

import (
	"context"
	"fmt"
	"time"

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
}

// OpenStore opens the store the examples' -store flag names: "mem", "bolt"
// (the bbolt file dbPath) or "redis" (the Redis at redisAddr: history,
// pending queues and, with several example processes on one Redis,
// routing between them), with bounds b.
func OpenStore(kind, dbPath, redisAddr string, b Bounds) (store.Store, error) {
	switch kind {
	case "mem":
		return memstore.New(memstore.Options{MaxPending: b.MaxPending, MaxPendingPerSender: b.MaxPendingPerSender}), nil
	case "bolt":
		return boltstore.Open(dbPath, boltstore.Options{MaxPending: b.MaxPending, MaxPendingPerSender: b.MaxPendingPerSender})
	case "redis":
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return redisstore.Open(ctx, redisAddr, redisstore.Options{MaxPending: b.MaxPending, MaxPendingPerSender: b.MaxPendingPerSender})
	}
	return nil, fmt.Errorf("unknown -store %q: want mem, bolt or redis", kind)
}
