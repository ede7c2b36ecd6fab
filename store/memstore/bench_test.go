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
