package boltstore_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/boltstore"
	"github.com/wshub/wshub/store/storetest"
)

// The benchmarks send direct messages from w concurrent writers: writer i
// from user i to user i+1, who is offline, so every message is a history
// append plus a pending enqueue, with a cid as a client using receipts
// sends. Each writer waits for its message to be durable (synced) before
// sending the next one. They report msgs/s.
//
// Run them on a real disk: b.TempDir is under $TMPDIR (see
// docs/benchmarks.md for the command).

// BenchmarkDiskSync measures the disk under the benchmarks: one 4 KiB
// page overwritten and synced (fsync; a bbolt commit syncs twice).
// Its latency bounds the rates of the others and varies on a shared disk,
// so it runs in the same invocation.
func BenchmarkDiskSync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "sync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, 4096)
	b.ResetTimer()
	for i := range b.N {
		if _, err := f.WriteAt(page, int64(i%256)*4096); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/sync")
}

// benchWriters are the numbers of concurrent writers.
var benchWriters = []int{1, 16, 256}

// benchBounds puts the pending bounds out of the benchmarks' reach (their
// recipients never ack): they are counted and checked all the same.
var benchBounds = boltstore.Options{MaxPending: 1 << 30, MaxPendingPerSender: 1 << 30}

// BenchmarkDurableAppend measures boltstore as configured by default:
// group commit of the log, checkpoints into the index.
func BenchmarkDurableAppend(b *testing.B) {
	for _, w := range benchWriters {
		b.Run(fmt.Sprintf("writers=%d", w), func(b *testing.B) {
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "bench.db"), benchBounds)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			runWriters(b, w, s.Append)
			reportStats(b, s.Stats())
		})
	}
}

// reportStats reports how many messages a commit held, and the share of
// the time spent in checkpoints.
func reportStats(b *testing.B, st boltstore.Stats) {
	if st.Commits > 0 {
		b.ReportMetric(float64(st.Requests)/float64(st.Commits), "msgs/commit")
		b.ReportMetric(float64(st.CommitTime.Microseconds())/1000/float64(st.Commits), "ms/commit")
	}
	if total := st.CommitTime + st.CheckpointTime; total > 0 {
		b.ReportMetric(100*float64(st.CheckpointTime)/float64(total), "%ckpt")
	}
}

// BenchmarkNaiveAppend is the baseline: the straightforward bbolt store,
// one Update (and so one commit, synced) per message, writing the message
// into its conversation's bucket under the next seq, into the recipient's
// queue bucket, and the cid record.
func BenchmarkNaiveAppend(b *testing.B) {
	for _, w := range benchWriters {
		b.Run(fmt.Sprintf("writers=%d", w), func(b *testing.B) {
			db, err := bolt.Open(filepath.Join(b.TempDir(), "naive.db"), 0o600, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			runWriters(b, w, func(_ context.Context, req store.AppendRequest) (store.Message, bool, error) {
				m := req.Msg
				val := append([]byte(m.ID+"\x00"+m.Conv+"\x00"+m.From+"\x00"+m.To+"\x00"+strconv.FormatInt(m.TS, 10)+"\x00"), m.Body...)
				err := db.Update(func(tx *bolt.Tx) error {
					h, err := bucketPath(tx, "hist", m.Conv)
					if err != nil {
						return err
					}
					if m.Seq, err = h.NextSequence(); err != nil {
						return err
					}
					if err := h.Put(binary.BigEndian.AppendUint64(nil, m.Seq), val); err != nil {
						return err
					}
					for _, u := range req.Pending {
						q, err := bucketPath(tx, "pend", u)
						if err != nil {
							return err
						}
						n, err := q.NextSequence()
						if err != nil {
							return err
						}
						if err := q.Put(binary.BigEndian.AppendUint64(nil, n), val); err != nil {
							return err
						}
					}
					c, err := tx.CreateBucketIfNotExists([]byte("cids"))
					if err != nil {
						return err
					}
					return c.Put([]byte(m.From+"\x00"+req.CID), binary.BigEndian.AppendUint64(nil, m.Seq))
				})
				return m, false, err
			})
		})
	}
}

// BenchmarkUnbatchedAppend is boltstore with MaxBatch 1: one transaction
// per message, to show what group commit adds.
func BenchmarkUnbatchedAppend(b *testing.B) {
	for _, w := range benchWriters {
		b.Run(fmt.Sprintf("writers=%d", w), func(b *testing.B) {
			opts := benchBounds
			opts.MaxBatch = 1
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "bench.db"), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			runWriters(b, w, s.Append)
		})
	}
}

func bucketPath(tx *bolt.Tx, top, name string) (*bolt.Bucket, error) {
	t, err := tx.CreateBucketIfNotExists([]byte(top))
	if err != nil {
		return nil, err
	}
	return t.CreateBucketIfNotExists([]byte(name))
}

// runWriters sends b.N messages through appendFn from writers goroutines
// and reports msgs/s.
func runWriters(b *testing.B, writers int, appendFn func(context.Context, store.AppendRequest) (store.Message, bool, error)) {
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
			// Ids shaped like the hub's UUIDv7 (time-ordered, 36 bytes).
			idPrefix := fmt.Sprintf("0190b6f2-7c4e-7%03x-8000-", w%4096)
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				seq := strconv.FormatInt(i, 10)
				_, _, err := appendFn(ctx, store.AppendRequest{
					Msg: store.Message{
						ID: idPrefix + "000000000000"[len(seq):] + seq, Conv: conv,
						TS: time.Now().UnixMilli(), Cmd: 10, From: from, To: to, Body: body,
					},
					Pending: []string{to},
					CID:     "c" + seq,
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
	b.ReportMetric(0, "ns/op") // a rate of concurrent writers: ns/op means nothing
}

// BenchmarkConversations measures Conversations for a user with 1,000 and
// 10,000 direct conversations, checkpointed into the index (the state of a
// store that has run a while: every commit checkpoints here). Run with:
//
//	go test -run '^$' -bench Conversations -benchmem ./store/boltstore
func BenchmarkConversations(b *testing.B) {
	storetest.BenchmarkConversations(b, func(b *testing.B) store.Store {
		s, err := boltstore.Open(filepath.Join(b.TempDir(), "hub.db"), boltstore.Options{NoSync: true, CheckpointEvery: 1})
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}

// BenchmarkPendingPage measures reading a queue of 10,000 messages,
// checkpointed into the index: its first page of 100 (what a connection
// waits for before its first message goes out), the whole queue in pages
// of 100, and Pending at once. Run with:
//
//	go test -run '^$' -bench PendingPage -benchmem ./store/boltstore
func BenchmarkPendingPage(b *testing.B) {
	const queued, limit = 10_000, 100
	s, err := boltstore.Open(filepath.Join(b.TempDir(), "hub.db"), boltstore.Options{NoSync: true, MaxPending: -1, MaxPendingPerSender: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := b.Context()
	fillQueue(b, s, "bob", 0, queued)

	b.Run("FirstPage", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			page, next, err := s.PendingPage(ctx, "bob", "", limit)
			if err != nil || len(page) != limit || next == "" {
				b.Fatalf("PendingPage: %d messages, next %q, err %v", len(page), next, err)
			}
		}
	})
	b.Run("AllPages", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n, err := eachPage(ctx, s, "bob", limit, func([]store.Message) error { return nil })
			if err != nil {
				b.Fatal(err)
			}
			if n != queued {
				b.Fatalf("the pages held %d messages", n)
			}
		}
	})
	b.Run("Pending", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ms, err := s.Pending(ctx, "bob"); err != nil || len(ms) != queued {
				b.Fatalf("Pending: %d messages, err %v", len(ms), err)
			}
		}
	})
}

// fillQueue enqueues the messages first to first+n-1 (ids "m<i>") for
// user from 16 concurrent writers, so that group commit fills the queue
// fast, and checkpoints them into the index.
func fillQueue(b *testing.B, s *boltstore.Store, user string, first, n int) {
	b.Helper()
	ctx := b.Context()
	const writers = 16
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			from := "u" + strconv.Itoa(w)
			for i := first + w; i < first+n; i += writers {
				m := store.Message{ID: "m" + strconv.Itoa(i), Conv: store.DirectConv(from, user), From: from, To: user, Cmd: 10, Body: []byte(`{"content":"hello"}`)}
				if _, _, err := s.Append(ctx, store.AppendRequest{Msg: m, Pending: []string{user}}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	boltstore.ExpireNow(s) // checkpoints (nothing expires without MaxAge)
}

// BenchmarkPendingPageAcked measures what the hub does when a user with a
// checkpointed queue connects: it walks the queue in pages of 256 and
// acknowledges each page before reading the next, so that the acks of the
// walk wait in the overlay (no checkpoint comes between: CheckpointEvery
// and CheckpointInterval are out of reach). An op is the walk of a whole
// queue, acks included; the queue is filled again, untimed, before each.
// Run with:
//
//	go test -run '^$' -bench PendingPageAcked -benchmem ./store/boltstore
func BenchmarkPendingPageAcked(b *testing.B) {
	const limit = 256
	for _, queued := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("queued=%d", queued), func(b *testing.B) {
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "hub.db"), boltstore.Options{
				NoSync: true, MaxPending: -1, MaxPendingPerSender: -1,
				CheckpointEvery: 1 << 30, CheckpointInterval: time.Hour,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := b.Context()
			b.ReportAllocs()
			b.StopTimer()
			for i := range b.N {
				fillQueue(b, s, "bob", i*queued, queued)
				b.StartTimer()
				n, err := eachPage(ctx, s, "bob", limit, func(page []store.Message) error {
					acks := make([]string, len(page))
					for j, m := range page {
						acks[j] = m.ID
					}
					return s.Ack(ctx, "bob", acks...)
				})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if n != queued {
					b.Fatalf("the pages held %d messages", n)
				}
			}
		})
	}
}
