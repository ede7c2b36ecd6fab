package jsclient_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
)

// heldCall is a request the hub did not answer yet, and its connection.
type heldCall struct {
	n *wshub.Node
	f *wshub.Frame
}

// callHub is a real hub whose Dispatcher answers application commands:
// 100 with "echo " + content (requests with memo "batch" are collected
// until batch of them came and answered in reverse order), 101 with an
// application error 409, 102 by closing the connection (1013), 103 not at
// all (handed to held). Anything else is 404.
type callHub struct {
	*hubtest.Server
	batch int
	drops atomic.Int32  // cmd 102 requests dispatched
	held  chan heldCall // cmd 103 requests

	mu      sync.Mutex
	waiting []heldCall // guarded by mu: batch requests not answered yet
}

func newCallHub(t *testing.T, batch int) *callHub {
	t.Helper()
	h := &callHub{batch: batch, held: make(chan heldCall, 8)}
	h.Server = hubtest.New(t, wshub.Options{
		CheckOrigin: func(*http.Request) bool { return true },
		Dispatcher:  wshub.DispatcherFunc(h.dispatch),
	})
	return h
}

func (h *callHub) dispatch(_ context.Context, n *wshub.Node, f *wshub.Frame) error {
	switch f.Cmd {
	case 100:
		if f.Memo != "batch" {
			return n.Send(&wshub.Frame{Cmd: f.Cmd, CID: f.CID, Content: "echo " + f.Content})
		}
		h.mu.Lock()
		h.waiting = append(h.waiting, heldCall{n, f})
		var all []heldCall
		if len(h.waiting) == h.batch {
			all, h.waiting = h.waiting, nil
		}
		h.mu.Unlock()
		for i := len(all) - 1; i >= 0; i-- {
			r := all[i]
			if err := r.n.Send(&wshub.Frame{Cmd: r.f.Cmd, CID: r.f.CID, Content: "echo " + r.f.Content}); err != nil {
				return err
			}
		}
		return nil
	case 101:
		return fmt.Errorf("%w: %s", &wshub.Error{Code: 409, Reason: "seat taken"}, f.Content)
	case 102:
		h.drops.Add(1)
		n.Close(1013, "dropped by the test")
		return nil
	case 103:
		h.held <- heldCall{n, f}
		return nil
	}
	return wshub.ErrUnknownCommand
}

// takeHeld returns the next cmd 103 request the hub got.
func (h *callHub) takeHeld(t *testing.T) heldCall {
	t.Helper()
	select {
	case r := <-h.held:
		return r
	case <-time.After(waitTimeout):
		t.Fatal("the request did not reach the hub")
		return heldCall{}
	}
}

// settle is a page expression that turns the promise p into {ok: value} or
// {err: {name, message, code, reason, hub, lost}}.
func settle(p string) string {
	return p + `.then((ok) => ({ok}), (e) => ({err: {name: e.name, message: e.message, code: e.code, reason: e.reason,
		hub: e instanceof M.HubError, lost: e instanceof M.ConnectionLostError}}))`
}

// settleIn evaluates settle(p) in the page.
func settleIn(t *testing.T, tab context.Context, p string) settled {
	t.Helper()
	var s settled
	eval(t, tab, settle(p), &s)
	return s
}

// settled is the decoded result of settle.
type settled struct {
	OK  *wshub.Frame `json:"ok"`
	Err *struct {
		Name    string `json:"name"`
		Message string `json:"message"`
		Code    int    `json:"code"`
		Reason  string `json:"reason"`
		Hub     bool   `json:"hub"`
		Lost    bool   `json:"lost"`
	} `json:"err"`
}

// requireNoAnswerAsMessage pushes a direct message to alice through the hub
// and waits for it: an answer to a call, queued on the connection before,
// would have come as a 'message' event first.
func requireNoAnswerAsMessage(t *testing.T, tab context.Context, h *callHub) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, err := h.Hub.SendToUser(ctx, "system", "alice", &wshub.Frame{Content: "marker"})
	require.NoError(t, err)
	waitFor(t, tab, `log.some((e) => e.t === 'message' && e.d.content === 'marker')`, `log`)
	var contents []string
	eval(t, tab, `log.filter((e) => e.t === 'message').map((e) => e.d.content)`, &contents)
	assert.Equal(t, []string{"marker"}, contents, "answers to calls were emitted as messages")
}

func TestClient_CallResolvesWithTheAnswer(t *testing.T) {
	const n = 10
	h := newCallHub(t, n)
	tab := newBrowser(t)
	srv := newPageServer(t, nil)
	open(t, tab, srv.URL)
	eval(t, tab, fmt.Sprintf(`window.c = track(new M.WSHubClient(%q, {token: 'alice'})), true`, h.URL), nil)
	waitFor(t, tab, `c.readyState === 'open'`, `log`)

	got := settleIn(t, tab, `c.call({cmd: 100, cid: 'mine', content: 'hi'})`)
	require.Nil(t, got.Err)
	require.NotNil(t, got.OK)
	assert.Equal(t, wshub.Cmd(100), got.OK.Cmd)
	assert.Equal(t, "echo hi", got.OK.Content)
	assert.NotEmpty(t, got.OK.CID)
	assert.NotEqual(t, "mine", got.OK.CID, "call uses a fresh cid of its own")

	// An application's error frame.
	got = settleIn(t, tab, `c.call({cmd: 101, content: '14C'})`)
	require.NotNil(t, got.Err)
	assert.True(t, got.Err.Hub, "a HubError")
	assert.Equal(t, 409, got.Err.Code)
	assert.Equal(t, "seat taken: 14C", got.Err.Reason)
	// No handler: 404.
	got = settleIn(t, tab, `c.call({cmd: 150})`)
	require.NotNil(t, got.Err)
	assert.Equal(t, 404, got.Err.Code)
	// Not an application command: refused before sending.
	got = settleIn(t, tab, `c.call({cmd: 10, dstid: 'bob'})`)
	require.NotNil(t, got.Err)
	assert.False(t, got.Err.Hub)
	assert.Contains(t, got.Err.Message, "application commands")

	// Concurrent calls, answered in reverse order, each get their own.
	var contents []string
	eval(t, tab, fmt.Sprintf(`Promise.all(Array.from({length: %d}, (_, i) =>
		c.call({cmd: 100, memo: 'batch', content: 'q' + i}).then((r) => r.content)))`, n), &contents)
	require.Len(t, contents, n)
	for i, s := range contents {
		assert.Equal(t, fmt.Sprint("echo q", i), s, "call %d got another call's answer", i)
	}

	requireNoAnswerAsMessage(t, tab, h)
	eval(t, tab, `c.close(), true`, nil)
}

// A call without an answer rejects after its timeout; the answer that comes
// later is dropped, not emitted as a message.
func TestClient_CallTimeoutDropsTheLateAnswer(t *testing.T) {
	h := newCallHub(t, 0)
	tab := newBrowser(t)
	srv := newPageServer(t, nil)
	open(t, tab, srv.URL)
	eval(t, tab, fmt.Sprintf(`window.c = track(new M.WSHubClient(%q, {token: 'alice'})), true`, h.URL), nil)
	waitFor(t, tab, `c.readyState === 'open'`, `log`)

	got := settleIn(t, tab, `c.call({cmd: 103}, {timeout: 300})`)
	require.NotNil(t, got.Err, "the call did not time out")
	assert.Equal(t, "TimeoutError", got.Err.Name)
	req := h.takeHeld(t)
	require.NoError(t, req.n.Send(&wshub.Frame{Cmd: req.f.Cmd, CID: req.f.CID, Content: "too late"}))
	requireNoAnswerAsMessage(t, tab, h)
	eval(t, tab, `c.close(), true`, nil)
}

// The socket closes after the request went out and before the answer: the
// call rejects with ConnectionLostError, and the request is not sent again
// after the reconnect. A call made while not connected waits for the
// connection.
func TestClient_CallFailsWhenTheSocketCloses(t *testing.T) {
	h := newCallHub(t, 0)
	tab := newBrowser(t)
	srv := newPageServer(t, nil)
	open(t, tab, srv.URL)
	eval(t, tab, fmt.Sprintf(`window.c = track(new M.WSHubClient(%q, {token: 'alice', connect: false,
		backoff: {base: 10, max: 50}})), window.early = c.call({cmd: 100, content: 'early'}), true`, h.URL), nil)
	eval(t, tab, `c.connect(), true`, nil)
	got := settleIn(t, tab, `window.early`)
	require.Nil(t, got.Err)
	assert.Equal(t, "echo early", got.OK.Content, "a call made before connecting is sent on connect")

	got = settleIn(t, tab, `c.call({cmd: 102})`)
	require.NotNil(t, got.Err, "the call did not fail")
	assert.True(t, got.Err.Lost, "a ConnectionLostError, got %+v", got.Err)
	waitFor(t, tab, `count('open') === 2 && c.readyState === 'open'`, `log`)
	got = settleIn(t, tab, `c.call({cmd: 100, content: 'again'})`)
	require.Nil(t, got.Err)
	assert.Equal(t, "echo again", got.OK.Content)
	assert.EqualValues(t, 1, h.drops.Load(), "the lost request was sent again after the reconnect")

	// close() rejects what is still waiting.
	eval(t, tab, `window.pending = c.call({cmd: 103}), true`, nil)
	h.takeHeld(t)
	eval(t, tab, `c.close(), true`, nil)
	got = settleIn(t, tab, `window.pending`)
	require.NotNil(t, got.Err)
	assert.True(t, got.Err.Lost, "the socket closed under the call: %+v", got.Err)
	got = settleIn(t, tab, `c.call({cmd: 100})`)
	require.NotNil(t, got.Err)
	assert.Equal(t, "ClosedError", got.Err.Name)
}
