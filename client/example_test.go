package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/client"
)

// Two clients talk through a hub started in-process. bob acknowledges what
// he receives (Ack), so the hub keeps messages for him until he has them.
func Example() {
	hub, err := wshub.New(wshub.Options{
		Authenticate: wshub.DevAuthenticate, // the token is the user id
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(hub)
	defer srv.Close()
	defer hub.Shutdown(context.Background())
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bob, err := client.Dial(ctx, url, client.Options{Token: "bob", Ack: true})
	if err != nil {
		panic(err)
	}
	defer bob.Close()
	alice, err := client.Dial(ctx, url, client.Options{Token: "alice"})
	if err != nil {
		panic(err)
	}
	defer alice.Close()

	// Send waits for the receipt: the message is stored.
	receipt, err := alice.Send(ctx, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "hello"})
	if err != nil {
		panic(err)
	}
	fmt.Println("stored as seq", receipt.Seq)

	m := <-bob.Messages()
	fmt.Println(m.UserID, "says", m.Content)
	// Output:
	// stored as seq 1
	// alice says hello
}

// alice watches bob and carol: Watch returns their states now, and each
// change comes to OnPresence (here carol connecting).
func ExampleClient_Watch() {
	hub, err := wshub.New(wshub.Options{
		Authenticate:     wshub.DevAuthenticate,
		Logger:           slog.New(slog.DiscardHandler),
		PresenceInterval: 10 * time.Millisecond, // announce changes quickly
	})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(hub)
	defer srv.Close()
	defer hub.Shutdown(context.Background())
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	changes := make(chan client.Presence, 8)
	alice, err := client.Dial(ctx, url, client.Options{
		Token:      "alice",
		OnPresence: func(p client.Presence) { changes <- p },
	})
	if err != nil {
		panic(err)
	}
	defer alice.Close()
	bob, err := client.Dial(ctx, url, client.Options{Token: "bob"})
	if err != nil {
		panic(err)
	}
	defer bob.Close()

	states, err := alice.Watch(ctx, "bob", "carol")
	if err != nil {
		panic(err)
	}
	for _, p := range states {
		fmt.Println(p.UserID, "online:", p.Online)
	}
	carol, err := client.Dial(ctx, url, client.Options{Token: "carol"})
	if err != nil {
		panic(err)
	}
	defer carol.Close()
	p := <-changes
	fmt.Println(p.UserID, "came online:", p.Online)
	// Output:
	// bob online: true
	// carol online: false
	// carol came online: true
}
