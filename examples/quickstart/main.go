// Command quickstart is the README's quick start, whole: a hub with its
// own authentication, the browser client served at /wshub.js, a bbolt
// store, and a graceful shutdown.
package main

import (
	"context"
	"errors"
	"log"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/client/js"
	"github.com/wshub/wshub/store/boltstore"
)

// users is your authentication: here, a fixed table of tokens.
var users = map[string]string{"token-alice": "alice", "token-bob": "bob"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	st, err := boltstore.Open("chat.db", boltstore.Options{}) // or memstore.New, redisstore.Open
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	hub, err := wshub.New(wshub.Options{
		Store: st,
		Authenticate: func(r *http.Request) (string, error) {
			if user, ok := users[wshub.Token(r)]; ok { // ?token=, or Authorization: Bearer
				return user, nil
			}
			return "", wshub.ErrUnauthorized // HTTP 401
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	http.Handle("/ws", hub)
	http.Handle("/wshub.js", js.Handler()) // the browser client
	srv := &http.Server{Addr: "localhost:8080", ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hub.Shutdown(shutdown) // every client gets 1001 and reconnects elsewhere
	srv.Shutdown(shutdown)
}
