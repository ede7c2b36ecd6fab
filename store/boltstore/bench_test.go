package boltstore_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/boltstore"
)

// benchWriters are the numbers of concurrent writers the benchmarks run.
var benchWriters = []int{1, 16, 256}

// BenchmarkDurableAppend measures durable direct messages per second
// (history append + pending enqueue + cid record, synced before Append
// returns) with group commit, the default.
func BenchmarkDurableAppend(b *testing.B) {
	for _, w := range benchWriters {
		b.Run(fmt.Sprintf("writers=%d", w), func(b *testing.B) {
			benchAppend(b, boltstore.Options{}, w)
		})
	}
}

// BenchmarkNaiveAppend is the baseline: the same messages with one bbolt
// transaction (and its syncs) per message.
func BenchmarkNaiveAppend(b *testing.B) {
	for _, w := range benchWriters {
		b.Run(fmt.Sprintf("writers=%d", w), func(b *testing.B) {
			benchAppend(b, boltstore.Options{MaxBatch: 1}, w)
		})
	}
}

// benchAppend sends b.N direct messages from writers goroutines, writer i
// from user i to user i+1 (who is offline: every message is queued), each
// with a cid like a client using receipts. It reports msgs/s.
func benchAppend(b *testing.B, opts boltstore.Options, writers int) {
	// b.TempDir is under os.TempDir(); it must be a real disk, not tmpfs,
	// for the syncs to mean anything (see docs/benchmarks.md).
	s, err := boltstore.Open(filepath.Join(b.TempDir(), "bench.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := []byte(`{"content":"a chat message of an ordinary length, sixty-four b"}`)
	ctx := b.Context()
	var next atomic.Int64
	var failed atomic.Value
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			from, to := fmt.Sprintf("user-%04d", w), fmt.Sprintf("user-%04d", w+1)
			conv := store.DirectConv(from, to)
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				_, _, err := s.Append(ctx, store.AppendRequest{
					Msg: store.Message{
						ID: fmt.Sprintf("0190b6f2-7c4e-7%03x-8000-%012x", w, i), Conv: conv,
						TS: time.Now().UnixMilli(), Cmd: 10, From: from, To: to, Body: body,
					},
					Pending: []string{to},
					CID:     fmt.Sprintf("cid-%d", i),
				})
				if err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}
