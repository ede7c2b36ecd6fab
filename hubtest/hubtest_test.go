package hubtest_test

import (
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
)

// A user's test: a hub in two lines, users dialed in one each.
func TestHubtest_DirectMessage(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice, bob := srv.Dial(t, "alice"), srv.Dial(t, "bob", "ack=1")
	assert.Equal(t, "alice", alice.Welcome.UserID)

	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "c1", Content: "hi"})
	assert.Equal(t, "c1", alice.Expect(t, wshub.CmdReceipt).CID)
	m := bob.Expect(t, wshub.CmdSingle)
	assert.Equal(t, "hi", m.Content)
	bob.ExpectNothing(t)
}

func TestHubtest_BatchFramesAreSplit(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	bob := srv.Dial(t, "bob", "batch=1")
	for range 50 {
		_, err := srv.Hub.SendToUser(t.Context(), "alice", "bob", &wshub.Frame{Content: "x"})
		require.NoError(t, err)
	}
	for i := range 50 {
		m := bob.Expect(t, wshub.CmdSingle)
		require.Equal(t, uint64(i+1), m.Seq)
	}
}

func TestHubtest_ExpectCloseReportsTheCode(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	c := srv.Dial(t, "alice")
	require.NoError(t, c.WS.WriteMessage(websocket.BinaryMessage, []byte{0}))
	assert.Equal(t, websocket.CloseUnsupportedData, c.ExpectClose(t))
}
