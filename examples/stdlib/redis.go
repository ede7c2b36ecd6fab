package main

import (
	"context"
	"time"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/redisstore"
)

// openRedis opens the Redis store: history, pending queues and, with
// several example processes on one Redis, routing between them.
func openRedis(addr string) (store.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return redisstore.Open(ctx, addr, redisstore.Options{})
}
