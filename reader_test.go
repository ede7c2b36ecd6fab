package wshub_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
)

// clientFrame builds a masked client frame (RFC 6455 section 5.2).
func clientFrame(fin bool, op byte, payload []byte, masked bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	maskBit := byte(0)
	if masked {
		maskBit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, maskBit|byte(n))
	case n <= 0xFFFF:
		out = append(out, maskBit|126, byte(n>>8), byte(n))
	default:
		out = append(out, maskBit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !masked {
		return append(out, payload...)
	}
	key := []byte{1, 2, 3, 4}
	out = append(out, key...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}

// rawWrite writes the parts straight to a connection's socket (for a
// hubtest.Conn, c.WS.NetConn()), one write each.
func rawWrite(t testing.TB, w io.Writer, parts ...[]byte) {
	t.Helper()
	for _, p := range parts {
		_, err := w.Write(p)
		require.NoError(t, err)
	}
}

func TestReader_FragmentedMessageAndPings(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	c := srv.Dial(t, "alice")
	pong := make(chan string, 1)
	c.WS.SetPongHandler(func(s string) error { pong <- s; return nil })
	msg := []byte(`{"cmd":1,"cid":"frag","content":"ping"}`)
	// A text message in three fragments with a ping between them, the
	// whole written one byte at a time.
	var all []byte
	all = append(all, clientFrame(false, websocket.TextMessage, msg[:10], true)...)
	all = append(all, clientFrame(true, websocket.PingMessage, []byte("hi"), true)...)
	all = append(all, clientFrame(false, 0, msg[10:20], true)...)
	all = append(all, clientFrame(true, 0, msg[20:], true)...)
	for _, b := range all {
		rawWrite(t, c.WS.NetConn(), []byte{b})
	}
	f := c.Expect(t, wshub.CmdPong)
	assert.Equal(t, "pong", f.Content)
	select {
	case s := <-pong:
		assert.Equal(t, "hi", s)
	case <-time.After(hubtest.Timeout):
		t.Fatal("no pong for the client's ping")
	}
}

func TestReader_ProtocolErrorsClose1002(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{ReadLimit: 1024})
	tests := []struct {
		name  string
		bytes []byte
		code  int
	}{
		{"unmasked frame", clientFrame(true, websocket.TextMessage, []byte(`{"cmd":1}`), false), websocket.CloseProtocolError},
		{"reserved bits", append([]byte{0xC1}, clientFrame(true, websocket.TextMessage, []byte(`{}`), true)[1:]...), websocket.CloseProtocolError},
		{"unknown opcode", clientFrame(true, 3, []byte("x"), true), websocket.CloseProtocolError},
		{"fragmented control frame", clientFrame(false, websocket.PingMessage, []byte("x"), true), websocket.CloseProtocolError},
		{"continuation without a message", clientFrame(true, 0, []byte("x"), true), websocket.CloseProtocolError},
		{"one-byte close payload", clientFrame(true, websocket.CloseMessage, []byte{3}, true), websocket.CloseProtocolError},
		{"fragments over the read limit", append(clientFrame(false, websocket.TextMessage, make([]byte, 600), true), clientFrame(true, 0, make([]byte, 600), true)...), websocket.CloseMessageTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := srv.Dial(t, "mallory")
			rawWrite(t, c.WS.NetConn(), tt.bytes)
			assert.Equal(t, tt.code, c.ExpectClose(t))
		})
	}
	srv.Dial(t, "alice").ExpectNothing(t)
}

func TestReader_EmptyCloseFrameIsAnswered(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	c := srv.Dial(t, "alice")
	rawWrite(t, c.WS.NetConn(), clientFrame(true, websocket.CloseMessage, nil, true))
	c.WS.SetReadDeadline(time.Now().Add(hubtest.Timeout))
	_, _, err := c.WS.ReadMessage()
	var ce *websocket.CloseError
	require.True(t, errors.As(err, &ce), "want the close answered, got %v", err)
	waitFor(t, func() bool { return !srv.Hub.IsOnline("alice") })
}

func TestReader_SilentConnectionDropped(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{PingInterval: 50 * time.Millisecond, PongTimeout: 300 * time.Millisecond})
	// A client that completed the upgrade, then stopped answering
	// anything: it never reads, so it never answers pings.
	c := srv.Dial(t, "ghost")
	_ = c
	waitFor(t, func() bool { return !srv.Hub.IsOnline("ghost") })
	// A client that reads (gorilla answers pings) stays.
	alive := srv.Dial(t, "alive")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := alive.WS.ReadMessage(); err != nil {
				return
			}
		}
	}()
	time.Sleep(time.Second)
	assert.True(t, srv.Hub.IsOnline("alive"), "a connection answering pings is kept")
	alive.WS.Close()
	<-done
}

// Over TLS the hub cannot read the socket itself: a reader goroutine
// drives the same frame parser.
func TestReader_OverTLS(t *testing.T) {
	h, err := wshub.New(wshub.Options{Authenticate: wshub.DevAuthenticate})
	require.NoError(t, err)
	srv := httptest.NewTLSServer(h)
	t.Cleanup(func() {
		require.NoError(t, h.Shutdown(context.Background()))
		srv.Close()
	})
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	url := "wss" + strings.TrimPrefix(srv.URL, "https") + "/?token="
	dial := func(user string) *websocket.Conn {
		ws, _, err := d.Dial(url+user, nil)
		require.NoError(t, err)
		t.Cleanup(func() { ws.Close() })
		var f wshub.Frame
		require.NoError(t, ws.ReadJSON(&f))
		require.Equal(t, wshub.CmdWelcome, f.Cmd)
		return ws
	}
	alice, bob := dial("alice"), dial("bob")
	big := strings.Repeat("x", 20<<10) // several reads, fragmented by TLS records
	require.NoError(t, alice.WriteJSON(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "t", Content: big}))
	var f wshub.Frame
	require.NoError(t, alice.ReadJSON(&f))
	assert.Equal(t, wshub.CmdReceipt, f.Cmd)
	require.NoError(t, bob.ReadJSON(&f))
	assert.Equal(t, big, f.Content)
	// A room message: written by a flusher, since a TLS socket cannot
	// take the non-blocking write of an idle connection.
	require.NoError(t, h.Join(context.Background(), "bob", "tls-room"))
	_, err = h.SendToRoom(context.Background(), "alice", "tls-room", &wshub.Frame{Content: "over tls"})
	require.NoError(t, err)
	require.NoError(t, bob.ReadJSON(&f))
	assert.Equal(t, wshub.CmdRoom, f.Cmd)
	assert.Equal(t, "over tls", f.Content)
	require.NoError(t, bob.WriteMessage(websocket.BinaryMessage, []byte{1}))
	bob.SetReadDeadline(time.Now().Add(hubtest.Timeout))
	_, _, err = bob.ReadMessage()
	var ce *websocket.CloseError
	require.True(t, errors.As(err, &ce), "want a close frame, got %v", err)
	assert.Equal(t, websocket.CloseUnsupportedData, ce.Code)
}
