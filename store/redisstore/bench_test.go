package redisstore_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wshub/wshub/internal/redistest"
	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/redisstore"
	"github.com/wshub/wshub/store/storetest"
)

// BenchmarkAppend measures Append from parallel goroutines against the
// package's real redis-server (no persistence) and, for AOFAlways, against
// one with appendonly yes and appendfsync always (a receipt is on disk).
// Each message is a direct message queued for its recipient, with a cid
// like a client using receipts. Run with:
//
//	go test -run '^$' -bench Append -benchmem ./store/redisstore
//
// redis-µs/op is the time Redis spent running the script, from INFO
// commandstats: the rest of ns/op is the round trip and the client.
//
// allocs/op counts this package's and go-redis's allocations per Append
// plus one or two for the benchmark's unique cid string (the message ids
// are made before the timer starts). msgs/s is the throughput; with
// subscribers, until each of them received every message (announced/op
// is then 1).
func BenchmarkAppend(b *testing.B) {
	srv := needRedis(b)
	cases := []struct {
		name    string
		convs   int // conversations written round-robin; 1 = all contend
		writers int // goroutines per GOMAXPROCS (RunParallel's parallelism)
		aof     bool
		subs    int // Subscribes running, as hub processes would
	}{
		{"OneConv/writers=1x", 1, 1, false, 0},
		{"ManyConvs/writers=1x", 1024, 1, false, 0},
		{"ManyConvs/writers=16x", 1024, 16, false, 0},
		{"ManyConvs/writers=128x", 1024, 128, false, 0},
		{"ManyConvs/writers=16x/subscribers=2", 1024, 16, false, 2},
		{"AOFAlways/writers=1x", 1024, 1, true, 0},
		{"AOFAlways/writers=128x", 1024, 128, true, 0},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			addr := srv.Addr
			if bc.aof {
				aof, err := redistest.StartIn(b.TempDir(), 0, "--appendonly", "yes", "--appendfsync", "always")
				if err != nil {
					b.Fatal(err)
				}
				defer aof.Stop()
				addr = aof.Addr
			}
			prefix := newPrefix("bench")
			// The recipients never ack: the pending bounds are put out of
			// reach, and counted and checked all the same.
			s, err := redisstore.New(redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1024}),
				redisstore.Options{Prefix: prefix, CloseClient: true, MaxPending: 1 << 30, MaxPendingPerSender: 1 << 30})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			defer deleteKeys(b, addr, prefix)
			var received atomic.Int64 // messages announced to the subscribers
			for range bc.subs {
				ctx, cancel := context.WithCancel(b.Context())
				ready := make(chan struct{}) // closed by fn on EventReady
				ended := make(chan struct{}) // closed when Subscribe returned
				go func() {
					defer close(ended)
					_ = s.Subscribe(ctx, func(ev store.Event) {
						if ev.Kind == store.EventReady {
							close(ready)
						} else {
							received.Add(1)
						}
					})
				}()
				defer func() { cancel(); <-ended }()
				<-ready
			}

			body := []byte(`{"media":1,"content":"hello, this is a typical chat message"}`)
			convs := make([]string, bc.convs)
			to := make([]string, bc.convs)
			pending := make([][]string, bc.convs)
			for i := range convs {
				to[i] = "user" + strconv.Itoa(i)
				convs[i] = store.DirectConv("alice", to[i])
				pending[i] = []string{to[i]}
			}
			if bc.subs > 0 {
				// Each subscriber follows the recipients, as the hubs
				// holding their connections would: one announcement per
				// message and subscriber.
				if err := s.Follow(b.Context(), to, nil, true); err != nil {
					b.Fatal(err)
				}
			}
			const idWindow = 1 << 14
			workers := bc.writers * runtime.GOMAXPROCS(0)
			msgIDs := make([][]string, workers)
			for w := range msgIDs {
				msgIDs[w] = make([]string, idWindow)
				for i := range msgIDs[w] {
					msgIDs[w][i] = fmt.Sprintf("0190b6f2-7c4e-7%03x-8000-%012x", w, i)
				}
			}
			var worker atomic.Int64
			var stamp atomic.Int64 // makes cids distinct across the runs of a sub-benchmark
			admin := redis.NewClient(&redis.Options{Addr: addr})
			defer admin.Close()
			if err := admin.ConfigResetStat(b.Context()).Err(); err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(bc.writers)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				w := int(worker.Add(1)-1) % workers
				// alice writes to user<c> in their direct conversation, as
				// a hub would store it (several workers may write one
				// conversation at once).
				from, ids := "alice", msgIDs[w]
				run := "r" + strconv.FormatInt(stamp.Add(1), 10) + "-" + strconv.Itoa(w) + "-"
				for i := 0; pb.Next(); i++ {
					c := i % len(convs)
					id := ids[i%idWindow]
					_, _, err := s.Append(b.Context(), store.AppendRequest{
						Msg: store.Message{
							ID: id, Conv: convs[c], TS: 1_700_000_000_000, Cmd: 10,
							From: from, To: to[c], Body: body,
						},
						Pending: pending[c],
						CID:     run + strconv.Itoa(i),
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			if bc.subs > 0 {
				// msgs/s counts until every subscriber got every message.
				for deadline := time.Now().Add(10 * time.Second); received.Load() < int64(bc.subs*b.N) && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
				b.ReportMetric(float64(received.Load())/float64(bc.subs*b.N), "announced/op")
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			b.StopTimer()
			if us, ok := scriptMicros(b, admin); ok {
				b.ReportMetric(us, "redis-µs/op")
			}
		})
	}
}

// scriptMicros returns the mean time of EVALSHA from INFO commandstats.
func scriptMicros(b *testing.B, c *redis.Client) (float64, bool) {
	info, err := c.Info(b.Context(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(info) {
		rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:")
		if !ok {
			continue
		}
		for field := range strings.SplitSeq(strings.TrimSpace(rest), ",") {
			if v, ok := strings.CutPrefix(field, "usec_per_call="); ok {
				us, err := strconv.ParseFloat(v, 64)
				return us, err == nil
			}
		}
	}
	return 0, false
}

// deleteKeys removes the keys starting with prefix (no glob characters).
// It works from a Cleanup function as well, after b.Context() ended.
func deleteKeys(b *testing.B, addr, prefix string) {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx := context.WithoutCancel(b.Context())
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			c.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		c.Unlink(ctx, batch...)
	}
}

// BenchmarkConversations measures Conversations (one script) for a user
// with 1,000 and 10,000 direct conversations and 10 rooms, asking for the
// default limit (100), against the package's redis-server. Run with:
//
//	CI=true go test -run '^$' -bench Conversations -benchmem ./store/redisstore
func BenchmarkConversations(b *testing.B) {
	srv := needRedis(b)
	storetest.BenchmarkConversations(b, func(b *testing.B) store.Store {
		prefix := newPrefix("benchconv")
		s, err := redisstore.Open(b.Context(), srv.Addr, redisstore.Options{Prefix: prefix})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { deleteKeys(b, srv.Addr, prefix) })
		return s
	})
}

// BenchmarkSetPresence measures SetPresence (one script) reporting 100
// users on and 100 others off per call, as a hub process renewing its
// lease with a busy second's changes would, against the package's
// redis-server. Half of the users are also held by a second process, so
// every transition checks another live lease; a subscriber receives the
// announcements. Run with:
//
//	CI=true go test -run '^$' -bench Presence -benchmem ./store/redisstore
//
// redis-µs/op is the time Redis spent running the script (INFO
// commandstats); announced/op the presence events published per call.
func BenchmarkSetPresence(b *testing.B) {
	srv := needRedis(b)
	prefix := newPrefix("benchpres")
	s, err := redisstore.Open(b.Context(), srv.Addr, redisstore.Options{Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	defer deleteKeys(b, srv.Addr, prefix)

	const batch, batches = 100, 10
	users := make([][]string, batches)
	var held []string
	for i := range users {
		users[i] = make([]string, batch)
		for j := range users[i] {
			users[i][j] = fmt.Sprintf("user%d-%d", i, j)
			if j%2 == 0 {
				held = append(held, users[i][j])
			}
		}
	}
	if _, err := s.SetPresence(b.Context(), "other", time.Hour, held, nil); err != nil {
		b.Fatal(err)
	}
	var received atomic.Int64
	ctx, cancel := context.WithCancel(b.Context())
	ready, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		_ = s.Subscribe(ctx, func(ev store.Event) {
			switch ev.Kind {
			case store.EventReady:
				close(ready)
			case store.EventPresence:
				received.Add(1)
			}
		})
	}()
	defer func() { cancel(); <-ended }()
	<-ready
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	if err := admin.ConfigResetStat(b.Context()).Err(); err != nil {
		b.Fatal(err)
	}
	received.Store(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		// Batch i goes on, batch i+5 (on five calls ago) goes off.
		if _, err := s.SetPresence(b.Context(), "bench", time.Hour, users[i%batches], users[(i+batches/2)%batches]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if us, ok := scriptMicros(b, admin); ok {
		b.ReportMetric(us, "redis-µs/op")
	}
	b.ReportMetric(float64(received.Load())/float64(b.N), "announced/op")
}

// BenchmarkOnline measures Online for 1,000 users (one read script), half
// of them online, spread over two live processes, against the package's
// redis-server. Run with:
//
//	CI=true go test -run '^$' -bench Online -benchmem ./store/redisstore
func BenchmarkOnline(b *testing.B) {
	srv := needRedis(b)
	prefix := newPrefix("benchonline")
	s, err := redisstore.Open(b.Context(), srv.Addr, redisstore.Options{Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	defer deleteKeys(b, srv.Addr, prefix)

	users := make([]string, 1000)
	var p1, p2 []string
	for i := range users {
		users[i] = "user" + strconv.Itoa(i)
		switch i % 4 {
		case 0:
			p1 = append(p1, users[i])
		case 1:
			p2 = append(p2, users[i])
		}
	}
	for proc, on := range map[string][]string{"p1": p1, "p2": p2} {
		if _, err := s.SetPresence(b.Context(), proc, time.Hour, on, nil); err != nil {
			b.Fatal(err)
		}
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	if err := admin.ConfigResetStat(b.Context()).Err(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		got, err := s.Online(b.Context(), users)
		if err != nil {
			b.Fatal(err)
		}
		if !got[0] || !got[1] || got[2] {
			b.Fatalf("Online: %v", got[:4])
		}
	}
	b.StopTimer()
	if us, ok := scriptMicros(b, admin); ok {
		b.ReportMetric(us, "redis-µs/op")
	}
}
