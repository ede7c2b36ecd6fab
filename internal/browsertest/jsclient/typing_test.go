package jsclient_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
)

// Two clients in one page, alice and bob, against a real hub: typing
// reaches the peer as a 'typing' event (not a 'message'), in a room too;
// a non-member's room typing gets 403; typing while not connected is
// dropped, never queued in the outbox.
func TestClient_Typing(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{CheckOrigin: func(*http.Request) bool { return true }})
	require.NoError(t, srv.Hub.Join(context.Background(), "alice", "r"))
	require.NoError(t, srv.Hub.Join(context.Background(), "bob", "r"))
	tab := newBrowser(t)
	page := newPageServer(t, nil)
	open(t, tab, page.URL)
	eval(t, tab, fmt.Sprintf(`window.typings = [];
		window.a = new M.WSHubClient(%[1]q, {token: 'alice'});
		window.b = track(new M.WSHubClient(%[1]q, {token: 'bob'}));
		b.on('typing', (d) => typings.push(d)), true`, srv.URL), nil)
	waitFor(t, tab, `a.readyState === 'open' && b.readyState === 'open'`, `log`)

	var written bool
	eval(t, tab, `a.typing('bob')`, &written)
	assert.True(t, written)
	waitFor(t, tab, `typings.length === 1`, `typings`)
	eval(t, tab, `a.typing('r', {room: true})`, &written)
	assert.True(t, written)
	waitFor(t, tab, `typings.length === 2`, `typings`)

	type typing struct {
		UserID string `json:"userid"`
		DstID  string `json:"dstid"`
		Room   bool   `json:"room"`
	}
	var got []typing
	eval(t, tab, `typings`, &got)
	assert.Equal(t, []typing{{"alice", "bob", false}, {"alice", "r", true}}, got)

	// A typing frame is not a message: a marker message is bob's first.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, err := srv.Hub.SendToUser(ctx, "system", "bob", &wshub.Frame{Content: "marker"})
	require.NoError(t, err)
	waitFor(t, tab, `log.some((e) => e.t === 'message' && e.d.content === 'marker')`, `log`)
	var messages int
	eval(t, tab, `count('message')`, &messages)
	assert.Equal(t, 1, messages)

	// Not a member of room "s": an error event with 403.
	eval(t, tab, `b.typing('s', {room: true})`, &written)
	assert.True(t, written)
	waitFor(t, tab, `log.some((e) => e.t === 'error' && e.d.code === 403)`, `log`)

	// Not connected: dropped, not queued in the outbox, not sent on connect.
	eval(t, tab, fmt.Sprintf(`window.c = new M.WSHubClient(%q, {token: 'carol', connect: false}),
		c.typing('bob')`, srv.URL), &written)
	assert.False(t, written)
	var outbox int
	eval(t, tab, `c.outbox().length`, &outbox)
	assert.Zero(t, outbox)
	eval(t, tab, `c.connect(), true`, nil)
	waitFor(t, tab, `c.readyState === 'open'`, `log`)
	eval(t, tab, `c.send({cmd: 10, dstid: 'bob', content: 'after'}).then(() => true)`, nil)
	waitFor(t, tab, `log.some((e) => e.t === 'message' && e.d.content === 'after')`, `log`)
	eval(t, tab, `typings.length`, &outbox)
	assert.Equal(t, 2, outbox, "carol's typing from before she connected reached bob")

	eval(t, tab, `a.close(), b.close(), c.close(), true`, nil)
}
