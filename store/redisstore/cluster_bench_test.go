package redisstore_test

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/redisstore"
)

// BenchmarkClusterAppend measures Append (a direct message with a cid,
// queued for its recipient: the conversation's step and two user steps)
// from parallel goroutines on the test cluster (3 masters, each with one
// replica), with and without WAIT for the replica, and on the package's
// single redis-server for comparison. Run with:
//
//	go test -run '^$' -bench ClusterAppend -benchtime 3s ./store/redisstore
func BenchmarkClusterAppend(b *testing.B) {
	cases := []struct {
		name    string
		cluster bool
		wait    int // Options.WaitReplicas
		writers int // goroutines per GOMAXPROCS
	}{
		{"Single/wait=off/writers=1x", false, -1, 1},
		{"Single/wait=off/writers=16x", false, -1, 16},
		{"Cluster/wait=off/writers=1x", true, -1, 1},
		{"Cluster/wait=1/writers=1x", true, 0, 1},
		{"Cluster/wait=off/writers=16x", true, -1, 16},
		{"Cluster/wait=1/writers=16x", true, 0, 16},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			var client redis.UniversalClient
			if bc.cluster {
				client = needCluster(b).Client(b)
			} else {
				client = needRedis(b).Client(b)
			}
			s, err := redisstore.New(client, redisstore.Options{
				Prefix: newPrefix("cbench"), WaitReplicas: bc.wait,
				MaxPending: 1 << 30, MaxPendingPerSender: 1 << 30,
			})
			if err != nil {
				b.Fatal(err)
			}
			var n atomic.Int64
			b.SetParallelism(bc.writers)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					from, to := "u"+strconv.FormatInt(i%512, 10), "u"+strconv.FormatInt((i+1)%512, 10)
					id := fmt.Sprint("m", i)
					_, _, err := s.Append(b.Context(), store.AppendRequest{
						Msg:     store.Message{ID: id, Conv: store.DirectConv(from, to), From: from, To: to, TS: i, Cmd: 10, Body: []byte(`{"content":"hello"}`)},
						Pending: []string{to}, CID: id, Origin: "c1",
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
