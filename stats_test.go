package wshub_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
)

func TestHub_StatsCountWhatHappened(t *testing.T) {
	logs := &logRecorder{}
	srv := hubtest.New(t, wshub.Options{Logger: slog.New(logs)})
	st := srv.Hub.Stats()
	assert.Zero(t, st.Connections)
	assert.Zero(t, st.MessagesStored)

	alice, bob := srv.Dial(t, "alice"), srv.Dial(t, "bob")
	require.NoError(t, srv.Hub.Join(context.Background(), "bob", "r"))
	require.NoError(t, srv.Hub.Join(context.Background(), "alice", "r"))
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "d1", Content: "hi"})
	alice.Expect(t, wshub.CmdReceipt)
	bob.Expect(t, wshub.CmdSingle)
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "d1", Content: "hi"}) // a resend: not stored again
	alice.Expect(t, wshub.CmdReceipt)
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "r", CID: "r1", Content: "all"})
	alice.Expect(t, wshub.CmdReceipt)
	bob.Expect(t, wshub.CmdRoom)
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle}) // no dstid: error 400
	assert.Equal(t, 400, alice.Expect(t, wshub.CmdError).Code)

	// A refused upgrade is counted, and logged with its reason.
	_, resp, err := websocket.DefaultDialer.Dial(srv.DialURL(""), nil)
	require.Error(t, err)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	// Bad input: the hub sends 1007.
	rawWrite(t, bob.WS.NetConn(), clientFrame(true, websocket.TextMessage, []byte("\xff"), true))
	assert.Equal(t, websocket.CloseInvalidFramePayloadData, bob.ExpectClose(t))
	waitFor(t, func() bool { return srv.Hub.Stats().Connections == 1 })

	st = srv.Hub.Stats()
	assert.EqualValues(t, 1, st.Connections)
	assert.EqualValues(t, 2, st.ConnectionsTotal)
	assert.EqualValues(t, 2, st.MessagesStored, "the direct message and the room message; the resend is not stored")
	assert.EqualValues(t, 2, st.Deliveries, "one to bob for each")
	assert.Equal(t, map[int]uint64{400: 1}, st.ErrorFrames)
	assert.Equal(t, map[int]uint64{401: 1}, st.Refused)
	assert.Equal(t, map[int]uint64{1007: 1}, st.CloseFrames)
	assert.EqualValues(t, 3, st.StoreAppend.Count, "every Append is timed, the resend's too")
	assert.Len(t, st.StoreAppend.Counts, len(st.StoreAppend.Bounds))
	assert.LessOrEqual(t, st.StoreAppend.Counts[len(st.StoreAppend.Counts)-1], st.StoreAppend.Count)
	assert.True(t, logs.has("upgrade refused", "status=401", "unauthorized"), "refusals are logged with their reason")
}

// An Authenticate that says its backend is down gets the client a 503 with
// Retry-After (try again), not a 401 (give up).
func TestHub_AuthUnavailableIs503(t *testing.T) {
	var up atomic.Bool
	srv := hubtest.New(t, wshub.Options{Authenticate: func(r *http.Request) (string, error) {
		if !up.Load() {
			return "", fmt.Errorf("auth backend: %w", wshub.ErrAuthUnavailable)
		}
		return wshub.DevAuthenticate(r)
	}})
	_, resp, err := websocket.DefaultDialer.Dial(srv.DialURL("alice"), nil)
	require.Error(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.Equal(t, map[int]uint64{503: 1}, srv.Hub.Stats().Refused)
	up.Store(true)
	srv.Dial(t, "alice")
}
