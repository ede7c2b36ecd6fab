package wshub_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
)

// slowWait bounds the waits of the slow-consumer tests: generous, since
// they only prove that nothing stalls.
const slowWait = 30 * time.Second

// sendDirect sends a direct message over c and returns its receipt.
func sendDirect(t *testing.T, c *hubtest.Conn, to, content string) *wshub.Frame {
	t.Helper()
	cid := "c-" + content
	c.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: to, CID: cid, Content: content})
	r := c.Expect(t, wshub.CmdReceipt)
	require.Equal(t, cid, r.CID)
	return r
}

// expectMessages requires the frames queued for c to be the direct
// messages with these ids, in this order, and nothing else: it sends a ping
// and collects what comes before the pong. A new connection's pending
// queue is queued before its first frame is read.
func expectMessages(t *testing.T, c *hubtest.Conn, what string, ids ...string) {
	t.Helper()
	c.Send(t, &wshub.Frame{Cmd: wshub.CmdPing, CID: "probe"})
	got := []string{}
	for {
		f := c.Recv(t)
		if f.Cmd == wshub.CmdPong && f.CID == "probe" {
			break
		}
		require.Equal(t, wshub.CmdSingle, f.Cmd, "%s: unexpected frame %+v", what, f)
		got = append(got, f.ID)
	}
	require.Equal(t, append([]string{}, ids...), got, "%s", what)
}

// An ack (cmd 14) removes the acknowledged messages from the user's
// pending queue and nothing else: not the user's other messages, not
// another user's queue (even when that user's message id is acked).
func TestHub_AckRemovesOnlyTheAckedMessages(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice, carol := srv.Dial(t, "alice"), srv.Dial(t, "carol")
	a1 := sendDirect(t, alice, "bob", "a1").ID
	a2 := sendDirect(t, alice, "bob", "a2").ID
	c1 := sendDirect(t, carol, "bob", "c1").ID
	a3 := sendDirect(t, alice, "bob", "a3").ID
	d1 := sendDirect(t, alice, "dave", "d1").ID

	bob := srv.Dial(t, "bob", "ack=1")
	expectMessages(t, bob, "bob's queue", a1, a2, c1, a3)
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdAck, ID: a2})
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdAck, ID: d1}) // dave's, not bob's
	bob.ExpectNothing(t)                                 // the acks were handled
	bob.WS.Close()

	bob = srv.Dial(t, "bob", "ack=1")
	expectMessages(t, bob, "bob's queue after acking a2 (by id)", a1, c1, a3)
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdAck, IDs: []string{c1}})
	bob.ExpectNothing(t)
	bob.WS.Close()

	bob = srv.Dial(t, "bob", "ack=1")
	expectMessages(t, bob, "bob's queue after acking c1 (by ids)", a1, a3)
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdAck, IDs: []string{a3, a1}})
	bob.ExpectNothing(t)
	bob.WS.Close()

	bob = srv.Dial(t, "bob", "ack=1")
	expectMessages(t, bob, "bob's queue after acking the rest")

	dave := srv.Dial(t, "dave", "ack=1")
	expectMessages(t, dave, "dave's queue, one of whose ids bob acked", d1)
}

// drainUntilClose reads c until the hub closes it and returns the frames
// read and the close code; it fails the test on another error or when no
// close comes within slowWait.
func drainUntilClose(t *testing.T, c *hubtest.Conn) ([]*wshub.Frame, int) {
	t.Helper()
	var frames []*wshub.Frame
	deadline := time.Now().Add(slowWait)
	for {
		f, err := c.Next(time.Until(deadline))
		if err == nil {
			frames = append(frames, f)
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return frames, ce.Code
		}
		t.Fatalf("no close frame after %d frames: %v", len(frames), err)
	}
}

// A recipient that does not read while direct messages for it arrive over
// another WebSocket: once its send queue is full the hub closes it with
// 1013 and drops nothing silently. What it got before the close frame is
// a gapless prefix of what was sent, and the rest comes on its next
// connection, in order.
//
// Sends stop when the hub reports the overflow (its log), so the test does
// not depend on how much the socket buffers of this machine hold.
func TestHub_RecipientNotReadingIsClosedWith1013NotSkipped(t *testing.T) {
	logs := &logRecorder{}
	srv := hubtest.New(t, wshub.Options{SendQueue: 4, Logger: slog.New(logs)})
	bob := srv.Dial(t, "bob", "ack=1") // reads the welcome, then nothing until the overflow
	alice := srv.Dial(t, "alice")
	payload := strings.Repeat("p", 32<<10)

	var ids []string
	start := time.Now()
	for i := 0; !logs.has("send queue full", "bob"); i++ {
		require.Less(t, time.Since(start), slowWait, "bob's connection was never closed for its full send queue")
		alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Memo: fmt.Sprint(i), Content: payload})
		r := alice.Expect(t, wshub.CmdReceipt) // the sender is never held up
		ids = append(ids, r.ID)
	}
	t.Logf("bob's queue overflowed after %d messages in %v", len(ids), time.Since(start))

	frames, code := drainUntilClose(t, bob)
	assert.Equal(t, wshub.CloseTryAgainLater, code, "close code")
	require.Less(t, len(frames), len(ids), "bob got every message, yet was closed")
	for i, f := range frames {
		require.Equal(t, wshub.CmdSingle, f.Cmd)
		require.Equal(t, fmt.Sprint(i), f.Memo, "frame %d: a message was skipped", i)
		require.Equal(t, ids[i], f.ID)
	}

	bob = srv.Dial(t, "bob", "ack=1")
	for i, id := range ids {
		m := bob.Expect(t, wshub.CmdSingle)
		require.Equal(t, id, m.ID, "message %d after the reconnect", i)
	}
	bob.ExpectNothing(t)
}

// An application that sends to a connection faster than the client
// reads, through Node.Send: once the queue is full Send fails and the
// connection is closed with 1013. The client gets a gapless prefix of what
// Send accepted, then the close frame.
func TestNode_SendToFullQueueClosesWith1013(t *testing.T) {
	type result struct {
		accepted int
		err      error
	}
	done := make(chan result, 1)
	payload := strings.Repeat("q", 16<<10)
	srv := hubtest.New(t, wshub.Options{
		SendQueue: 4,
		Logger:    slog.New(slog.DiscardHandler),
		Dispatcher: wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
			start := time.Now()
			for i := 0; ; i++ {
				if err := n.Send(&wshub.Frame{Cmd: 101, Memo: fmt.Sprint(i), Content: payload}); err != nil {
					done <- result{i, err}
					return nil
				}
				if time.Since(start) > slowWait {
					done <- result{i, nil}
					return nil
				}
			}
		}),
	})
	c := srv.Dial(t, "alice") // reads nothing until the dispatcher is done
	c.Send(t, &wshub.Frame{Cmd: 100})
	var res result
	select {
	case res = <-done:
	case <-time.After(2 * slowWait):
		t.Fatal("the dispatcher never returned")
	}
	require.ErrorIs(t, res.err, wshub.ErrClosed, "Send went on accepting frames for %v after %d, with nobody reading", slowWait, res.accepted)

	frames, code := drainUntilClose(t, c)
	assert.Equal(t, wshub.CloseTryAgainLater, code, "close code")
	require.LessOrEqual(t, len(frames), res.accepted)
	for i, f := range frames {
		require.Equal(t, wshub.Cmd(101), f.Cmd)
		require.Equal(t, fmt.Sprint(i), f.Memo, "frame %d: a frame was skipped", i)
	}
}
