package memstore_test

import (
	"context"
	"fmt"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/memstore"
)

func Example() {
	ctx := context.Background()
	s := memstore.New(memstore.Options{HistoryLimit: 1000})
	defer s.Close()

	conv := store.DirectConv("alice", "bob")
	for i, text := range []string{"hi bob", "are you there?"} {
		m, _, err := s.Append(ctx, store.AppendRequest{
			Msg:     store.Message{ID: fmt.Sprint("m", i+1), Conv: conv, Cmd: 10, From: "alice", To: "bob", Body: []byte(text)},
			Pending: []string{"bob"}, // queued until bob acks it
			CID:     fmt.Sprint("client-", i+1),
		})
		if err != nil {
			panic(err)
		}
		fmt.Println("stored", m.ID, "seq", m.Seq)
	}

	// A resend of the first frame stores nothing.
	m, dup, _ := s.Append(ctx, store.AppendRequest{
		Msg: store.Message{ID: "m3", Conv: conv, From: "alice", To: "bob", Body: []byte("hi bob")},
		CID: "client-1",
	})
	fmt.Println("resend: dup", dup, "of", m.ID)

	queued, _ := s.Pending(ctx, "bob")
	fmt.Println("bob has", len(queued), "pending")
	_ = s.Ack(ctx, "bob", queued[0].ID)

	page, _ := s.History(ctx, conv, store.Query{Limit: 10})
	for _, m := range page.Items {
		fmt.Printf("%d %s: %s\n", m.Seq, m.From, m.Body)
	}
	queued, _ = s.Pending(ctx, "bob")
	fmt.Println("bob has", len(queued), "pending")
	// Output:
	// stored m1 seq 1
	// stored m2 seq 2
	// resend: dup true of m1
	// bob has 2 pending
	// 1 alice: hi bob
	// 2 alice: are you there?
	// bob has 1 pending
}
