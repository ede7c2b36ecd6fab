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
