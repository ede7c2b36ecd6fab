package redisstore_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/redisstore"
)

// Example stores a direct message, resends it, delivers it and reads the
// conversation back. It needs a Redis server on localhost:6379, so it has
// no "// Output:" comment: go test compiles it but does not run it. The
// package's tests run the same calls against a redis-server they start.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := redisstore.Open(ctx, "localhost:6379", redisstore.Options{
		Prefix:     "chat:", // every hub process of this chat uses the same prefix
		MaxHistory: 1000,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	conv := store.DirectConv("alice", "bob")
	req := store.AppendRequest{
		Msg:     store.Message{ID: "0190b6f2-0001", Conv: conv, Cmd: 10, From: "alice", To: "bob", Body: []byte(`{"content":"hi bob"}`)},
		Pending: []string{"bob"}, // queued until bob acks it
		CID:     "client-1",
	}
	m, _, err := s.Append(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored", m.ID, "seq", m.Seq)

	// The client did not get its receipt and sends the frame again, maybe
	// to another hub process: nothing is stored twice.
	req.Msg.ID = "0190b6f2-0002"
	m, dup, _ := s.Append(ctx, req)
	fmt.Println("resend: dup", dup, "of", m.ID)

	queued, _ := s.Pending(ctx, "bob")
	for _, q := range queued {
		_ = s.Ack(ctx, "bob", q.ID) // after bob's client acked the delivery
	}
	page, _ := s.History(ctx, conv, store.Query{Limit: 20})
	for _, m := range page.Items {
		fmt.Printf("%d %s: %s\n", m.Seq, m.From, m.Body)
	}
}

// ExampleNew shares an application's own go-redis client with the Store.
func ExampleNew() {
	client := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	defer client.Close()
	s, err := redisstore.New(client, redisstore.Options{}) // Close leaves client open
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(context.Background()); err != nil {
		log.Fatal(err)
	}
}
