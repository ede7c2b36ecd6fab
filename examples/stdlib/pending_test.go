package main_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
)

// TestExample_PendingFlags: -max-pending-per-sender and -max-pending reach
// the store: past them a message to an offline user gets error 507.
func TestExample_PendingFlags(t *testing.T) {
	e := startExample(t, buildExample(t), "-addr", "127.0.0.1:0", "-store", "mem",
		"-max-pending", "3", "-max-pending-per-sender", "2")
	send := func(from, to string, n int) []*wshub.Frame {
		t.Helper()
		ws := dial(t, e.addr, "/ws?token=", from)
		var out []*wshub.Frame
		for i := range n {
			cid := fmt.Sprintf("%s-%d", from, i)
			require.NoError(t, ws.WriteJSON(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: to, CID: cid, Content: cid}))
			require.NoError(t, ws.SetReadDeadline(time.Now().Add(10*time.Second)))
			var f wshub.Frame
			require.NoError(t, ws.ReadJSON(&f))
			require.Equal(t, cid, f.CID)
			out = append(out, &f)
		}
		return out
	}
	got := send("alice", "bob", 3)
	assert.Equal(t, wshub.CmdReceipt, got[0].Cmd)
	assert.Equal(t, wshub.CmdReceipt, got[1].Cmd)
	assert.Equal(t, 507, got[2].Code, "alice's third: -max-pending-per-sender 2")
	got = send("carol", "bob", 2)
	assert.Equal(t, wshub.CmdReceipt, got[0].Cmd)
	assert.Equal(t, 507, got[1].Code, "bob's fourth: -max-pending 3")
}
