package wshub_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/memstore"
)

// breakableFeed is a memory store with a Feed whose subscription the test
// breaks: each Subscribe announces EventReady, then waits for brk.
type breakableFeed struct {
	store.Store
	brk chan struct{} // a send breaks the current subscription
}

func (f *breakableFeed) Subscribe(ctx context.Context, fn func(store.Event)) error {
	fn(store.Event{Kind: store.EventReady})
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-f.brk:
		return errors.New("subscription lost")
	}
}

// A connection that passed the ready check just before the feed broke,
// and registered after the hub closed its connections for the break, may
// have missed what the feed announced: it must be closed with 1013 too,
// so that its client reconnects and catches up.
func TestHub_ConnectionRacingAFeedBreakIsClosed(t *testing.T) {
	feed := &breakableFeed{Store: memstore.New(memstore.Options{}), brk: make(chan struct{})}
	inAuth := make(chan struct{})
	release := make(chan struct{})
	srv := hubtest.New(t, wshub.Options{Store: feed, Authenticate: func(r *http.Request) (string, error) {
		if wshub.Token(r) == "racer" {
			close(inAuth) // past the ready check
			<-release
		}
		return wshub.DevAuthenticate(r)
	}})
	waitFor(t, srv.Hub.Ready)
	type dialed struct {
		ws  *websocket.Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		ws, _, err := websocket.DefaultDialer.Dial(srv.DialURL("racer"), nil)
		done <- dialed{ws, err}
	}()
	<-inAuth
	feed.brk <- struct{}{} // the feed breaks; the hub sweeps its connections, then resubscribes
	waitFor(t, func() bool { return !srv.Hub.Ready() })
	waitFor(t, srv.Hub.Ready)
	close(release) // the racer registers only now, after the sweep
	d := <-done
	require.NoError(t, d.err)
	defer d.ws.Close()
	racer := &hubtest.Conn{WS: d.ws}
	assert.Equal(t, wshub.CmdWelcome, racer.Recv(t).Cmd, "the welcome first")
	assert.Equal(t, wshub.CloseTryAgainLater, racer.ExpectClose(t))
	require.Eventually(t, func() bool { return !srv.Hub.IsOnline("racer") }, 10*time.Second, 10*time.Millisecond)
}
