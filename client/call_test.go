package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/client"
	"github.com/wshub/wshub/hubtest"
)

// Application commands of the request/reply tests.
const (
	cmdEcho  wshub.Cmd = 100 // answered with "echo " + content; memo "batch": see callHub
	cmdFail  wshub.Cmd = 101 // answered with errSeatTaken
	cmdDrop  wshub.Cmd = 102 // closes the connection (1013) instead of answering
	cmdHold  wshub.Cmd = 103 // not answered; handed to callHub.held for the test to answer
	cmdNoOne wshub.Cmd = 150 // no handler: 404
)

// errSeatTaken is the application's own error for cmdFail.
var errSeatTaken = &wshub.Error{Code: 409, Reason: "seat taken"}

// held is a request the hub did not answer yet, and its connection.
type held struct {
	n *wshub.Node
	f *wshub.Frame
}

// callHub is a real hub whose Dispatcher answers the application commands
// above. Echo requests with memo "batch" are collected until batchSize have
// come and then answered in reverse order, so that answers do not come in
// the order of the requests.
type callHub struct {
	*hubtest.Server
	batchSize int
	drops     atomic.Int32 // cmdDrop requests dispatched
	held      chan held    // cmdHold requests

	mu    sync.Mutex
	batch []held // guarded by mu
}

func newCallHub(t *testing.T, batchSize int) *callHub {
	h := &callHub{batchSize: batchSize, held: make(chan held, 8)}
	h.Server = hubtest.New(t, wshub.Options{Dispatcher: wshub.DispatcherFunc(h.dispatch)})
	return h
}

func (h *callHub) dispatch(_ context.Context, n *wshub.Node, f *wshub.Frame) error {
	switch f.Cmd {
	case cmdEcho:
		if f.Memo != "batch" {
			return n.Send(&wshub.Frame{Cmd: f.Cmd, CID: f.CID, Content: "echo " + f.Content})
		}
		h.mu.Lock()
		h.batch = append(h.batch, held{n, f})
		var all []held
		if len(h.batch) == h.batchSize {
			all, h.batch = h.batch, nil
		}
		h.mu.Unlock()
		for i := len(all) - 1; i >= 0; i-- {
			r := all[i]
			if err := r.n.Send(&wshub.Frame{Cmd: r.f.Cmd, CID: r.f.CID, Content: "echo " + r.f.Content}); err != nil {
				return err
			}
		}
		return nil
	case cmdFail:
		return fmt.Errorf("%w: %s", errSeatTaken, f.Content)
	case cmdDrop:
		h.drops.Add(1)
		n.Close(1013, "dropped by the test")
		return nil
	case cmdHold:
		h.held <- held{n, f}
		return nil
	}
	return wshub.ErrUnknownCommand
}

// call runs c.Call with the tests' generous deadline.
func call(c *client.Client, f *wshub.Frame) (*wshub.Frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return c.Call(ctx, f)
}

// requireNextMessageIsMarker pushes a direct message to user through the
// hub and requires it to be the next message on c's Messages: an answer to
// a Call, which the hub queued on the connection before, would come first
// if it were delivered as a message.
func requireNextMessageIsMarker(t *testing.T, h *callHub, c *client.Client, user string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := h.Hub.SendToUser(ctx, "system", user, &wshub.Frame{Content: "marker"})
	require.NoError(t, err)
	m := recv(t, c)
	assert.Equal(t, "marker", m.Content, "an answer to a Call was delivered as a message: %+v", m)
}

func TestClient_CallReturnsTheAnswer(t *testing.T) {
	h := newCallHub(t, 0)
	alice := dial(t, h.URL, "alice", client.Options{})

	req := &wshub.Frame{Cmd: cmdEcho, CID: "mine", Content: "hi"}
	r, err := call(alice, req)
	require.NoError(t, err)
	assert.Equal(t, cmdEcho, r.Cmd)
	assert.Equal(t, "echo hi", r.Content)
	assert.NotEmpty(t, r.CID)
	assert.NotEqual(t, "mine", r.CID, "Call uses a fresh cid of its own")
	assert.Equal(t, "mine", req.CID, "the caller's frame is not modified")
	assert.Zero(t, alice.Pending(), "the answer settled the outbox entry")

	requireNextMessageIsMarker(t, h, alice, "alice")
}

func TestClient_CallErrorFrameFailsTheCall(t *testing.T) {
	h := newCallHub(t, 0)
	alice := dial(t, h.URL, "alice", client.Options{})

	_, err := call(alice, &wshub.Frame{Cmd: cmdFail, Content: "14C"})
	require.Error(t, err)
	assert.ErrorIs(t, err, errSeatTaken)
	var se *client.ServerError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 409, se.Code)
	assert.Equal(t, "seat taken: 14C", se.Reason)
	assert.Equal(t, wshub.CmdError, se.Frame.Cmd)

	_, err = call(alice, &wshub.Frame{Cmd: cmdNoOne})
	assert.ErrorIs(t, err, wshub.ErrUnknownCommand)

	_, err = call(alice, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob"})
	assert.ErrorIs(t, err, wshub.ErrBadRequest, "Call is for application commands only")
	assert.Zero(t, alice.Pending())

	// The client carries on.
	r, err := call(alice, &wshub.Frame{Cmd: cmdEcho, Content: "still here"})
	require.NoError(t, err)
	assert.Equal(t, "echo still here", r.Content)
}

// Answers that come in another order than the requests still reach their
// own callers: they are matched by cid, not by order.
func TestClient_ConcurrentCallsGetTheirOwnAnswers(t *testing.T) {
	const n = 10
	h := newCallHub(t, n)
	alice := dial(t, h.URL, "alice", client.Options{})

	var wg sync.WaitGroup
	got := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			r, err := call(alice, &wshub.Frame{Cmd: cmdEcho, Memo: "batch", Content: fmt.Sprint("q", i)})
			errs[i] = err
			if err == nil {
				got[i] = r.Content
			}
		})
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i], "call %d", i)
		assert.Equal(t, fmt.Sprint("echo q", i), got[i], "call %d got another call's answer", i)
	}
	assert.Zero(t, alice.Pending())
	requireNextMessageIsMarker(t, h, alice, "alice")
}

// When ctx ends first Call returns ctx.Err(); the answer that comes later
// is dropped, not delivered as a message.
func TestClient_CallContextCancelled(t *testing.T) {
	h := newCallHub(t, 0)
	alice := dial(t, h.URL, "alice", client.Options{})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := alice.Call(ctx, &wshub.Frame{Cmd: cmdHold})
		done <- err
	}()
	var req held
	select {
	case req = <-h.held:
	case <-time.After(wait):
		t.Fatal("the request did not reach the hub")
	}
	cancel()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(wait):
		t.Fatal("Call did not return after its ctx ended")
	}
	assert.Zero(t, alice.Pending(), "the abandoned call left the outbox")

	require.NoError(t, req.n.Send(&wshub.Frame{Cmd: req.f.Cmd, CID: req.f.CID, Content: "too late"}))
	requireNextMessageIsMarker(t, h, alice, "alice")
}

// The connection drops after the request was written and before the
// answer: Call fails with ErrConnectionLost at once, and the request is
// not written again after the reconnect (the hub does not deduplicate
// application commands, so that could run it twice).
func TestClient_CallFailsWhenTheConnectionDrops(t *testing.T) {
	h := newCallHub(t, 0)
	var ev events
	alice := dial(t, h.URL, "alice", ev.options(client.Options{Backoff: fastBackoff}))

	_, err := call(alice, &wshub.Frame{Cmd: cmdDrop})
	require.ErrorIs(t, err, client.ErrConnectionLost)
	assert.Zero(t, alice.Pending(), "the lost call left the outbox")

	require.Eventually(t, func() bool { return ev.openCount() == 2 }, wait, 5*time.Millisecond, "no reconnect")
	r, err := call(alice, &wshub.Frame{Cmd: cmdEcho, Content: "again"})
	require.NoError(t, err, "a call on the new connection")
	assert.Equal(t, "echo again", r.Content)
	assert.EqualValues(t, 1, h.drops.Load(), "the lost request was written again after the reconnect")
}

// A Call made before there is a connection waits for one: it was never
// written, so writing it on the first connection is safe.
func TestClient_CallWaitsForAConnection(t *testing.T) {
	h := newCallHub(t, 0)
	c, err := client.New(h.URL, client.Options{Token: "alice"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	type answer struct {
		f   *wshub.Frame
		err error
	}
	done := make(chan answer, 1)
	go func() {
		f, err := call(c, &wshub.Frame{Cmd: cmdEcho, Content: "queued"})
		done <- answer{f, err}
	}()
	require.Eventually(t, func() bool { return c.Pending() == 1 }, wait, time.Millisecond)
	go func() { _ = c.Run(context.Background()) }()
	select {
	case a := <-done:
		require.NoError(t, a.err)
		assert.Equal(t, "echo queued", a.f.Content)
	case <-time.After(wait):
		t.Fatal("the queued call was not answered")
	}
}

func TestClient_CallFailsWithErrClosedOnClose(t *testing.T) {
	h := newCallHub(t, 0)
	alice := dial(t, h.URL, "alice", client.Options{})
	done := make(chan error, 1)
	go func() {
		_, err := call(alice, &wshub.Frame{Cmd: cmdHold})
		done <- err
	}()
	select {
	case <-h.held:
	case <-time.After(wait):
		t.Fatal("the request did not reach the hub")
	}
	require.NoError(t, alice.Close())
	assert.ErrorIs(t, <-done, client.ErrClosed)
	_, err := call(alice, &wshub.Frame{Cmd: cmdEcho})
	assert.ErrorIs(t, err, client.ErrClosed)
}

// An application command answered by its handler: the handler replies with
// a frame that carries the request's cid, and Call returns it.
func ExampleClient_Call() {
	const cmdQuote wshub.Cmd = 100
	errUnknownSymbol := &wshub.Error{Code: 404, Reason: "unknown symbol"}
	hub, err := wshub.New(wshub.Options{
		Authenticate: wshub.DevAuthenticate,
		Logger:       slog.New(slog.DiscardHandler),
		Dispatcher: wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
			if f.Cmd != cmdQuote {
				return wshub.ErrUnknownCommand
			}
			if f.Content != "ACME" {
				return errUnknownSymbol // an error frame with the request's cid
			}
			// The answer carries the request's cid.
			return n.Send(&wshub.Frame{Cmd: f.Cmd, CID: f.CID, Content: "ACME", Amount: "12.50"})
		}),
	})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(hub)
	defer srv.Close()
	defer hub.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), client.Options{Token: "alice"})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	quote, err := c.Call(ctx, &wshub.Frame{Cmd: cmdQuote, Content: "ACME"})
	if err != nil {
		panic(err)
	}
	fmt.Println(quote.Content, quote.Amount)

	_, err = c.Call(ctx, &wshub.Frame{Cmd: cmdQuote, Content: "NOPE"})
	var se *client.ServerError
	fmt.Println(errors.Is(err, errUnknownSymbol), errors.As(err, &se) && se.Code == 404)
	// Output:
	// ACME 12.50
	// true true
}
