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

// Two example processes on one Redis act as one hub: a message sent on
// one reaches a user connected to the other, live and when queued.
func TestExample_TwoProcessesOnOneRedis(t *testing.T) {
	rs := redistest.Start(t)
	bin := buildExample(t)
	a := startExample(t, bin, "-addr", "127.0.0.1:0", "-store", "redis", "-redis", rs.Addr)
	b := startExample(t, bin, "-addr", "127.0.0.1:0", "-store", "redis", "-redis", rs.Addr)

	alice := dialReady(t, a.addr, "alice")
	bob := dialReady(t, b.addr, "bob")

	require.NoError(t, alice.WriteJSON(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "1", Content: "across processes"}))
	assert.Equal(t, wshub.CmdReceipt, readFrame(t, alice).Cmd)
	m := readFrame(t, bob)
	assert.Equal(t, "across processes", m.Content)
	assert.Equal(t, "alice", m.UserID)

	// A room with members on both processes.
	for _, c := range []*websocket.Conn{alice, bob} {
		require.NoError(t, c.WriteJSON(&wshub.Frame{Cmd: wshub.CmdJoin, DstID: "lobby"}))
		require.Equal(t, wshub.CmdJoin, readFrame(t, c).Cmd)
	}
	require.NoError(t, bob.WriteJSON(&wshub.Frame{Cmd: wshub.CmdRoom, DstID: "lobby", CID: "2", Content: "hi room"}))
	assert.Equal(t, wshub.CmdReceipt, readFrame(t, bob).Cmd)
	r := readFrame(t, alice)
	assert.Equal(t, wshub.CmdRoom, r.Cmd)
	assert.Equal(t, "hi room", r.Content)

	// Queued for an offline user on one process, delivered by the other.
	require.NoError(t, alice.WriteJSON(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "carol", CID: "3", Content: "while you were out"}))
	assert.Equal(t, wshub.CmdReceipt, readFrame(t, alice).Cmd)
	carol := dialReady(t, b.addr, "carol")
	assert.Equal(t, "while you were out", readFrame(t, carol).Content)
}

// dialReady connects user, retrying while the hub answers 503 (its store
// feed is not subscribed yet), and reads the welcome frame.
func dialReady(t *testing.T, addr, user string) *websocket.Conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ws, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?token="+user, nil)
		if err == nil {
			t.Cleanup(func() { ws.Close() })
			require.Equal(t, wshub.CmdWelcome, readFrame(t, ws).Cmd)
			return ws
		}
		require.True(t, resp != nil && resp.StatusCode == 503 && time.Now().Before(deadline), "dial %s: %v", user, err)
		time.Sleep(50 * time.Millisecond)
	}
}

func readFrame(t *testing.T, ws *websocket.Conn) *wshub.Frame {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var f wshub.Frame
	require.NoError(t, ws.ReadJSON(&f))
	return &f
}
