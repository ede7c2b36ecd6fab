package main_test

import (
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/internal/redistest"
)

// nextOfCmd reads frames until one with cmd comes, within 20 s.
func nextOfCmd(t *testing.T, ws *websocket.Conn, cmd wshub.Cmd) *wshub.Frame {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ws.SetReadDeadline(deadline)
		var f wshub.Frame
		require.NoError(t, ws.ReadJSON(&f), "waiting for cmd %d", cmd)
		if f.Cmd == cmd {
			return &f
		}
	}
}

// Presence across two example processes on one Redis, and a process
// killed with SIGKILL: its users are announced offline by the other once
// its presence lease ends, and only those with no connection elsewhere.
func TestExample_PresenceAcrossProcessesAndSIGKILL(t *testing.T) {
	rs := redistest.Start(t)
	bin := buildExample(t)
	const ttl = 2 * time.Second
	a := launch(t, bin, "-store", "redis", "-redis", rs.Addr, "-presence-ttl", ttl.String())
	b := launch(t, bin, "-store", "redis", "-redis", rs.Addr, "-presence-ttl", ttl.String())
	a.listening(t)
	b.listening(t)

	alice := dialReady(t, a.addr, "alice")
	require.NoError(t, alice.WriteJSON(&wshub.Frame{Cmd: wshub.CmdPresence, CID: "w", IDs: []string{"bob", "carol"}}))
	reply := nextOfCmd(t, alice, wshub.CmdPresence)
	require.Len(t, reply.Items, 2)
	assert.False(t, *reply.Items[0].Online)
	assert.False(t, *reply.Items[1].Online)

	// bob and carol connect to the other process: alice hears it.
	dialReady(t, b.addr, "bob")
	dialReady(t, b.addr, "carol")
	got := map[string]bool{}
	for len(got) < 2 {
		f := nextOfCmd(t, alice, wshub.CmdPresence)
		require.NotNil(t, f.Online)
		got[f.UserID] = *f.Online
	}
	assert.Equal(t, map[string]bool{"bob": true, "carol": true}, got)

	// carol is on both processes; bob only on b.
	dialReady(t, a.addr, "carol")

	killed := time.Now()
	require.NoError(t, b.cmd.Process.Kill()) // SIGKILL: b cannot say goodbye
	f := nextOfCmd(t, alice, wshub.CmdPresence)
	after := time.Since(killed)
	assert.Equal(t, "bob", f.UserID, "carol still has a connection on a")
	require.NotNil(t, f.Online)
	assert.False(t, *f.Online)
	t.Logf("bob announced offline %v after SIGKILL (lease %v)", after.Round(time.Millisecond), ttl)

	// A fresh watch agrees.
	require.NoError(t, alice.WriteJSON(&wshub.Frame{Cmd: wshub.CmdPresence, CID: "w2", IDs: []string{"bob", "carol"}}))
	reply = nextOfCmd(t, alice, wshub.CmdPresence)
	require.Len(t, reply.Items, 2)
	assert.Equal(t, "w2", reply.CID)
	assert.False(t, *reply.Items[0].Online, "bob")
	assert.True(t, *reply.Items[1].Online, "carol")
}
