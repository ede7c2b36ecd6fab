package memstore_test

import (
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/memstore"
	"github.com/wshub/wshub/store/storetest"
)

// BenchmarkAppend measures Append from parallel goroutines, as a hub's
// connections call it. Run with:
//
//	go test -run '^$' -bench Append -benchmem ./store/memstore
func BenchmarkAppend(b *testing.B) {
	body := []byte(`{"media":1,"content":"hello, this is a typical chat message"}`)
	cases := []struct {
		name  string
		convs int  // conversations written round-robin; 1 = all contend
		cid   bool // with a (sender, cid) record
	}{
		{"OneConv", 1, false},
		{"OneConvCID", 1, true},
		{"ManyConvs", 1024, false},
		{"ManyConvsCID", 1024, true},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			// The recipients never ack: the pending bounds are put out of
			// reach, and counted and checked all the same.
			s := memstore.New(memstore.Options{MaxPending: 1 << 30, MaxPendingPerSender: 1 << 30})
			defer s.Close()
			convs := make([]string, bc.convs)
			pending := make([][]string, bc.convs)
			for i := range convs {
				convs[i] = store.DirectConv("alice", "user"+strconv.Itoa(i))
				pending[i] = []string{"user" + strconv.Itoa(i)}
			}
			// Ids are made before the timer starts, so that allocs/op
			// counts the store's allocations only. They repeat after
			// idWindow appends (more than the cid bound keeps), which
			// bounds the queues: an id already queued is not queued again.
			const idWindow = 1 << 17
			workers := runtime.GOMAXPROCS(0) // RunParallel's goroutines
			ids := make([][]string, workers)
			for w := range ids {
				ids[w] = make([]string, idWindow)
				for i := range ids[w] {
					ids[w][i] = "sender" + strconv.Itoa(w) + "-" + strconv.Itoa(i)
				}
			}
			var worker atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := int(worker.Add(1)) - 1
				from, ids := "sender"+strconv.Itoa(w), ids[w]
				for i := 0; pb.Next(); i++ {
					c := i % len(convs)
					req := store.AppendRequest{
						Msg: store.Message{
							ID: ids[i%idWindow], Conv: convs[c], Cmd: 10,
							From: from, To: "bob", Body: body,
						},
						Pending: pending[c],
					}
					if bc.cid {
						req.CID = req.Msg.ID
					}
					if _, _, err := s.Append(b.Context(), req); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkPendingAck measures the delivery loop of one user: enqueue,
// then ack by id.
func BenchmarkPendingAck(b *testing.B) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	ctx := b.Context()
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = "m" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := ids[i%len(ids)]
		if _, _, err := s.Append(ctx, store.AppendRequest{
			Msg:     store.Message{ID: id, Conv: "c", From: "alice", To: "bob"},
			Pending: []string{"bob"},
		}); err != nil {
			b.Fatal(err)
		}
		if i >= 100 { // keep ~100 in the queue, ack the oldest
			if err := s.Ack(ctx, "bob", ids[(i-100)%len(ids)]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkConversations measures Conversations for a user with 1,000 and
// 10,000 direct conversations. Run with:
//
//	go test -run '^$' -bench Conversations -benchmem ./store/memstore
func BenchmarkConversations(b *testing.B) {
	storetest.BenchmarkConversations(b, func(*testing.B) store.Store { return memstore.New(memstore.Options{}) })
}

// BenchmarkGCWithStoredMessages measures what a store full of messages
// costs every garbage collection of the process that holds it: 200,000
// direct messages in 1,000 conversations, each appended as the hub does
// (fresh id, conversation and cid strings, a cid record, the recipient's
// queue, acknowledged once delivered), then one op is a runtime.GC(). It
// reports the collection's time and the heap per stored message. Run with:
//
//	go test -run '^$' -bench GCWithStored -benchtime 20x ./store/memstore
func BenchmarkGCWithStoredMessages(b *testing.B) {
	const msgs, convs = 200_000, 1_000
	s := memstore.New(memstore.Options{MaxPending: -1, MaxPendingPerSender: -1, CIDLimit: msgs})
	defer s.Close()
	ctx := b.Context()
	body := []byte(`{"media":1,"content":"hello, this is a typical chat message"}`)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range msgs {
		from, to := "user"+strconv.Itoa(i%convs), "peer"+strconv.Itoa(i%convs)
		id := "0192f7a4-6b1c-7d2e-8f3a-" + strconv.Itoa(100000000000+i)
		if _, _, err := s.Append(ctx, store.AppendRequest{
			Msg:     store.Message{ID: id, Conv: store.DirectConv(from, to), TS: int64(i), Cmd: 10, From: from, To: to, Body: body},
			Pending: []string{to},
			CID:     "cid-" + strconv.Itoa(i),
		}); err != nil {
			b.Fatal(err)
		}
		if err := s.Ack(ctx, to, id); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	b.ResetTimer()
	for b.Loop() {
		runtime.GC()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/msgs, "gc-ns/msg")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/msgs, "heap-B/msg")
	b.ReportMetric(float64(after.HeapObjects-before.HeapObjects)/msgs, "objects/msg")
}

// BenchmarkAppendAck measures a direct message to a user who acknowledges
// it at once (an online recipient without ack=1): the queue empties at
// each message. Run with:
//
//	go test -run '^$' -bench AppendAck -benchmem ./store/memstore
func BenchmarkAppendAck(b *testing.B) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	ctx := b.Context()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := "m" + strconv.Itoa(i&1023)
		if _, _, err := s.Append(ctx, store.AppendRequest{
			Msg:     store.Message{ID: id, Conv: "c", From: "alice", To: "bob"},
			Pending: []string{"bob"},
		}); err != nil {
			b.Fatal(err)
		}
		if err := s.Ack(ctx, "bob", id); err != nil {
			b.Fatal(err)
		}
	}
}
