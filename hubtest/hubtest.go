// Package hubtest starts a wshub hub in-process for tests and dials raw
// protocol connections to it:
//
//	srv := hubtest.New(t, wshub.Options{})
//	alice := srv.Dial(t, "alice")
//	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "hi"})
package hubtest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wshub/wshub"
)

// Timeout bounds every wait of the helpers: a frame that does not come
// within it fails the test instead of hanging it.
const Timeout = 5 * time.Second

// Server is a hub served by an httptest.Server at path /ws.
type Server struct {
	Hub  *wshub.Hub
	HTTP *httptest.Server
	// URL is the WebSocket URL of the hub: ws://127.0.0.1:PORT/ws.
	URL string
}

// New starts a hub with opts on an httptest.Server. Unset options get
// test-friendly defaults: wshub.DevAuthenticate (the token is the user id)
// and the memory store. Dial sends no Origin header, which the default
// same-origin policy allows. The hub is shut down, and the
// server closed, when the test ends.
func New(t testing.TB, opts wshub.Options) *Server {
	t.Helper()
	if opts.Authenticate == nil {
		opts.Authenticate = wshub.DevAuthenticate
	}
	h, err := wshub.New(opts)
	if err != nil {
		t.Fatalf("hubtest: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", h)
	hs := httptest.NewServer(mux)
	s := &Server{Hub: h, HTTP: hs, URL: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil && !errors.Is(err, wshub.ErrClosed) {
			t.Errorf("hubtest: shutdown: %v", err)
		}
		hs.Close()
	})
	return s
}

// DialURL returns the URL that connects user with the extra query
// parameters, e.g. "ack=1".
func (s *Server) DialURL(user string, query ...string) string {
	u := s.URL + "?token=" + url.QueryEscape(user)
	for _, q := range query {
		u += "&" + q
	}
	return u
}

// Dial connects as user (extra query parameters such as "ack=1" or
// "batch=1" may follow) and reads the welcome frame into Conn.Welcome. The
// connection is closed when the test ends.
func (s *Server) Dial(t testing.TB, user string, query ...string) *Conn {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(s.DialURL(user, query...), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("hubtest: dial %s: %v (HTTP %d)", user, err, status)
	}
	c := &Conn{WS: ws}
	t.Cleanup(func() { ws.Close() })
	c.Welcome = c.Recv(t)
	if c.Welcome.Cmd != wshub.CmdWelcome {
		t.Fatalf("hubtest: first frame for %s is cmd %d, want welcome", user, c.Welcome.Cmd)
	}
	return c
}

// Conn is a raw protocol connection to a hub.
type Conn struct {
	WS      *websocket.Conn
	Welcome *wshub.Frame // the cmd 20 frame the hub sent first
	batch   []*wshub.Frame
}

// Send writes f as one text frame.
func (c *Conn) Send(t testing.TB, f *wshub.Frame) {
	t.Helper()
	if err := c.WS.WriteJSON(f); err != nil {
		t.Fatalf("hubtest: send: %v", err)
	}
}

// SendRaw writes data as one text frame, unchecked.
func (c *Conn) SendRaw(t testing.TB, data string) {
	t.Helper()
	if err := c.WS.WriteMessage(websocket.TextMessage, []byte(data)); err != nil {
		t.Fatalf("hubtest: send: %v", err)
	}
}

// Recv returns the next frame, failing the test if none comes within
// Timeout. Frames that arrive several to a text frame (batch=1) are
// returned one by one.
func (c *Conn) Recv(t testing.TB) *wshub.Frame {
	t.Helper()
	f, err := c.Next(Timeout)
	if err != nil {
		t.Fatalf("hubtest: recv: %v", err)
	}
	return f
}

// Next returns the next frame or the error that ended the wait (a
// *websocket.CloseError when the hub closed the connection).
func (c *Conn) Next(timeout time.Duration) (*wshub.Frame, error) {
	if len(c.batch) > 0 {
		f := c.batch[0]
		c.batch = c.batch[1:]
		return f, nil
	}
	c.WS.SetReadDeadline(time.Now().Add(timeout))
	_, data, err := c.WS.ReadMessage()
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f, err := wshub.DecodeFrame([]byte(line))
		if err != nil {
			return nil, err
		}
		c.batch = append(c.batch, f)
	}
	return c.Next(timeout)
}

// Expect returns the next frame whose cmd is cmd, failing the test if a
// frame with another cmd comes first (pongs excepted) or none comes.
func (c *Conn) Expect(t testing.TB, cmd wshub.Cmd) *wshub.Frame {
	t.Helper()
	for {
		f := c.Recv(t)
		if f.Cmd == cmd {
			return f
		}
		if f.Cmd != wshub.CmdPong {
			t.Fatalf("hubtest: got cmd %d (%+v), want cmd %d", f.Cmd, f, cmd)
		}
	}
}

// ExpectClose reads until the hub closes the connection and returns the
// close code; it fails the test on a timeout or another error.
func (c *Conn) ExpectClose(t testing.TB) int {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for time.Now().Before(deadline) {
		_, err := c.Next(time.Until(deadline))
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		t.Fatalf("hubtest: want a close frame, got %v", err)
	}
	t.Fatalf("hubtest: no close within %v", Timeout)
	return 0
}

// ExpectNothing fails the test if any frame is queued for the
// connection: it sends a ping (cmd 1) and requires the pong to be the next
// frame. Everything the hub queued for the connection before it read the
// ping comes before the pong, so a message routed before the call was
// made shows up here.
func (c *Conn) ExpectNothing(t testing.TB) {
	t.Helper()
	c.Send(t, &wshub.Frame{Cmd: wshub.CmdPing})
	if f := c.Recv(t); f.Cmd != wshub.CmdPong {
		t.Fatalf("hubtest: unexpected frame %+v", f)
	}
}
