package redisstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/internal/redistest"
	"github.com/wshub/wshub/store/redisstore"
)

// dialWhenReady connects user to h, retrying while the hub answers 503
// (its feed is not subscribed), and reads the welcome frame. It fails the
// test after waitBound.
func dialWhenReady(t *testing.T, h *hubtest.Server, user string) *hubtest.Conn {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for {
		ws, resp, err := websocket.DefaultDialer.Dial(h.DialURL(user), nil)
		if err == nil {
			t.Cleanup(func() { ws.Close() })
			c := &hubtest.Conn{WS: ws}
			c.Welcome = c.Expect(t, wshub.CmdWelcome)
			return c
		}
		require.True(t, resp != nil && resp.StatusCode == http.StatusServiceUnavailable,
			"dial %s: %v", user, err)
		require.True(t, time.Now().Before(deadline), "hub still answers 503 after %v", waitBound)
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHubs_RepeatedOutagesRecoverEquallyFast: four identical Redis
// outages (the server stopped for half a second, then started again on the
// same port with its data) a few seconds apart. After each one the hub
// accepts connections again about as soon as after the first: its
// resubscribe backoff starts over once a subscription has been healthy,
// instead of growing from one outage to the next. Nothing receipted is
// lost: a direct message sent before and one after each outage, to a user
// who is offline throughout, all reach that user in seq order.
func TestHubs_RepeatedOutagesRecoverEquallyFast(t *testing.T) {
	const (
		outages = 4
		down    = 500 * time.Millisecond // each outage
		healthy = 2 * time.Second        // the subscription's up time between outages
	)
	// A server of its own, which the test stops; with an fsynced AOF so
	// that a stop loses nothing receipted.
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	st, err := redisstore.Open(t.Context(), srv.Addr, redisstore.Options{Prefix: newPrefix("outage")})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, st.Close()) })
	hub := hubtest.New(t, wshub.Options{Store: st, Logger: slog.New(slog.DiscardHandler)})

	send := func(from, to *hubtest.Conn, content string) {
		t.Helper()
		from.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: content, Content: content})
		require.Equal(t, content, from.Expect(t, wshub.CmdReceipt).CID)
		require.Equal(t, content, to.Expect(t, wshub.CmdSingle).Content, "the sender's other device, live through the feed")
	}
	var took []time.Duration
	alice1 := dialWhenReady(t, hub, "alice")
	for i := range outages {
		alice2 := dialWhenReady(t, hub, "alice")
		send(alice1, alice2, fmt.Sprint("before ", i))

		srv.Stop()
		assert.Equal(t, wshub.CloseTryAgainLater, alice1.ExpectClose(t))
		assert.Equal(t, wshub.CloseTryAgainLater, alice2.ExpectClose(t))
		time.Sleep(down)
		require.NoError(t, srv.Restart())
		back := time.Now()
		alice1 = dialWhenReady(t, hub, "alice")
		took = append(took, time.Since(back))
		t.Logf("outage %d: accepting again %v after Redis was back", i+1, took[i].Round(time.Millisecond))

		alice2 = dialWhenReady(t, hub, "alice")
		send(alice1, alice2, fmt.Sprint("after ", i))
		alice2.WS.Close()
		if i < outages-1 {
			time.Sleep(healthy)
		}
	}

	bob := dialWhenReady(t, hub, "bob")
	for i := range 2 * outages {
		want := fmt.Sprint("before ", i/2)
		if i%2 == 1 {
			want = fmt.Sprint("after ", i/2)
		}
		m := bob.Expect(t, wshub.CmdSingle)
		assert.Equal(t, want, m.Content, "from the pending queue, in order")
		assert.Equal(t, uint64(i+1), m.Seq)
	}
	bob.ExpectNothing(t)

	// Generous on purpose: a backoff that grows from outage to outage
	// takes seconds by the third (0.2, 0.3, 1.1, 2.7 s were seen), one
	// that starts over stays within a second of the first.
	for i, d := range took[1:] {
		assert.LessOrEqual(t, d, took[0]+time.Second,
			"outage %d took %v to recover, the first %v: %v", i+2, d, took[0], took)
	}
}

// TestHubs_ReadyFollowsTheFeed: a hub started while Redis is down is not
// Ready (upgrades get 503) and WaitReady waits; once Redis is up the hub
// subscribes by itself and WaitReady returns. When Redis goes away Ready
// turns false, and Shutdown ends a WaitReady with ErrClosed.
func TestHubs_ReadyFollowsTheFeed(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	// New does no I/O: the Store can be made while Redis is down.
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	st, err := redisstore.New(client, redisstore.Options{Prefix: newPrefix("ready"), CloseClient: true})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, st.Close()) })
	hub := hubtest.New(t, wshub.Options{Store: st, Logger: slog.New(slog.DiscardHandler)})

	assert.False(t, hub.Hub.Ready())
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, hub.Hub.WaitReady(ctx), context.DeadlineExceeded)
	_, resp, err := websocket.DefaultDialer.Dial(hub.DialURL("alice"), nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	waited := make(chan error, 1) // written once by the waiter
	go func() { waited <- hub.Hub.WaitReady(t.Context()) }()
	require.NoError(t, srv.Restart())
	select {
	case err := <-waited:
		require.NoError(t, err)
	case <-time.After(waitBound):
		t.Fatalf("WaitReady did not return within %v of Redis starting", waitBound)
	}
	assert.True(t, hub.Hub.Ready())
	alice := hub.Dial(t, "alice")

	srv.Stop()
	assert.Equal(t, wshub.CloseTryAgainLater, alice.ExpectClose(t))
	assert.False(t, hub.Hub.Ready(), "not ready once its connections were closed for the broken feed")
	go func() { waited <- hub.Hub.WaitReady(t.Context()) }()
	sctx, scancel := context.WithTimeout(t.Context(), waitBound)
	defer scancel()
	require.NoError(t, hub.Hub.Shutdown(sctx))
	select {
	case err := <-waited:
		assert.ErrorIs(t, err, wshub.ErrClosed)
	case <-time.After(waitBound):
		t.Fatal("WaitReady did not return after Shutdown")
	}
	assert.False(t, hub.Hub.Ready())
}
