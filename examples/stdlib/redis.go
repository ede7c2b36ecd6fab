package main

import (
	"fmt"

	"github.com/wshub/wshub/store"
)

// openRedis opens the Redis store. It is not built yet: say so clearly
// instead of pretending.
func openRedis(addr string) (store.Store, error) {
	return nil, fmt.Errorf("-store redis (%s): the Redis store is not part of this build yet; use -store bolt or -store mem", addr)
}
