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

// conv is one item of conversations().
type conv struct {
	DstID  string `json:"dstid"`
	Room   bool   `json:"room"`
	Seq    uint64 `json:"seq"`
	TS     int64  `json:"ts"`
	Read   uint64 `json:"read"`
	Seen   uint64 `json:"seen"`
	Unread uint64 `json:"unread"`
}

type convList struct {
	Items []conv `json:"items"`
	More  bool   `json:"more"`
}

// readEvent is the detail of a 'read' event.
type readEvent struct {
	UserID string `json:"userid"`
	DstID  string `json:"dstid"`
	Room   bool   `json:"room"`
	Seq    uint64 `json:"seq"`
}

// Three clients in one page, two of alice and bob, against a real hub:
// conversations() lists the same on both of alice's devices, with limit
// and more; markRead reaches alice's other device and bob as a 'read'
// event, never the reading client; a non-member's room read gets 403; a
// read made while not connected goes out on connect.
func TestClient_ConversationsAndMarkRead(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{CheckOrigin: func(*http.Request) bool { return true }})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, srv.Hub.Join(ctx, "alice", "lobby"))
	require.NoError(t, srv.Hub.Join(ctx, "alice", "empty"))
	for _, text := range []string{"one", "two"} {
		_, err := srv.Hub.SendToUser(ctx, "bob", "alice", &wshub.Frame{Content: text})
		require.NoError(t, err)
	}
	tab := newBrowser(t)
	page := newPageServer(t, nil)
	open(t, tab, page.URL)
	eval(t, tab, fmt.Sprintf(`window.reads = {a1: [], a2: [], a3: [], b: []};
		window.a1 = track(new M.WSHubClient(%[1]q, {token: 'alice'}));
		window.a2 = new M.WSHubClient(%[1]q, {token: 'alice'});
		window.b = new M.WSHubClient(%[1]q, {token: 'bob'});
		window.a3 = new M.WSHubClient(%[1]q, {token: 'alice', connect: false});
		for (const k of ['a1', 'a2', 'a3', 'b']) window[k].on('read', (d) => reads[k].push(d));
		true`, srv.URL), nil)
	waitFor(t, tab, `a1.readyState === 'open' && a2.readyState === 'open' && b.readyState === 'open'`, `log`)

	var first, second convList
	eval(t, tab, `a1.conversations()`, &first)
	eval(t, tab, `a2.conversations({limit: 100})`, &second)
	assert.Equal(t, first, second, "the same list on every device")
	assert.False(t, first.More)
	require.Len(t, first.Items, 3)
	assert.Positive(t, first.Items[0].TS)
	first.Items[0].TS = 0
	assert.Equal(t, []conv{
		{DstID: "bob", Seq: 2, Seen: 2, Unread: 2},
		{DstID: "empty", Room: true},
		{DstID: "lobby", Room: true},
	}, first.Items)
	var cut convList
	eval(t, tab, `a2.conversations({limit: 1})`, &cut)
	assert.True(t, cut.More)
	require.Len(t, cut.Items, 1)
	assert.Equal(t, "bob", cut.Items[0].DstID)

	// A read reaches alice's other device and bob, not the reader.
	var written bool
	eval(t, tab, `a1.markRead('bob', 2)`, &written)
	assert.True(t, written)
	waitFor(t, tab, `reads.a2.length === 1 && reads.b.length === 1`, `reads`)
	var got map[string][]readEvent
	eval(t, tab, `reads`, &got)
	want := readEvent{UserID: "alice", DstID: "bob", Seq: 2}
	assert.Equal(t, []readEvent{want}, got["a2"])
	assert.Equal(t, []readEvent{want}, got["b"])
	// A message bob sends after comes to a1 after any event the read made.
	eval(t, tab, `b.send({cmd: 10, dstid: 'alice', content: 'three'}).then(() => true)`, nil)
	waitFor(t, tab, `log.some((e) => e.t === 'message' && e.d.content === 'three')`, `log`)
	var n int
	eval(t, tab, `reads.a1.length`, &n)
	assert.Zero(t, n, "the reading client gets no event")
	var after convList
	eval(t, tab, `a2.conversations()`, &after)
	require.NotEmpty(t, after.Items)
	after.Items[0].TS = 0
	assert.Equal(t, conv{DstID: "bob", Seq: 3, Read: 2, Seen: 3, Unread: 1}, after.Items[0])

	// Not a member of room "nope": an error event with 403.
	eval(t, tab, `a1.markRead('nope', 1, {room: true})`, &written)
	assert.True(t, written)
	waitFor(t, tab, `log.some((e) => e.t === 'error' && e.d.code === 403)`, `log`)

	// Not connected: the highest seq goes out on connect.
	eval(t, tab, `[a3.markRead('bob', 1), a3.markRead('bob', 3), a3.markRead('bob', 2)].some(Boolean)`, &written)
	assert.False(t, written)
	eval(t, tab, `a3.connect(), true`, nil)
	waitFor(t, tab, `reads.a1.length === 1 && reads.a2.length === 2 && reads.b.length === 2`, `reads`)
	eval(t, tab, `reads`, &got)
	want.Seq = 3
	assert.Equal(t, []readEvent{want}, got["a1"])
	assert.Equal(t, want, got["b"][1])
	assert.Empty(t, got["a3"])

	eval(t, tab, `a1.close(), a2.close(), a3.close(), b.close(), true`, nil)
}
