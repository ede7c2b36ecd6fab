package wshub_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
)

// fuzzReadLimit is the hub's ReadLimit in FuzzDispatchLive: a larger
// frame is closed with 1009.
const fuzzReadLimit = 64 << 10

// fuzzWait bounds each wait of FuzzDispatchLive: generous, it only proves
// that the hub does not hang.
const fuzzWait = 10 * time.Second

// liveConns are the connections FuzzDispatchLive keeps across inputs: the
// fuzzer's, replaced when the hub closed it, and a bystander's, which
// must only ever see what the fuzzer may send it.
type liveConns struct {
	srv    *hubtest.Server
	fuzzer *hubtest.Conn // nil after the hub closed it
	victim *hubtest.Conn
}

// dial connects user, reading its welcome frame.
func (l *liveConns) dial(tb testing.TB, user string) *hubtest.Conn {
	tb.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(l.srv.DialURL(user), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		tb.Fatalf("dial %s: %v (HTTP %d)", user, err, status)
	}
	c := &hubtest.Conn{WS: ws}
	w, err := c.Next(fuzzWait)
	if err != nil || w.Cmd != wshub.CmdWelcome {
		ws.Close()
		tb.Fatalf("welcome for %s: %+v, %v", user, w, err)
	}
	c.Welcome = w
	return c
}

// FuzzDispatchLive feeds arbitrary frames to the hub's dispatcher over a
// live WebSocket connection, each followed by a ping (cmd 1). The hub must
// answer the ping, or have closed the connection with the close code that
// the frame calls for (1007: not UTF-8; 1009: over the read limit); it
// never answers client input with an internal error (5xx other than 507,
// a full pending queue), never panics, never hangs. Another user's connection sees only what the fuzzing user
// may send it: direct messages to it, stamped with the fuzzing user. The
// hub (memory store) and the connections last for the whole fuzzing
// process; a closed connection is replaced.
func FuzzDispatchLive(f *testing.F) {
	srv := hubtest.New(f, wshub.Options{
		ReadLimit: fuzzReadLimit,
		Logger:    slog.New(slog.DiscardHandler),
		// The fuzzer redials after every close, thousands of times a
		// minute, from one address: the per-address bounds and the
		// message quota are tested in bounds_test.go, not here.
		UpgradeRate:   -1,
		MaxConnsPerIP: -1,
		MessageRate:   -1,
		MaxRecipients: -1,
		Dispatcher: wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, fr *wshub.Frame) error {
			if fr.Cmd != wshub.CmdApp {
				return wshub.ErrUnknownCommand
			}
			return n.Send(&wshub.Frame{Cmd: wshub.CmdApp + 1, CID: fr.CID, UserID: fr.UserID, Content: fr.Content, Data: fr.Data})
		}),
		AuthorizeRoom: func(ctx context.Context, n *wshub.Node, cmd wshub.Cmd, room string) error {
			if strings.HasPrefix(room, "private-") && n.UserID() != "victim" {
				return errors.New("private room")
			}
			return nil
		},
	})
	l := &liveConns{srv: srv}
	f.Cleanup(func() {
		for _, c := range []*hubtest.Conn{l.fuzzer, l.victim} {
			if c != nil {
				c.WS.Close()
			}
		}
	})
	if err := srv.Hub.Join(context.Background(), "victim", "private-v"); err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, frame []byte) {
		// A connection is kept for the next input only when this one
		// passes: after a failure, leftovers would be blamed on the next.
		c, v := l.fuzzer, l.victim
		l.fuzzer, l.victim = nil, nil
		if c == nil {
			c = l.dial(t, "fuzzer")
		}
		if v == nil {
			v = l.dial(t, "victim")
		}
		defer func() {
			if l.fuzzer != c {
				c.WS.Close()
			}
			if l.victim != v {
				v.WS.Close()
			}
		}()
		keep := true // the fuzzer's connection is still open
		// A write fails when the hub closed the connection meanwhile:
		// then the read below gets the close frame.
		_ = c.WS.SetWriteDeadline(time.Now().Add(fuzzWait))
		werr := c.WS.WriteMessage(websocket.TextMessage, frame)
		if werr == nil {
			werr = c.WS.WriteJSON(&wshub.Frame{Cmd: wshub.CmdPing, CID: "fuzz-probe"})
		}
		if ne, ok := werr.(interface{ Timeout() bool }); ok && ne.Timeout() {
			t.Fatalf("frame %q: the hub stopped reading: %v", frame, werr)
		}
		for {
			fr, err := c.Next(fuzzWait)
			if err != nil {
				keep = false
				var ce *websocket.CloseError
				if !errors.As(err, &ce) {
					t.Fatalf("frame %q: no answer to the ping within %v: %v", frame, fuzzWait, err)
				}
				switch {
				case ce.Code == websocket.CloseInvalidFramePayloadData && !utf8.Valid(frame):
				case ce.Code == websocket.CloseMessageTooBig && len(frame) > fuzzReadLimit:
				default:
					t.Fatalf("frame %q (%d bytes): connection closed with %d %q", frame, len(frame), ce.Code, ce.Text)
				}
				break
			}
			// 507 is an answer to input, not an internal error: the
			// fuzzer's messages to an offline user fill that user's
			// pending queue over a long run (SPEC §4).
			if fr.Cmd == wshub.CmdError && fr.Code >= 500 && fr.Code != wshub.ErrPendingFull.Code {
				t.Fatalf("frame %q: internal error answer %+v", frame, fr)
			}
			if fr.Cmd == wshub.CmdPong && fr.CID == "fuzz-probe" {
				break
			}
		}

		// Whatever the frame was, it was handled before the ping: all it
		// routed to the bystander is queued before the bystander's pong.
		_ = v.WS.SetWriteDeadline(time.Now().Add(fuzzWait))
		v.Send(t, &wshub.Frame{Cmd: wshub.CmdPing, CID: "victim-probe"})
		for {
			fr, err := v.Next(fuzzWait)
			if err != nil {
				t.Fatalf("frame %q: the bystander's connection failed: %v", frame, err)
			}
			if fr.Cmd == wshub.CmdPong && fr.CID == "victim-probe" {
				break
			}
			switch {
			case fr.UserID != "fuzzer":
				t.Fatalf("frame %q: the bystander got %+v, not from the fuzzing user", frame, fr)
			case fr.Cmd == wshub.CmdSingle && fr.DstID == "victim":
			case fr.Cmd == 19 || fr.Cmd == 22: // read marker, typing: live only, to the peer
			default:
				t.Fatalf("frame %q: the bystander got %+v", frame, fr)
			}
		}
		l.victim = v
		if keep {
			l.fuzzer = c
		}
	})
}
