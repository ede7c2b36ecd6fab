package storetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/wshub/wshub/store"
)

// BenchmarkConversations measures store.Inbox.Conversations for a user with
// 1,000 and 10,000 direct conversations and 10 rooms, asking for the
// default limit (100), as cmd 18 does. newStore returns an empty store,
// which the benchmark fills (with 16 concurrent writers, so that a store
// with group commit fills fast) and closes.
func BenchmarkConversations(b *testing.B, newStore func(b *testing.B) store.Store) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("Direct%d", n), func(b *testing.B) {
			s := newStore(b)
			defer s.Close()
			var in store.Inbox = s
			ctx := b.Context()
			for i := range 10 {
				room := fmt.Sprintf("room%d", i)
				if err := s.Join(ctx, room, "alice"); err != nil {
					b.Fatal(err)
				}
				m := msg(store.RoomConv(room), "r"+room, "alice", room)
				m.Cmd, m.TS = 11, baseTS+int64(i*n/10)
				if _, _, err := s.Append(ctx, store.AppendRequest{Msg: m}); err != nil {
					b.Fatal(err)
				}
			}
			const writers = 16
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := range writers {
				wg.Go(func() {
					for i := w; i < n; i += writers {
						peer := fmt.Sprintf("peer%05d", i)
						m := msg(store.DirectConv("alice", peer), fmt.Sprintf("m%05d", i), peer, "alice")
						m.TS = baseTS + int64(i)
						if _, _, err := s.Append(ctx, store.AppendRequest{Msg: m}); err != nil {
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
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				items, more, err := in.Conversations(ctx, "alice", 0)
				if err != nil || len(items) != store.DefaultConversations || !more {
					b.Fatalf("Conversations: %d items, more %v, err %v", len(items), more, err)
				}
			}
		})
	}
}
