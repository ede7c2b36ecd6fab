package wshub_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
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

// A client that leaves a frame incomplete, sending one more byte now and
// then, is closed with 1008 once FrameTimeout passed: it cannot hold the
// hub's memory for a partial message for longer.
func TestReader_SlowPartialFrameClosed(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{FrameTimeout: 400 * time.Millisecond})
	c := srv.Dial(t, "slowloris")
	frame := clientFrame(true, websocket.TextMessage, []byte(`{"cmd":1,"content":"`+strings.Repeat("x", 4000)+`"}`), true)
	rawWrite(t, c.WS.NetConn(), frame[:3000])
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a byte every 50 ms: the connection is never silent
		for i := 3000; i < len(frame)-1; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.WS.NetConn().Write(frame[i : i+1]); err != nil {
				return
			}
		}
	}()
	assert.Equal(t, websocket.ClosePolicyViolation, c.ExpectClose(t))
	waitFor(t, func() bool { return !srv.Hub.IsOnline("slowloris") })
}

// A message that arrives slowly but whole within FrameTimeout is handled,
// however it is cut, and the time counts per message.
func TestReader_SlowWholeMessagesAccepted(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{FrameTimeout: 2 * time.Second})
	c := srv.Dial(t, "patient")
	msg := []byte(`{"cmd":1,"cid":"slow","content":"` + strings.Repeat("y", 100) + `"}`)
	for range 3 { // 3 messages of 0.6 s each: longer than FrameTimeout in all
		frames := append(clientFrame(false, websocket.TextMessage, msg[:40], true), clientFrame(true, 0, msg[40:], true)...)
		for i := 0; i < len(frames); i += len(frames) / 6 {
			rawWrite(t, c.WS.NetConn(), frames[i:min(i+len(frames)/6, len(frames))])
			time.Sleep(100 * time.Millisecond)
		}
		assert.Equal(t, "slow", c.Expect(t, wshub.CmdPong).CID)
	}
}

// Liveness counts whole frames: bytes of a frame that never completes do
// not keep a connection alive past PongTimeout.
func TestReader_PartialFrameBytesAreNotLiveness(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{PingInterval: 50 * time.Millisecond, PongTimeout: 400 * time.Millisecond, FrameTimeout: time.Minute})
	c := srv.Dial(t, "dripper")
	frame := clientFrame(true, websocket.TextMessage, make([]byte, 60000), true)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; i < len(frame); i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := c.WS.NetConn().Write(frame[i : i+1]); err != nil {
				return
			}
		}
	}()
	waitFor(t, func() bool { return !srv.Hub.IsOnline("dripper") })
}

// The send queue is bounded in bytes as well as in frames: a connection
// that stopped reading is closed with 1013 once the big frames queued for
// it pass SendQueueBytes, long before SendQueue frames.
func TestHub_SendQueueBoundedInBytes(t *testing.T) {
	logs := &logRecorder{}
	srv := hubtest.New(t, wshub.Options{SendQueue: 1 << 20, SendQueueBytes: 256 << 10, WriteTimeout: time.Second, Logger: slog.New(logs)})
	c := srv.Dial(t, "sleeper") // never reads again
	_ = c
	big := strings.Repeat("b", 60<<10)
	sent := 0
	for !logs.has("send queue full", "sleeper") {
		// Far above what any socket buffers hold: a hub without the
		// byte bound never drops the connection within it.
		require.Less(t, sent, 200<<20, "the connection was never dropped")
		_, err := srv.Hub.SendToUser(context.Background(), "alice", "sleeper", &wshub.Frame{Content: big})
		require.NoError(t, err)
		sent += len(big)
	}
	t.Logf("dropped after %d MiB", sent>>20)
	waitFor(t, func() bool { return !srv.Hub.IsOnline("sleeper") })
	st := srv.Hub.Stats()
	assert.EqualValues(t, 1, st.QueueOverflows)
	assert.EqualValues(t, 1, st.CloseFrames[wshub.CloseTryAgainLater])
}

// OnDisconnect learns why the hub failed a connection: the close code it
// sent, as a *websocket.CloseError.
func TestReader_OnDisconnectGetsTheFailure(t *testing.T) {
	ended := make(chan error, 1)
	srv := hubtest.New(t, wshub.Options{OnDisconnect: func(n *wshub.Node, err error) { ended <- err }})
	c := srv.Dial(t, "mallory")
	rawWrite(t, c.WS.NetConn(), clientFrame(true, websocket.TextMessage, []byte("{\"cmd\":1,\"cid\":\"\xff\"}"), true))
	assert.Equal(t, websocket.CloseInvalidFramePayloadData, c.ExpectClose(t))
	select {
	case err := <-ended:
		var ce *websocket.CloseError
		require.True(t, errors.As(err, &ce), "OnDisconnect got %v", err)
		assert.Equal(t, websocket.CloseInvalidFramePayloadData, ce.Code)
	case <-time.After(hubtest.Timeout):
		t.Fatal("OnDisconnect was not called")
	}
}
