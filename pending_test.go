package wshub_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/boltstore"
	"github.com/wshub/wshub/store/memstore"
)

// The bounds of the pending queues in these tests: small, so that a flood
// is a few dozen frames.
const (
	testMaxPending   = 50
	testMaxPerSender = 10
)

// pendingStores are the stores the pending-queue tests run on, each opened
// with the test bounds and closed after the hub shut down. (Redis, in a
// module of its own: store/redisstore's hub_pending_test.go, and
// storetest.RunPendingBounds there.)
var pendingStores = []struct {
	name string
	open func(t *testing.T) store.Store
}{
	{"mem", func(*testing.T) store.Store {
		return memstore.New(memstore.Options{MaxPending: testMaxPending, MaxPendingPerSender: testMaxPerSender})
	}},
	{"bolt", func(t *testing.T) store.Store {
		st, err := boltstore.Open(filepath.Join(t.TempDir(), "hub.db"),
			boltstore.Options{MaxPending: testMaxPending, MaxPendingPerSender: testMaxPerSender})
		require.NoError(t, err)
		return st
	}},
}

// pendingHub starts a hub on a store of pendingStores and waits until it
// accepts connections (a hub on Redis answers 503 until its feed is
// subscribed).
func pendingHub(t *testing.T, open func(t *testing.T) store.Store) *hubtest.Server {
	t.Helper()
	st := open(t)
	t.Cleanup(func() { assert.NoError(t, st.Close()) }) // after the hub's Shutdown
	// Refusals are answered with 507, which the hub logs as an error.
	srv := hubtest.New(t, wshub.Options{Store: st, Logger: slog.New(slog.DiscardHandler)})
	waitFor(t, func() bool {
		resp, err := http.Get(srv.HTTP.URL + "/ws")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode != http.StatusServiceUnavailable
	})
	return srv
}

// sendBurst sends n direct messages to dst, with cids prefix-1 ... prefix-n,
// all at once, then reads their answers: each is the receipt or an error
// frame, carrying the frame's cid, in the order sent. It returns them by
// cid order.
func sendBurst(t *testing.T, c *hubtest.Conn, dst, prefix string, n int) []*wshub.Frame {
	t.Helper()
	for i := 1; i <= n; i++ {
		cid := fmt.Sprintf("%s-%d", prefix, i)
		c.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: dst, CID: cid, Content: cid})
	}
	out := make([]*wshub.Frame, 0, n)
	for i := 1; i <= n; i++ {
		f := c.Recv(t)
		require.Contains(t, []wshub.Cmd{wshub.CmdReceipt, wshub.CmdError}, f.Cmd, "answer %d: %+v", i, f)
		require.Equal(t, fmt.Sprintf("%s-%d", prefix, i), f.CID, "answers come in order")
		out = append(out, f)
	}
	return out
}

// TestHub_PendingFloodDoesNotEraseReceiptedMessages is the case of issue
// 10 over real WebSockets, on every store: alice's receipted messages to
// an offline bob survive mallory's flood; mallory gets her share
// receipted and error 507 for the rest; bob receives alice's messages
// first, all of them, in order, then mallory's share, and nothing of the
// refused ones, which are not in the history either.
func TestHub_PendingFloodDoesNotEraseReceiptedMessages(t *testing.T) {
	for _, ps := range pendingStores {
		t.Run(ps.name, func(t *testing.T) {
			srv := pendingHub(t, ps.open)
			alice := srv.Dial(t, "alice")
			var want []string // ids of the receipted messages, in the order bob gets them
			for _, f := range sendBurst(t, alice, "bob", "a", 5) {
				require.Equal(t, wshub.CmdReceipt, f.Cmd, "alice's %s", f.CID)
				want = append(want, f.ID)
			}

			mallory := srv.Dial(t, "mallory")
			const flood = 3 * testMaxPending
			answers := sendBurst(t, mallory, "bob", "m", flood)
			for i, f := range answers {
				if i < testMaxPerSender {
					require.Equal(t, wshub.CmdReceipt, f.Cmd, "mallory's %s, within her share: %+v", f.CID, f)
					want = append(want, f.ID)
					continue
				}
				require.Equal(t, wshub.CmdError, f.Cmd, "mallory's %s, past her share: %+v", f.CID, f)
				assert.Equal(t, 507, f.Code, "mallory's %s", f.CID)
				assert.Equal(t, wshub.ErrPendingFull.Reason, f.Reason)
				assert.Empty(t, f.ID, "no message id for a refused frame")
			}
			// A resend of a stored cid still gets its first receipt.
			mallory.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "m-1", Content: "m-1"})
			r := mallory.Expect(t, wshub.CmdReceipt)
			assert.Equal(t, answers[0].ID, r.ID)
			assert.Equal(t, answers[0].Seq, r.Seq)
			// Nothing of the refused frames is in the history.
			mallory.Send(t, &wshub.Frame{Cmd: wshub.CmdHistory, DstID: "bob", Limit: flood})
			h := mallory.Expect(t, wshub.CmdHistory)
			assert.Len(t, h.Items, testMaxPerSender)
			assert.Equal(t, uint64(testMaxPerSender), h.Seq, "refused frames took no seq")
			mallory.ExpectNothing(t)

			bob := srv.Dial(t, "bob", "ack=1")
			var got []string
			for range want {
				m := bob.Expect(t, wshub.CmdSingle)
				got = append(got, m.ID)
			}
			assert.Equal(t, want, got, "alice's 5, then mallory's share")
			bob.ExpectNothing(t)
		})
	}
}

// TestHub_PendingRoomComesBackWithDelivery: a sender refused with 507 can
// send again once the recipient took delivery: on a connection with ack=1
// only by cmd 14, on one without once the messages were written.
func TestHub_PendingRoomComesBackWithDelivery(t *testing.T) {
	for _, ps := range pendingStores {
		t.Run(ps.name, func(t *testing.T) {
			srv := pendingHub(t, ps.open)
			mallory := srv.Dial(t, "mallory")
			answers := sendBurst(t, mallory, "bob", "m", testMaxPerSender+1)
			require.Equal(t, wshub.CmdError, answers[testMaxPerSender].Cmd)
			require.Equal(t, 507, answers[testMaxPerSender].Code)

			bob := srv.Dial(t, "bob", "ack=1")
			var ids []string
			for range testMaxPerSender {
				ids = append(ids, bob.Expect(t, wshub.CmdSingle).ID)
			}
			bob.ExpectNothing(t)
			answer := sendBurst(t, mallory, "bob", "delivered-not-acked", 1)[0]
			assert.Equal(t, 507, answer.Code, "with ack=1, written is not delivered")

			bob.Send(t, &wshub.Frame{Cmd: wshub.CmdAck, IDs: ids[:2]})
			bob.ExpectNothing(t) // the ack was handled
			answers = sendBurst(t, mallory, "bob", "after-ack", 3)
			assert.Equal(t, []wshub.Cmd{wshub.CmdReceipt, wshub.CmdReceipt, wshub.CmdError}, cmdsOf(answers), "an ack of 2 makes room for 2")
			assert.Equal(t, 507, answers[2].Code)
			bob.WS.Close()

			// Without ack=1 the pending queue is delivered once written.
			bob = srv.Dial(t, "bob")
			for range testMaxPerSender {
				bob.Expect(t, wshub.CmdSingle)
			}
			bob.ExpectNothing(t)
			waitFor(t, func() bool {
				q, err := srv.Hub.Store().Pending(context.Background(), "bob")
				return err == nil && len(q) == 0
			})
			answers = sendBurst(t, mallory, "bob", "after-write", testMaxPerSender)
			for _, f := range answers {
				assert.Equal(t, wshub.CmdReceipt, f.Cmd, "%+v", f)
			}
		})
	}
}

func cmdsOf(fs []*wshub.Frame) []wshub.Cmd {
	out := make([]wshub.Cmd, len(fs))
	for i, f := range fs {
		out[i] = f.Cmd
	}
	return out
}

// TestHub_SendToUserPendingFull: the server-side API reports a refusal
// as ErrPendingFull (and the store's error under it), without a receipt.
func TestHub_SendToUserPendingFull(t *testing.T) {
	srv := pendingHub(t, pendingStores[0].open)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range testMaxPerSender {
		_, err := srv.Hub.SendToUser(ctx, "system", "bob", &wshub.Frame{Content: fmt.Sprint(i)})
		require.NoError(t, err)
	}
	r, err := srv.Hub.SendToUser(ctx, "system", "bob", &wshub.Frame{Content: "one too many"})
	require.ErrorIs(t, err, wshub.ErrPendingFull)
	assert.ErrorIs(t, err, store.ErrPendingFull)
	assert.Nil(t, r)
	_, err = srv.Hub.SendToUser(ctx, "other", "bob", &wshub.Frame{Content: "another sender"})
	assert.NoError(t, err, "the bound is per sender")
}

// gatedPending is a memory store whose Pending, once armed, waits until
// open is closed, after saying so on entered: it holds a connection in
// its pending sync, registered and with its live frames held back.
type gatedPending struct {
	*memstore.Store
	armed         atomic.Bool
	entered, open chan struct{}
	enteredOnce   sync.Once
}

// gate holds an armed read of a pending queue until open is closed.
func (s *gatedPending) gate() {
	if s.armed.Load() {
		s.enteredOnce.Do(func() { close(s.entered) })
		<-s.open
	}
}

func (s *gatedPending) Pending(ctx context.Context, user string) ([]store.Message, error) {
	s.gate()
	return s.Store.Pending(ctx, user)
}

// PendingPage gates the first page of a walk: the hub reads a memstore's
// queue in pages.
func (s *gatedPending) PendingPage(ctx context.Context, user, cursor string, limit int) ([]store.Message, string, error) {
	if cursor == "" {
		s.gate()
	}
	return s.Store.PendingPage(ctx, user, cursor, limit)
}

// A connection syncing its pending queue holds its live frames back, then
// skips those its pending queue covered. A copy of the user's own message,
// sent from another device meanwhile, is never in the pending queue: it is
// not covered, whatever the seq of the messages that were.
func TestHub_OwnCopyHeldDuringThePendingSyncIsDelivered(t *testing.T) {
	st := &gatedPending{Store: memstore.New(memstore.Options{}), entered: make(chan struct{}), open: make(chan struct{})}
	// Dial returns at the welcome, before the pending sync: arm the gate
	// only once the first two connections are past theirs.
	synced := make(chan struct{}, 2)
	srv := hubtest.New(t, wshub.Options{Store: st, OnConnect: func(*wshub.Node) {
		select {
		case synced <- struct{}{}:
		default: // bob's second connection
		}
	}})
	alice := srv.Dial(t, "alice")
	bob1 := srv.Dial(t, "bob", "ack=1")
	for range 2 {
		select {
		case <-synced:
		case <-time.After(hubtest.Timeout):
			t.Fatal("the first two connections did not finish their pending sync")
		}
	}
	st.armed.Store(true)
	done := make(chan *hubtest.Conn)
	go func() {
		// Dial reads the welcome, which is sent before the pending sync.
		bob2, _, err := websocket.DefaultDialer.Dial(srv.DialURL("bob", "ack=1"), nil)
		if err != nil {
			close(done)
			return
		}
		t.Cleanup(func() { bob2.Close() })
		done <- &hubtest.Conn{WS: bob2}
	}()
	select {
	case <-st.entered:
	case <-time.After(hubtest.Timeout):
		t.Fatal("bob's second connection did not start its pending sync")
	}
	// bob's own message (seq 1), copied to his syncing connection, then
	// alice's to bob (seq 2), which his pending queue will hold.
	bob1.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "alice", CID: "b1", Content: "mine"})
	require.Equal(t, uint64(1), bob1.Expect(t, wshub.CmdReceipt).Seq)
	alice.Expect(t, wshub.CmdSingle)
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "a1", Content: "yours"})
	require.Equal(t, uint64(2), alice.Expect(t, wshub.CmdReceipt).Seq)
	bob1.Expect(t, wshub.CmdSingle) // unacked: still pending
	close(st.open)

	bob2 := <-done
	require.NotNil(t, bob2, "bob's second connection")
	require.Equal(t, wshub.CmdWelcome, bob2.Recv(t).Cmd)
	got := map[string]uint64{}
	for range 2 {
		f := bob2.Expect(t, wshub.CmdSingle)
		got[f.Content] = f.Seq
	}
	assert.Equal(t, map[string]uint64{"yours": 2, "mine": 1}, got)
	bob2.ExpectNothing(t)
}

// pagesCounter is a store that counts how the hub reads pending queues:
// by pages (store.PendingPager) or whole (Pending).
type pagesCounter struct {
	store.Store
	pager        store.PendingPager
	pages, whole atomic.Int32
	maxLimit     atomic.Int32
}

func (c *pagesCounter) PendingPage(ctx context.Context, user, cursor string, limit int) ([]store.Message, string, error) {
	c.pages.Add(1)
	if int32(limit) > c.maxLimit.Load() {
		c.maxLimit.Store(int32(limit))
	}
	return c.pager.PendingPage(ctx, user, cursor, limit)
}

func (c *pagesCounter) Pending(ctx context.Context, user string) ([]store.Message, error) {
	c.whole.Add(1)
	return c.Store.Pending(ctx, user)
}

// TestHub_LongPendingQueueIsReadInPages: a user with a queue several
// pages long, who connects while live messages arrive, gets every message
// once, each conversation in seq order, and the hub read the queue a page
// at a time, never whole.
func TestHub_LongPendingQueueIsReadInPages(t *testing.T) {
	stores := []struct {
		name string
		open func(t *testing.T) store.Store
	}{
		{"mem", func(*testing.T) store.Store {
			return memstore.New(memstore.Options{MaxPending: 5000, MaxPendingPerSender: 5000})
		}},
		{"bolt", func(t *testing.T) store.Store {
			st, err := boltstore.Open(filepath.Join(t.TempDir(), "hub.db"), boltstore.Options{MaxPending: 5000, MaxPendingPerSender: 5000})
			require.NoError(t, err)
			return st
		}},
	}
	for _, sc := range stores {
		t.Run(sc.name, func(t *testing.T) {
			inner := sc.open(t)
			pager, ok := inner.(store.PendingPager)
			require.True(t, ok, "%T is not a store.PendingPager", inner)
			st := &pagesCounter{Store: inner, pager: pager}
			t.Cleanup(func() { assert.NoError(t, inner.Close()) })
			srv := hubtest.New(t, wshub.Options{Store: st})
			ctx := t.Context()
			const queued = 700 // almost three pages
			for i := range queued {
				from := []string{"alice", "carol"}[i%2]
				_, err := srv.Hub.SendToUser(ctx, from, "bob", &wshub.Frame{Content: fmt.Sprintf("q%d", i)})
				require.NoError(t, err)
			}
			alice := srv.Dial(t, "alice")
			bob := srv.Dial(t, "bob")
			const live = 20
			for i := range live {
				alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: fmt.Sprintf("l%d", i), Content: fmt.Sprintf("l%d", i)})
			}
			seen := map[string]bool{}
			last := map[string]uint64{} // by sender: one conversation each
			for range queued + live {
				f := bob.Expect(t, wshub.CmdSingle)
				require.False(t, seen[f.ID], "message %s (%s) twice", f.ID, f.Content)
				seen[f.ID] = true
				require.Greater(t, f.Seq, last[f.UserID], "%s's conversation out of order at %q", f.UserID, f.Content)
				last[f.UserID] = f.Seq
			}
			bob.ExpectNothing(t)
			assert.Equal(t, uint64(queued/2+live), last["alice"])
			assert.Equal(t, uint64(queued/2), last["carol"])
			assert.Zero(t, st.whole.Load(), "the queue was read whole")
			assert.GreaterOrEqual(t, st.pages.Load(), int32(3), "pages read")
			assert.LessOrEqual(t, st.maxLimit.Load(), int32(256), "page size")
		})
	}
}
