package wshub_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/store/memstore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestHub_WelcomeIsFirstFrame(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	c := srv.Dial(t, "alice")
	assert.Equal(t, "alice", c.Welcome.UserID)
	assert.NotEmpty(t, c.Welcome.ID)
	assert.InDelta(t, time.Now().UnixMilli(), c.Welcome.TS, 60_000)
}

func TestHub_PingPongAndHeart(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	c := srv.Dial(t, "alice")
	c.Send(t, &wshub.Frame{Cmd: wshub.CmdHeart})
	c.Send(t, &wshub.Frame{Cmd: wshub.CmdPing, Content: "ping"})
	f := c.Recv(t)
	assert.Equal(t, wshub.CmdPong, f.Cmd, "heart has no reply, ping gets pong next")
	assert.Equal(t, "pong", f.Content)
}

func TestHub_DirectMessageWithReceipt(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice, bob := srv.Dial(t, "alice"), srv.Dial(t, "bob")
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "c1", Content: "hi", Media: "1", Amount: "2.5", Memo: "m"})
	r := alice.Expect(t, wshub.CmdReceipt)
	assert.Equal(t, "c1", r.CID)
	assert.NotEmpty(t, r.ID)
	assert.Equal(t, uint64(1), r.Seq)
	assert.NotZero(t, r.TS)

	m := bob.Expect(t, wshub.CmdSingle)
	assert.Equal(t, r.ID, m.ID)
	assert.Equal(t, "alice", m.UserID)
	assert.Equal(t, "bob", m.DstID)
	assert.Equal(t, "hi", m.Content)
	assert.Equal(t, "1", m.Media.String())
	assert.Equal(t, "2.5", m.Amount.String())
	assert.Equal(t, "m", m.Memo)
	assert.Equal(t, uint64(1), m.Seq)
	assert.Equal(t, r.TS, m.TS)
	alice.ExpectNothing(t) // the sending connection gets the receipt, not the message
}

func TestHub_ForgedUserIDIgnored(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice, bob := srv.Dial(t, "alice"), srv.Dial(t, "bob")
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, UserID: "mallory", DstID: "bob", Content: "I am mallory"})
	m := bob.Expect(t, wshub.CmdSingle)
	assert.Equal(t, "alice", m.UserID)
}

func TestHub_NumericIDsAccepted(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	u7, u42 := srv.Dial(t, "7"), srv.Dial(t, "42")
	u7.SendRaw(t, `{"cmd":10,"userid":7,"dstid":42,"content":"number ids","media":1}`)
	m := u42.Expect(t, wshub.CmdSingle)
	assert.Equal(t, "7", m.UserID)
	assert.Equal(t, "42", m.DstID)
	assert.Equal(t, "number ids", m.Content)
	assert.Contains(t, rawNext(t, u7), `"dstid":"42"`, "ids are strings on output")
}

// rawNext reads the next frame's JSON text.
func rawNext(t *testing.T, c *hubtest.Conn) string {
	t.Helper()
	c.WS.SetReadDeadline(time.Now().Add(hubtest.Timeout))
	_, data, err := c.WS.ReadMessage()
	require.NoError(t, err)
	return string(data)
}

func TestHub_OfflineQueueDeliveredInOrderBeforeNewer(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice := srv.Dial(t, "alice")
	const queued = 200
	for i := range queued {
		alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: fmt.Sprint(i)})
		alice.Expect(t, wshub.CmdReceipt)
	}
	// Newer messages race with bob's connect; they must come after the queue.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := queued; i < queued+50; i++ {
			alice.WS.WriteJSON(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: fmt.Sprint(i)})
		}
	}()
	bob := srv.Dial(t, "bob")
	<-done
	for i := range queued + 50 {
		m := bob.Expect(t, wshub.CmdSingle)
		require.Equal(t, fmt.Sprint(i), m.Content)
		require.Equal(t, uint64(i+1), m.Seq)
	}
}

func TestHub_OfflineQueueLargerThanSendQueue(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{SendQueue: 16})
	for i := range 100 {
		_, err := srv.Hub.SendToUser(context.Background(), "alice", "bob", &wshub.Frame{Content: fmt.Sprint(i)})
		require.NoError(t, err)
	}
	bob := srv.Dial(t, "bob")
	for i := range 100 {
		require.Equal(t, fmt.Sprint(i), bob.Expect(t, wshub.CmdSingle).Content)
	}
}

func TestHub_RoomDeliveryToMembersOnly(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice, alice2 := srv.Dial(t, "alice"), srv.Dial(t, "alice")
	bob, carol := srv.Dial(t, "bob"), srv.Dial(t, "carol")
	for _, c := range []*hubtest.Conn{alice, bob} {
		c.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: "r1"})
		j := c.Expect(t, wshub.CmdJoin)
		assert.Equal(t, "r1", j.DstID)
		assert.NotEmpty(t, j.Epoch)
	}
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "r1", CID: "x", Content: "hello room"})
	r := alice.Expect(t, wshub.CmdReceipt)
	assert.Equal(t, "x", r.CID)
	for _, c := range []*hubtest.Conn{bob, alice2} {
		m := c.Expect(t, wshub.CmdRoom)
		assert.Equal(t, "hello room", m.Content)
		assert.Equal(t, "alice", m.UserID)
		assert.Equal(t, "r1", m.DstID)
		assert.Equal(t, r.ID, m.ID)
		assert.Equal(t, uint64(1), m.Seq)
	}
	alice.ExpectNothing(t)
	carol.ExpectNothing(t)
}

func TestHub_NonMemberRoomSendRejected(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice, carol := srv.Dial(t, "alice"), srv.Dial(t, "carol")
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: "r1"})
	alice.Expect(t, wshub.CmdJoin)
	carol.Send(t, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "r1", CID: "c9", Content: "let me in"})
	e := carol.Expect(t, wshub.CmdError)
	assert.Equal(t, 403, e.Code)
	assert.Equal(t, "c9", e.CID)
	carol.Send(t, &wshub.Frame{Cmd: wshub.CmdRoomHistory, DstID: "r1"})
	assert.Equal(t, 403, carol.Expect(t, wshub.CmdError).Code)
	alice.ExpectNothing(t)
}

func TestHub_LeaveStopsRoomMessages(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice, bob := srv.Dial(t, "alice"), srv.Dial(t, "bob")
	for _, c := range []*hubtest.Conn{alice, bob} {
		c.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: "r"})
		c.Expect(t, wshub.CmdJoin)
	}
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdLeave, DstID: "r"})
	bob.ExpectNothing(t) // leave has no reply; the pong shows it was handled
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "r", Content: "gone?"})
	alice.Expect(t, wshub.CmdReceipt)
	bob.ExpectNothing(t)
	members, err := srv.Hub.Members(context.Background(), "r")
	require.NoError(t, err)
	assert.Equal(t, []string{"alice"}, members)
}

func TestHub_MembershipOutlivesConnection(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice, bob := srv.Dial(t, "alice"), srv.Dial(t, "bob")
	for _, c := range []*hubtest.Conn{alice, bob} {
		c.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: "r"})
		c.Expect(t, wshub.CmdJoin)
	}
	bob.WS.Close()
	waitFor(t, func() bool { return !srv.Hub.IsOnline("bob") })
	bob = srv.Dial(t, "bob")
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdRoom, DstID: "r", Content: "still there?"})
	assert.Equal(t, "still there?", bob.Expect(t, wshub.CmdRoom).Content)
}

func TestHub_JoinWithSinceReplays(t *testing.T) {
	st := memstore.New(memstore.Options{HistoryLimit: 10})
	t.Cleanup(func() { st.Close() })
	srv := hubtest.New(t, wshub.Options{Store: st})
	ctx := context.Background()
	require.NoError(t, srv.Hub.Join(ctx, "alice", "r"))
	for i := 1; i <= 5; i++ {
		_, err := srv.Hub.SendToRoom(ctx, "alice", "r", &wshub.Frame{Content: fmt.Sprint(i)})
		require.NoError(t, err)
	}
	bob := srv.Dial(t, "bob")
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: "r"})
	j := bob.Expect(t, wshub.CmdJoin)
	assert.Equal(t, uint64(5), j.Seq)
	epoch := j.Epoch

	tests := []struct {
		name      string
		since     uint64
		epoch     string
		replayed  []string
		recovered bool
	}{
		{"since 2 replays 3..5", 2, epoch, []string{"3", "4", "5"}, true},
		{"up to date", 5, epoch, nil, true},
		{"since 0 with epoch replays all", 0, epoch, []string{"1", "2", "3", "4", "5"}, true},
		{"other epoch", 2, "stale-epoch", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bob.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: "r", Since: tt.since, Epoch: tt.epoch})
			var got []string
			for {
				f := bob.Recv(t)
				if f.Cmd == wshub.CmdJoin {
					require.NotNil(t, f.Recovered)
					assert.Equal(t, tt.recovered, *f.Recovered)
					assert.Equal(t, uint64(5), f.Seq)
					assert.Equal(t, epoch, f.Epoch)
					break
				}
				require.Equal(t, wshub.CmdRoom, f.Cmd)
				got = append(got, f.Content)
			}
			assert.Equal(t, tt.replayed, got)
		})
	}

	t.Run("history trimmed past since", func(t *testing.T) {
		for i := 6; i <= 20; i++ { // the store keeps 11..20
			_, err := srv.Hub.SendToRoom(ctx, "alice", "r", &wshub.Frame{Content: fmt.Sprint(i)})
			require.NoError(t, err)
			bob.Expect(t, wshub.CmdRoom)
		}
		bob.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: "r", Since: 3, Epoch: epoch})
		for {
			f := bob.Recv(t)
			if f.Cmd == wshub.CmdJoin {
				require.NotNil(t, f.Recovered)
				assert.False(t, *f.Recovered)
				break
			}
		}
	})
}

func TestHub_HistoryPaging(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	ctx := context.Background()
	for i := 1; i <= 25; i++ {
		from, to := "alice", "bob"
		if i%2 == 0 {
			from, to = to, from
		}
		_, err := srv.Hub.SendToUser(ctx, from, to, &wshub.Frame{Content: fmt.Sprint(i)})
		require.NoError(t, err)
	}
	alice := srv.Dial(t, "alice")
	for range 12 { // her pending share (even numbers), sent on connect
		alice.Expect(t, wshub.CmdSingle)
	}
	tests := []struct {
		name          string
		since, before uint64
		limit         int
		first, last   int
		more          bool
	}{
		{"newest page", 0, 0, 10, 16, 25, true},
		{"before 16", 0, 16, 10, 6, 15, true},
		{"before 6", 0, 6, 10, 1, 5, false},
		{"since 20", 20, 0, 10, 21, 25, false},
		{"since 5 limit 3", 5, 0, 3, 6, 8, true},
		{"window", 5, 9, 10, 6, 8, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alice.Send(t, &wshub.Frame{Cmd: wshub.CmdHistory, DstID: "bob", CID: "h", Since: tt.since, Before: tt.before, Limit: tt.limit})
			h := alice.Expect(t, wshub.CmdHistory)
			assert.Equal(t, "h", h.CID)
			assert.Equal(t, "bob", h.DstID)
			assert.NotEmpty(t, h.Epoch)
			assert.Equal(t, tt.more, h.More)
			require.Len(t, h.Items, tt.last-tt.first+1)
			for i, it := range h.Items {
				assert.Equal(t, uint64(tt.first+i), it.Seq)
				assert.Equal(t, fmt.Sprint(tt.first+i), it.Content)
				assert.Equal(t, wshub.CmdSingle, it.Cmd)
			}
		})
	}

	t.Run("room history for members", func(t *testing.T) {
		require.NoError(t, srv.Hub.Join(ctx, "alice", "r"))
		for i := 1; i <= 3; i++ {
			_, err := srv.Hub.SendToRoom(ctx, "bob", "r", &wshub.Frame{Content: fmt.Sprint(i)})
			require.NoError(t, err)
			alice.Expect(t, wshub.CmdRoom)
		}
		alice.Send(t, &wshub.Frame{Cmd: wshub.CmdRoomHistory, DstID: "r", Limit: 2})
		h := alice.Expect(t, wshub.CmdRoomHistory)
		require.Len(t, h.Items, 2)
		assert.Equal(t, "2", h.Items[0].Content)
		assert.Equal(t, "3", h.Items[1].Content)
		assert.True(t, h.More)
	})
}

func TestHub_AckModeRedeliversUntilAcked(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	ctx := context.Background()
	r1, err := srv.Hub.SendToUser(ctx, "alice", "bob", &wshub.Frame{Content: "one"})
	require.NoError(t, err)
	r2, err := srv.Hub.SendToUser(ctx, "alice", "bob", &wshub.Frame{Content: "two"})
	require.NoError(t, err)

	bob := srv.Dial(t, "bob", "ack=1")
	assert.Equal(t, r1.ID, bob.Expect(t, wshub.CmdSingle).ID)
	assert.Equal(t, r2.ID, bob.Expect(t, wshub.CmdSingle).ID)
	bob.WS.Close() // no ack

	bob = srv.Dial(t, "bob", "ack=1")
	assert.Equal(t, r1.ID, bob.Expect(t, wshub.CmdSingle).ID, "unacknowledged messages are sent again")
	assert.Equal(t, r2.ID, bob.Expect(t, wshub.CmdSingle).ID)
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdAck, ID: r1.ID})
	bob.ExpectNothing(t)
	bob.WS.Close()

	bob = srv.Dial(t, "bob", "ack=1")
	assert.Equal(t, r2.ID, bob.Expect(t, wshub.CmdSingle).ID, "acked message removed, the other stays")
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdAck, IDs: []string{r2.ID}})
	bob.ExpectNothing(t)
	bob.WS.Close()

	bob = srv.Dial(t, "bob", "ack=1")
	bob.ExpectNothing(t)
}

func TestHub_WithoutAckDeliveredOnceWritten(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	_, err := srv.Hub.SendToUser(context.Background(), "alice", "bob", &wshub.Frame{Content: "once"})
	require.NoError(t, err)
	bob := srv.Dial(t, "bob")
	assert.Equal(t, "once", bob.Expect(t, wshub.CmdSingle).Content)
	bob.ExpectNothing(t) // round trip: the write (and so its ack) is done
	waitFor(t, func() bool {
		p, err := srv.Hub.Store().Pending(context.Background(), "bob")
		return err == nil && len(p) == 0
	})
	bob.WS.Close()
	bob = srv.Dial(t, "bob")
	bob.ExpectNothing(t)
}

func TestHub_CIDDeduplicated(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice, bob := srv.Dial(t, "alice"), srv.Dial(t, "bob")
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "same", Content: "first"})
	r1 := alice.Expect(t, wshub.CmdReceipt)
	alice.WS.Close()
	alice = srv.Dial(t, "alice") // a resend after reconnect
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "same", Content: "first"})
	r2 := alice.Expect(t, wshub.CmdReceipt)
	assert.Equal(t, r1.ID, r2.ID)
	assert.Equal(t, r1.Seq, r2.Seq)
	assert.Equal(t, r1.TS, r2.TS)
	assert.Equal(t, "first", bob.Expect(t, wshub.CmdSingle).Content)
	bob.ExpectNothing(t)
}

func TestHub_MultiDevice(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice1, alice2 := srv.Dial(t, "alice"), srv.Dial(t, "alice")
	bob1, bob2 := srv.Dial(t, "bob"), srv.Dial(t, "bob")
	assert.Len(t, srv.Hub.Conns("bob"), 2)
	alice1.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "to all devices"})
	alice1.Expect(t, wshub.CmdReceipt)
	for _, c := range []*hubtest.Conn{bob1, bob2, alice2} {
		m := c.Expect(t, wshub.CmdSingle)
		assert.Equal(t, "to all devices", m.Content)
		assert.Equal(t, "alice", m.UserID)
		assert.Equal(t, "bob", m.DstID)
	}
	alice1.ExpectNothing(t)
}

func TestHub_OldestConnectionReplacedWith4000(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{MaxConnsPerUser: 2})
	c1 := srv.Dial(t, "alice")
	srv.Dial(t, "alice")
	srv.Dial(t, "alice")
	assert.Equal(t, wshub.CloseReplaced, c1.ExpectClose(t))
	waitFor(t, func() bool { return len(srv.Hub.Conns("alice")) == 2 })
}

func TestHub_HTTPRefusals(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	tests := []struct {
		name   string
		url    string
		header http.Header
		status int
	}{
		{"no token", srv.URL, nil, http.StatusUnauthorized},
		{"empty token", srv.URL + "?token=", nil, http.StatusUnauthorized},
		{"cross origin", srv.DialURL("alice"), http.Header{"Origin": {"http://evil.example"}}, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, resp, err := websocket.DefaultDialer.Dial(tt.url, tt.header)
			require.Error(t, err)
			require.NotNil(t, resp)
			assert.Equal(t, tt.status, resp.StatusCode)
		})
	}
	t.Run("token forms", func(t *testing.T) {
		for _, dial := range []struct {
			url    string
			header http.Header
		}{
			{srv.URL + "?authToken=bob", nil},
			{srv.URL, http.Header{"Authorization": {"Bearer bob"}}},
			{srv.DialURL("bob"), http.Header{"Origin": {strings.Replace(srv.HTTP.URL, "127.0.0.1", "127.0.0.1", 1)}}},
		} {
			ws, _, err := websocket.DefaultDialer.Dial(dial.url, dial.header)
			require.NoError(t, err)
			var f wshub.Frame
			require.NoError(t, ws.ReadJSON(&f))
			assert.Equal(t, "bob", f.UserID)
			ws.Close()
		}
	})
}

func TestHub_CloseCodes(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{ReadLimit: 1024})
	t.Run("binary frame gets 1003", func(t *testing.T) {
		c := srv.Dial(t, "alice")
		require.NoError(t, c.WS.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3}))
		assert.Equal(t, websocket.CloseUnsupportedData, c.ExpectClose(t))
	})
	t.Run("frame over read limit gets 1009", func(t *testing.T) {
		c := srv.Dial(t, "alice")
		big := `{"cmd":10,"dstid":"bob","content":"` + strings.Repeat("x", 2048) + `"}`
		require.NoError(t, c.WS.WriteMessage(websocket.TextMessage, []byte(big)))
		assert.Equal(t, websocket.CloseMessageTooBig, c.ExpectClose(t))
	})
}

func TestHub_ErrorFramesKeepConnection(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	c := srv.Dial(t, "alice")
	tests := []struct {
		name string
		raw  string
		code int
		cid  string
	}{
		{"malformed JSON", `{"cmd":10,`, 400, ""},
		{"not an object", `[1,2]`, 400, ""},
		{"no cmd", `{"dstid":"bob"}`, 400, ""},
		{"bad id type", `{"cmd":10,"dstid":{"a":1}}`, 400, ""},
		{"unknown command", `{"cmd":77,"cid":"u"}`, 404, "u"},
		{"unknown application command", `{"cmd":150,"cid":"a"}`, 404, "a"},
		{"missing dstid", `{"cmd":10,"cid":"d","content":"x"}`, 400, "d"},
		{"missing room", `{"cmd":11,"cid":"r"}`, 400, "r"},
		{"ack without ids", `{"cmd":14,"cid":"k"}`, 400, "k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.SendRaw(t, tt.raw)
			e := c.Expect(t, wshub.CmdError)
			assert.Equal(t, tt.code, e.Code)
			assert.Equal(t, tt.cid, e.CID)
			assert.NotEmpty(t, e.Reason)
		})
	}
	c.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "ok"})
	assert.Equal(t, "ok", c.Expect(t, wshub.CmdReceipt).CID, "the connection is still usable")
}

func TestHub_SlowConsumerClosedWith1013(t *testing.T) {
	// The hub logs when it drops a slow consumer: the test sends until
	// then, whatever the socket buffers of this machine hold.
	logs := &logRecorder{}
	srv := hubtest.New(t, wshub.Options{SendQueue: 8, Logger: slog.New(logs)})
	ctx := context.Background()
	// bob reads, but far slower than messages come: his queue fills.
	slow, _, err := websocket.DefaultDialer.Dial(srv.DialURL("bob", "ack=1"), nil)
	require.NoError(t, err)
	defer slow.Close()
	closeCode := make(chan int, 1)
	var dropped atomic.Bool // once set, bob reads at full speed
	go func() {
		for {
			slow.SetReadDeadline(time.Now().Add(60 * time.Second))
			if _, _, err := slow.ReadMessage(); err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					closeCode <- ce.Code
				} else {
					closeCode <- -1
				}
				return
			}
			if !dropped.Load() {
				time.Sleep(40 * time.Millisecond)
			}
		}
	}()
	carol := srv.Dial(t, "carol")
	waitFor(t, func() bool { return srv.Hub.IsOnline("bob") })

	payload := strings.Repeat("p", 32<<10)
	var ids []string
	start := time.Now()
	for i := 0; !logs.has("send queue full", "bob"); i++ {
		require.Less(t, time.Since(start), 60*time.Second, "bob was never dropped")
		r, err := srv.Hub.SendToUser(ctx, "alice", "bob", &wshub.Frame{Content: payload, Memo: fmt.Sprint(i)})
		require.NoError(t, err, "a slow consumer never blocks the sender")
		ids = append(ids, r.ID)
		// Others keep flowing meanwhile.
		_, err = srv.Hub.SendToUser(ctx, "alice", "carol", &wshub.Frame{Content: fmt.Sprint(i)})
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint(i), carol.Expect(t, wshub.CmdSingle).Content)
	}
	dropped.Store(true)
	t.Logf("bob dropped after %d messages in %v", len(ids), time.Since(start))

	select {
	case code := <-closeCode:
		assert.Equal(t, wshub.CloseTryAgainLater, code)
	case <-time.After(60 * time.Second):
		t.Fatal("bob's connection never closed")
	}

	// Reconnected, bob gets every message, in order, none lost.
	bob := srv.Dial(t, "bob", "ack=1")
	for i, id := range ids {
		m := bob.Expect(t, wshub.CmdSingle)
		require.Equal(t, id, m.ID, "message %d", i)
		require.Equal(t, fmt.Sprint(i), m.Memo)
	}
}

// logRecorder is a slog.Handler that keeps every record's message and
// attributes as one line.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	line := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	return nil
}

// has reports whether a record contains every one of parts.
func (l *logRecorder) has(parts ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, line := range l.lines {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		return true
	}
	return false
}

func TestHub_ShutdownClosesWith1001(t *testing.T) {
	h, err := wshub.New(wshub.Options{Authenticate: wshub.DevAuthenticate})
	require.NoError(t, err)
	hs := newHTTPServer(t, h)
	var conns []*websocket.Conn
	for i := range 5 {
		ws, _, err := websocket.DefaultDialer.Dial(hs+"?token=u"+fmt.Sprint(i), nil)
		require.NoError(t, err)
		defer ws.Close()
		conns = append(conns, ws)
	}
	waitFor(t, func() bool { return len(h.Users()) == 5 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The clients read, so they answer the close frame.
	var wg sync.WaitGroup
	codes := make([]int, len(conns))
	for i, ws := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						codes[i] = ce.Code
					}
					return
				}
			}
		}()
	}
	require.NoError(t, h.Shutdown(ctx))
	wg.Wait()
	for _, c := range codes {
		assert.Equal(t, websocket.CloseGoingAway, c)
	}
	assert.Empty(t, h.Users())
	assert.ErrorIs(t, h.Shutdown(ctx), wshub.ErrClosed)
	_, resp, err := websocket.DefaultDialer.Dial(hs+"?token=late", nil)
	require.Error(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}

func TestHub_NewRequiresAuthenticate(t *testing.T) {
	_, err := wshub.New(wshub.Options{})
	assert.ErrorIs(t, err, wshub.ErrNoAuthenticate)
}

func TestHub_ServerSideAPI(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	ctx := context.Background()
	bob := srv.Dial(t, "bob")
	assert.True(t, srv.Hub.IsOnline("bob"))
	assert.False(t, srv.Hub.IsOnline("alice"))
	assert.Equal(t, []string{"bob"}, srv.Hub.Users())

	r, err := srv.Hub.SendToUser(ctx, "system", "bob", &wshub.Frame{Content: "system notice", CID: "n1"})
	require.NoError(t, err)
	m := bob.Expect(t, wshub.CmdSingle)
	assert.Equal(t, r.ID, m.ID)
	assert.Equal(t, "system", m.UserID)

	require.NoError(t, srv.Hub.Join(ctx, "bob", "news"))
	_, err = srv.Hub.SendToRoom(ctx, "editor", "news", &wshub.Frame{Content: "headline"})
	require.NoError(t, err)
	assert.Equal(t, "headline", bob.Expect(t, wshub.CmdRoom).Content)
	require.NoError(t, srv.Hub.Leave(ctx, "bob", "news"))
	_, err = srv.Hub.SendToRoom(ctx, "editor", "news", &wshub.Frame{Content: "unseen"})
	require.NoError(t, err)
	bob.ExpectNothing(t)

	_, err = srv.Hub.SendToUser(ctx, "a", "", &wshub.Frame{})
	assert.ErrorIs(t, err, wshub.ErrMissingDst)
}

func TestHub_Hooks(t *testing.T) {
	var mu sync.Mutex
	var events []string
	record := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
	srv := hubtest.New(t, wshub.Options{
		Dispatcher: wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
			if f.Cmd != 100 {
				return wshub.ErrUnknownCommand
			}
			return n.Send(&wshub.Frame{Cmd: 101, CID: f.CID, Content: "echo:" + f.Content})
		}),
		Middleware: []wshub.Middleware{func(next wshub.Dispatcher) wshub.Dispatcher {
			return wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
				if f.Cmd == wshub.CmdSingle && strings.Contains(f.Content, "spam") {
					return &wshub.Error{Code: 451, Reason: "no spam"}
				}
				return next.Dispatch(ctx, n, f)
			})
		}},
		AuthorizeRoom: func(ctx context.Context, n *wshub.Node, cmd wshub.Cmd, room string) error {
			if strings.HasPrefix(room, "staff-") && n.UserID() != "boss" {
				return errors.New("staff only")
			}
			return nil
		},
		OnConnect:    func(n *wshub.Node) { record("connect " + n.UserID()) },
		OnDisconnect: func(n *wshub.Node, err error) { record("disconnect " + n.UserID()) },
	})
	c := srv.Dial(t, "alice")
	c.Send(t, &wshub.Frame{Cmd: 100, CID: "a", Content: "x"})
	f := c.Expect(t, 101)
	assert.Equal(t, "echo:x", f.Content)
	c.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "buy spam", CID: "s"})
	e := c.Expect(t, wshub.CmdError)
	assert.Equal(t, 451, e.Code)
	assert.Equal(t, "no spam", e.Reason)
	c.Send(t, &wshub.Frame{Cmd: wshub.CmdJoin, DstID: "staff-room", CID: "j"})
	e = c.Expect(t, wshub.CmdError)
	assert.Equal(t, 403, e.Code)
	assert.Equal(t, "j", e.CID)
	c.WS.Close()
	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) == 2
	})
	assert.Equal(t, []string{"connect alice", "disconnect alice"}, events)
}

func TestHub_ConcurrentRoomTraffic(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	ctx := context.Background()
	const members, perSender = 8, 50
	conns := make([]*hubtest.Conn, members)
	for i := range conns {
		user := fmt.Sprint("m", i)
		require.NoError(t, srv.Hub.Join(ctx, user, "busy"))
		conns[i] = srv.Dial(t, user)
	}
	var wg sync.WaitGroup
	for i := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perSender {
				srv.Hub.SendToRoom(ctx, fmt.Sprint("m", i), "busy", &wshub.Frame{Content: fmt.Sprint(i, "-", j)})
			}
		}()
	}
	wg.Wait()
	for _, c := range conns {
		var last uint64
		for range members * perSender {
			m := c.Expect(t, wshub.CmdRoom)
			require.Equal(t, last+1, m.Seq, "in seq order, none missing")
			last = m.Seq
		}
	}
}

// TestHub_RoomMemberNotReadingKeepsEverythingInOrder: a room member
// stops reading while messages far larger than its socket buffers come:
// the other member gets each at once, and the slow one, once it reads
// again, every message whole, in order, none lost (the writes the socket
// cut short resume where they stopped).
func TestHub_RoomMemberNotReadingKeepsEverythingInOrder(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{SendQueue: 1024})
	ctx := context.Background()
	for _, u := range []string{"slow", "fast"} {
		require.NoError(t, srv.Hub.Join(ctx, u, "big"))
	}
	slow, fast := srv.Dial(t, "slow"), srv.Dial(t, "fast")
	const count = 300 // of 16 KiB: 4.8 MB, past any loopback socket buffer
	pad := strings.Repeat("x", 16<<10)
	for i := range count {
		_, err := srv.Hub.SendToRoom(ctx, "pub", "big", &wshub.Frame{Content: fmt.Sprint(i, pad)})
		require.NoError(t, err)
		m := fast.Expect(t, wshub.CmdRoom)
		require.Equal(t, fmt.Sprint(i, pad), m.Content, "fast member, message %d", i)
	}
	for i := range count {
		m := slow.Expect(t, wshub.CmdRoom)
		require.Equal(t, uint64(i+1), m.Seq)
		require.Equal(t, fmt.Sprint(i, pad), m.Content, "slow member, message %d", i)
	}
	slow.ExpectNothing(t)
}

// TestHub_BigRoomConcurrentSendersInOrder: a room big enough that its
// messages are written by goroutines of their own, three senders at once:
// every member gets every message once, in seq order.
func TestHub_BigRoomConcurrentSendersInOrder(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{SendQueue: 512})
	ctx := context.Background()
	const members, senders, perSender = 130, 3, 40
	conns := make([]*hubtest.Conn, members)
	for i := range conns {
		user := fmt.Sprint("m", i)
		require.NoError(t, srv.Hub.Join(ctx, user, "hall"))
		conns[i] = srv.Dial(t, user, "batch="+fmt.Sprint(i%2))
	}
	pad := strings.Repeat("y", 1000)
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			for j := range perSender {
				_, err := srv.Hub.SendToRoom(ctx, fmt.Sprint("s", i), "hall", &wshub.Frame{Content: fmt.Sprint(i, "-", j, pad)})
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	for i, c := range conns {
		next := make([]int, senders)
		for k := range senders * perSender {
			m := c.Expect(t, wshub.CmdRoom)
			require.Equal(t, uint64(k+1), m.Seq, "member %d: in seq order, none missing", i)
			var s, j int
			_, err := fmt.Sscanf(m.Content, "%d-%d", &s, &j)
			require.NoError(t, err)
			require.Equal(t, next[s], j, "member %d: sender %d's messages in order", i, s)
			next[s]++
		}
		c.ExpectNothing(t)
	}
}

// waitFor polls cond until it holds, failing the test after hubtest.Timeout.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hubtest.Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newHTTPServer serves h on a loopback port and returns its ws:// URL.
func newHTTPServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return "ws://" + ln.Addr().String() + "/"
}

func TestHub_GarbageFramesAnsweredNeverFatal(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	c := srv.Dial(t, "mallory")
	other := srv.Dial(t, "victim")
	rnd := rand.New(rand.NewPCG(1, 2))
	shapes := []func() string{
		// Text messages are UTF-8 (others fail the connection: see the
		// conformance suite).
		func() string { return strings.ToValidUTF8(string(randBytes(rnd, rnd.IntN(200))), "\uFFFD") },
		func() string { return fmt.Sprintf(`{"cmd":%d,"dstid":%q}`, rnd.IntN(300)-20, randBytes(rnd, 5)) },
		func() string {
			return fmt.Sprintf(`{"cmd":%d,"since":%d,"limit":%d}`, 16+rnd.IntN(2), rnd.Int64(), rnd.IntN(1<<20)-1000)
		},
		func() string { return `{"cmd":14,"ids":[` + strings.Repeat(`"x",`, rnd.IntN(50)) + `"y"]}` },
		func() string { return `{"cmd":12,"dstid":"` + strings.Repeat("r", rnd.IntN(3000)) + `"}` },
		func() string {
			return `{"cmd":10,"dstid":"victim","content":` + strings.Repeat("[", rnd.IntN(2000)) + `}`
		},
	}
	for i := range 300 {
		raw := shapes[i%len(shapes)]()
		c.SendRaw(t, raw)
		// Every frame gets an answer or is silently valid; a ping
		// afterwards must still be answered.
		c.Send(t, &wshub.Frame{Cmd: wshub.CmdPing, CID: "probe"})
		for {
			f := c.Recv(t)
			if f.Cmd == wshub.CmdPong {
				break
			}
			if f.Cmd == wshub.CmdError {
				require.Less(t, f.Code, 500, "frame %q got an internal error: %+v", raw, f)
			}
		}
	}
	other.ExpectNothing(t)
	c.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "victim", CID: "last", Content: "still works"})
	assert.Equal(t, "last", c.Expect(t, wshub.CmdReceipt).CID)
}

func randBytes(rnd *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rnd.IntN(256))
	}
	return b
}

func TestHub_RateLimit(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{RateLimit: 5, RateBurst: 10})
	c := srv.Dial(t, "flood")
	polite := srv.Dial(t, "polite")
	for range 10 {
		c.Send(t, &wshub.Frame{Cmd: wshub.CmdPing})
	}
	for range 10 {
		c.Expect(t, wshub.CmdPong)
	}
	c.Send(t, &wshub.Frame{Cmd: wshub.CmdPing, CID: "over"})
	e := c.Expect(t, wshub.CmdError)
	assert.Equal(t, 429, e.Code)
	assert.Equal(t, "over", e.CID)
	// Going on over the limit ends the connection with 1008.
	for range 20 {
		if err := c.WS.WriteJSON(&wshub.Frame{Cmd: wshub.CmdPing}); err != nil {
			break
		}
	}
	assert.Equal(t, websocket.ClosePolicyViolation, c.ExpectClose(t))
	polite.ExpectNothing(t) // others are not affected
}

func TestHub_DispatcherPanicClosesOnlyThatConnection(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{
		Logger: slog.New(slog.DiscardHandler),
		Dispatcher: wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
			panic("a bug in application code")
		}),
	})
	c := srv.Dial(t, "alice")
	other := srv.Dial(t, "bob")
	c.Send(t, &wshub.Frame{Cmd: 100, CID: "p"})
	e := c.Expect(t, wshub.CmdError)
	assert.Equal(t, 500, e.Code)
	assert.Equal(t, "p", e.CID)
	assert.Equal(t, websocket.CloseInternalServerErr, c.ExpectClose(t))
	other.ExpectNothing(t)
	srv.Dial(t, "alice") // the hub goes on
}

func TestNode_CloseWritesQueuedFramesFirst(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{
		Dispatcher: wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
			for i := range 50 {
				n.Send(&wshub.Frame{Cmd: 101, Content: fmt.Sprint(i)})
			}
			n.Close(websocket.ClosePolicyViolation, "token expired")
			return nil
		}),
	})
	c := srv.Dial(t, "alice")
	c.Send(t, &wshub.Frame{Cmd: 100})
	for i := range 50 {
		require.Equal(t, fmt.Sprint(i), c.Expect(t, 101).Content)
	}
	assert.Equal(t, websocket.ClosePolicyViolation, c.ExpectClose(t))
}

func TestHub_ShutdownDuringConnectStorm(t *testing.T) {
	h, err := wshub.New(wshub.Options{Authenticate: wshub.DevAuthenticate, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	url := newHTTPServer(t, h)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws, _, err := websocket.DefaultDialer.Dial(fmt.Sprintf("%s?token=u%d", url, i), nil)
			if err != nil {
				return // refused once the hub closed: fine
			}
			defer ws.Close()
			ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			for { // answer the close handshake
				if _, _, err := ws.ReadMessage(); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Errorf("client u%d was never closed", i)
					}
					return
				}
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, h.Shutdown(ctx), "every connection, even one mid-connect, is closed")
	assert.Less(t, time.Since(start), 8*time.Second)
	wg.Wait()
}

func TestHub_OnConnectPanicClosesThatConnection(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{
		Logger: slog.New(slog.DiscardHandler),
		OnConnect: func(n *wshub.Node) {
			if n.UserID() == "bad" {
				panic("application bug")
			}
		},
	})
	ws, _, err := websocket.DefaultDialer.Dial(srv.DialURL("bad"), nil)
	require.NoError(t, err)
	defer ws.Close()
	ws.SetReadDeadline(time.Now().Add(hubtest.Timeout))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			var ne net.Error
			require.False(t, errors.As(err, &ne) && ne.Timeout(), "the connection was left open")
			break
		}
	}
	waitFor(t, func() bool { return !srv.Hub.IsOnline("bad") })
	srv.Dial(t, "good").ExpectNothing(t) // and Shutdown at cleanup does not hang
}
