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

// OpenStore opens the store the examples' -store flag names: "mem", "bolt"
// (the bbolt file dbPath) or "redis" (the Redis at redisAddr: history,
// pending queues and, with several example processes on one Redis,
// routing between them).
func OpenStore(kind, dbPath, redisAddr string) (store.Store, error) {
	switch kind {
	case "mem":
		return memstore.New(memstore.Options{}), nil
	case "bolt":
		return boltstore.Open(dbPath, boltstore.Options{})
	case "redis":
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return redisstore.Open(ctx, redisAddr, redisstore.Options{})
	}
	return nil, fmt.Errorf("unknown -store %q: want mem, bolt or redis", kind)
}
