package client_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/client"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/store"
)

// A message is stored but its receipt is lost with the connection: the
// client reconnects and writes the frame again with the SAME cid, so the
// hub's (sender, cid) check answers with the first receipt instead of
// storing it twice. The recipient gets it once, and Send returns the
// receipt of the message that was stored.
//
// The loss is made deterministic by a middleware that, for the first
// direct message only, closes the connection (1013) before letting the
// frame through: the router stores and delivers the message, and the
// receipt it queues then is refused, since the connection is closing.
func TestClient_ResendAfterLostReceiptKeepsTheCID(t *testing.T) {
	var (
		mu   sync.Mutex
		cids []string // guarded by mu: the cid of every direct message alice's connections read
	)
	var cut atomic.Bool
	lost := make(chan error, 1) // what the router returned for the frame whose receipt was lost
	srv := hubtest.New(t, wshub.Options{Middleware: []wshub.Middleware{func(next wshub.Dispatcher) wshub.Dispatcher {
		return wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
			if f.Cmd != wshub.CmdSingle || n.UserID() != "alice" {
				return next.Dispatch(ctx, n, f)
			}
			mu.Lock()
			cids = append(cids, f.CID)
			mu.Unlock()
			if !cut.CompareAndSwap(false, true) {
				return next.Dispatch(ctx, n, f)
			}
			n.Close(wshub.CloseTryAgainLater, "receipt lost on purpose")
			// The connection's context ends with the connection: store
			// the message whatever the timing of the close.
			err := next.Dispatch(context.WithoutCancel(ctx), n, f)
			lost <- err
			if errors.Is(err, wshub.ErrClosed) {
				return nil // the receipt could not be queued: that is the point
			}
			return err
		})
	}}})
	bob := srv.Dial(t, "bob")
	var ev events
	alice := dial(t, srv.URL, "alice", ev.options(client.Options{Backoff: fastBackoff, HeartbeatInterval: -1}))

	r := send(t, alice, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "once"})

	require.True(t, cut.Load(), "the middleware never cut a connection")
	require.ErrorIs(t, <-lost, wshub.ErrClosed, "the first frame was stored and its receipt refused")
	assert.Contains(t, ev.closeCodes(), wshub.CloseTryAgainLater, "the first connection was closed by the middleware")
	assert.GreaterOrEqual(t, ev.openCount(), 2, "the client reconnected")

	mu.Lock()
	got := append([]string(nil), cids...)
	mu.Unlock()
	require.GreaterOrEqual(t, len(got), 2, "the frame was not written again after the reconnect")
	for i, cid := range got[1:] {
		assert.Equal(t, got[0], cid, "write %d of the frame carries a new cid", i+2)
	}
	assert.Equal(t, got[0], r.CID, "Send returned the receipt of another cid")

	page, err := srv.Hub.Store().History(context.Background(), store.DirectConv("alice", "bob"), store.Query{})
	require.NoError(t, err)
	require.Len(t, page.Items, 1, "the message was stored more than once")
	assert.Equal(t, page.Items[0].ID, r.ID, "Send returned a receipt for another message than the one stored")

	m := bob.Expect(t, wshub.CmdSingle)
	assert.Equal(t, r.ID, m.ID)
	assert.Equal(t, "once", m.Content)
	bob.ExpectNothing(t) // no second delivery
}

// A message the hub refuses with 503 (shutting down, store unavailable)
// was not stored: it stays in the outbox and is written again, with the
// same cid, on the next connection; its Send ends with that attempt's
// receipt. The 503 goes to OnError. Any other error frame settles it.
func TestClient_Refused503IsResentOnTheNextConnection(t *testing.T) {
	h := startFakeHub(t)
	var cb events
	var errs atomic.Int32
	opts := cb.options(client.Options{Backoff: fastBackoff})
	opts.OnError = func(error) { errs.Add(1) }
	alice := dial(t, h.url, "alice", opts)

	type res struct {
		f   *wshub.Frame
		err error
	}
	done := make(chan res, 1)
	go func() {
		f, err := alice.Send(context.Background(), &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "hi"})
		done <- res{f, err}
	}()
	first := h.next(t)
	cid, _ := first["cid"].(string)
	require.NotEmpty(t, cid)
	h.out <- `{"cmd":40,"code":503,"reason":"hub is shutting down","cid":"` + cid + `"}`
	require.Eventually(t, func() bool { return errs.Load() == 1 }, wait, time.Millisecond, "the 503 is reported to OnError")
	select {
	case r := <-done:
		t.Fatalf("Send ended on a 503: %+v, %v", r.f, r.err)
	default:
	}
	h.closeConn <- struct{}{}

	again := h.next(t)
	assert.Equal(t, cid, again["cid"], "the same cid on the next connection")
	assert.Equal(t, "hi", again["content"])
	h.out <- `{"cmd":15,"cid":"` + cid + `","id":"m1","seq":1,"ts":5}`
	select {
	case r := <-done:
		require.NoError(t, r.err)
		assert.Equal(t, "m1", r.f.ID)
	case <-time.After(wait):
		t.Fatal("Send did not end with the receipt")
	}

	// A 400 settles at once.
	go func() {
		f, err := alice.Send(context.Background(), &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "bad"})
		done <- res{f, err}
	}()
	cid, _ = h.next(t)["cid"].(string)
	h.out <- `{"cmd":40,"code":400,"reason":"bad request","cid":"` + cid + `"}`
	select {
	case r := <-done:
		var se *client.ServerError
		require.ErrorAs(t, r.err, &se)
		assert.Equal(t, 400, se.Code)
	case <-time.After(wait):
		t.Fatal("Send did not end with the 400")
	}
}
