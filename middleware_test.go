package wshub_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/memstore"
)

// The hub stamps every incoming frame with the authenticated user before
// any Middleware or Dispatcher sees it (SPEC 2: userid is always set by the
// server, a value sent by a client is ignored). The built-in router uses
// the connection's user anyway, so only application code can tell: a
// middleware doing per-user policy and an application command reading
// f.UserID must see "alice" whatever alice wrote into the frame.
func TestMiddleware_SeesAuthenticatedUserNotTheClientsUserID(t *testing.T) {
	var mu sync.Mutex
	mwSaw := map[string]string{}  // cid → f.UserID seen by the middleware
	appSaw := map[string]string{} // cid → f.UserID seen by the Dispatcher
	srv := hubtest.New(t, wshub.Options{
		Middleware: []wshub.Middleware{func(next wshub.Dispatcher) wshub.Dispatcher {
			return wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
				mu.Lock()
				mwSaw[f.CID] = f.UserID
				mu.Unlock()
				return next.Dispatch(ctx, n, f)
			})
		}},
		Dispatcher: wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
			mu.Lock()
			appSaw[f.CID] = f.UserID
			mu.Unlock()
			// Echo what the application saw, to check it on the wire too.
			return n.Send(&wshub.Frame{Cmd: f.Cmd + 1, CID: f.CID, Content: f.UserID})
		}),
	})
	alice := srv.Dial(t, "alice")
	srv.Dial(t, "bob")

	tests := []struct {
		name  string
		raw   string
		reply wshub.Cmd
		app   bool // routed to the Dispatcher
	}{
		{"app command, forged userid", `{"cmd":100,"cid":"a1","userid":"mallory"}`, 101, true},
		{"app command, numeric userid", `{"cmd":150,"cid":"a2","userid":7}`, 151, true},
		{"app command, the recipient's userid", `{"cmd":100,"cid":"a3","userid":"bob"}`, 101, true},
		{"app command, no userid", `{"cmd":100,"cid":"a4"}`, 101, true},
		{"direct message, forged userid", `{"cmd":10,"cid":"d1","dstid":"bob","userid":"bob","content":"x"}`, wshub.CmdReceipt, false},
		{"ping, forged userid", `{"cmd":1,"cid":"p1","userid":"mallory"}`, wshub.CmdPong, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := wshub.DecodeFrame([]byte(tt.raw))
			require.NoError(t, err)
			cid := f.CID
			alice.SendRaw(t, tt.raw)
			r := alice.Expect(t, tt.reply)
			require.Equal(t, cid, r.CID)

			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, "alice", mwSaw[cid], "the middleware saw the client's userid, not the authenticated user")
			if tt.app {
				assert.Equal(t, "alice", appSaw[cid], "the Dispatcher saw the client's userid, not the authenticated user")
				assert.Equal(t, "alice", r.Content, "the Dispatcher's f.UserID")
			}
		})
	}
}

// waitHook is an application hook's body in waitingHooks: it waits, for
// alice's frame with cid (or room) "wait".
type waitHook func(ctx context.Context, n *wshub.Node, f *wshub.Frame)

// waitingHooks are the application hooks that may wait, each with the
// frame of alice's that reaches it.
var waitingHooks = []struct {
	name string
	opts func(wait waitHook) wshub.Options
	raw  string // alice's frame that waits
}{
	{"middleware", func(wait waitHook) wshub.Options {
		return wshub.Options{Middleware: []wshub.Middleware{func(next wshub.Dispatcher) wshub.Dispatcher {
			return wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
				wait(ctx, n, f)
				return next.Dispatch(ctx, n, f)
			})
		}}}
	}, `{"cmd":1,"cid":"wait"}`},
	{"dispatcher", func(wait waitHook) wshub.Options {
		return wshub.Options{Dispatcher: wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
			wait(ctx, n, f)
			return nil
		})}
	}, `{"cmd":100,"cid":"wait"}`},
	{"authorize room", func(wait waitHook) wshub.Options {
		return wshub.Options{AuthorizeRoom: func(ctx context.Context, n *wshub.Node, cmd wshub.Cmd, room string) error {
			wait(ctx, n, &wshub.Frame{CID: room})
			return nil
		}}
	}, `{"cmd":12,"dstid":"wait"}`},
}

// hookServer starts a hub with a hook of waitingHooks (opts), whose
// wait says so on entered and holds alice's frame until the test ends.
func hookServer(t *testing.T, opts func(waitHook) wshub.Options) (*hubtest.Server, <-chan struct{}) {
	entered, release := make(chan struct{}), make(chan struct{})
	srv := hubtest.New(t, opts(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) {
		if n.UserID() == "alice" && f.CID == "wait" {
			close(entered)
			<-release
		}
	}))
	t.Cleanup(func() { close(release) }) // before the hub's shutdown, registered earlier
	return srv, entered
}

// An application hook that waits (a Middleware, the Dispatcher,
// AuthorizeRoom) holds up its own connection only: while it waits, other
// users' frames are read and answered. With the memory store the hub
// handles built-in commands on the transport's poller; a frame that goes
// to application code has it hand polling on first.
func TestHub_AWaitingHookHoldsUpOnlyItsConnection(t *testing.T) {
	for _, tt := range waitingHooks {
		t.Run(tt.name, func(t *testing.T) {
			srv, entered := hookServer(t, tt.opts)
			alice, bob, carol := srv.Dial(t, "alice"), srv.Dial(t, "bob"), srv.Dial(t, "carol")
			alice.SendRaw(t, tt.raw)
			othersServedWhileWaiting(t, entered, "the hook", bob, carol)
		})
	}
}

// clientFrames encodes texts as masked client text frames (a zero mask
// key), for one write of several frames.
func clientFrames(texts ...string) []byte {
	var b []byte
	for _, s := range texts {
		b = append(b, 0x81, 0x80|byte(len(s)), 0, 0, 0, 0) // under 126 bytes
		b = append(b, s...)
	}
	return b
}

// The frames of one read hold their writes back until the read's end, so
// that a burst costs few system calls; a hook that waits, in a later frame
// of the same read, has them written first: bob gets alice's message
// while her next frame waits in the Dispatcher or AuthorizeRoom.
func TestHub_AWaitingHookDoesNotHoldUpTheWritesOfItsRead(t *testing.T) {
	for _, tt := range waitingHooks {
		t.Run(tt.name, func(t *testing.T) {
			srv, entered := hookServer(t, tt.opts)
			alice, bob := srv.Dial(t, "alice"), srv.Dial(t, "bob")
			_, err := alice.WS.UnderlyingConn().Write(clientFrames(`{"cmd":10,"dstid":"bob","cid":"m1","content":"first"}`, tt.raw))
			require.NoError(t, err)
			select {
			case <-entered:
			case <-time.After(hubtest.Timeout):
				t.Fatal("the hook did not get alice's second frame")
			}
			assert.Equal(t, "first", bob.Expect(t, wshub.CmdSingle).Content, "delivered while the hook waits")
			assert.Equal(t, "m1", alice.Expect(t, wshub.CmdReceipt).CID, "receipted while the hook waits")
		})
	}
}

// othersServedWhileWaiting waits until what (a hook, the store) is
// holding alice's frame (entered), then has bob send carol three direct
// messages, each receipted and delivered meanwhile.
func othersServedWhileWaiting(t *testing.T, entered <-chan struct{}, what string, bob, carol *hubtest.Conn) {
	t.Helper()
	select {
	case <-entered:
	case <-time.After(hubtest.Timeout):
		t.Fatalf("%s did not get alice's frame", what)
	}
	for i := range 3 {
		cid := fmt.Sprint("b", i)
		bob.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "carol", CID: cid, Content: "hi"})
		assert.Equal(t, cid, bob.Expect(t, wshub.CmdReceipt).CID)
		assert.Equal(t, "hi", carol.Expect(t, wshub.CmdSingle).Content)
	}
}

// waitingStore is a store that may wait for I/O (it is not a
// store.NonBlocking): its Append of a message whose cid is "wait" waits
// until release is closed.
type waitingStore struct {
	store.Store
	entered, release chan struct{}
}

func (s *waitingStore) Append(ctx context.Context, req store.AppendRequest) (store.Message, bool, error) {
	if req.CID == "wait" {
		close(s.entered)
		<-s.release
	}
	return s.Store.Append(ctx, req)
}

// waitingMem embeds the memory store, and waits in Append as
// waitingStore does: it reports NonBlocking false.
type waitingMem struct {
	*memstore.Store
	wait *waitingStore
}

func (s *waitingMem) Append(ctx context.Context, req store.AppendRequest) (store.Message, bool, error) {
	return s.wait.Append(ctx, req)
}

func (*waitingMem) NonBlocking() bool { return false }

// A store call that waits holds up its own connection only, as a hook's
// does: with a store that is not a store.NonBlocking, or says false,
// every frame is handled off the transport's poller.
func TestHub_AWaitingStoreHoldsUpOnlyItsConnection(t *testing.T) {
	tests := []struct {
		name string
		wrap func(*waitingStore) store.Store
	}{
		{"no NonBlocking", func(w *waitingStore) store.Store { return w }},
		{"NonBlocking false", func(w *waitingStore) store.Store {
			return &waitingMem{Store: w.Store.(*memstore.Store), wait: w}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &waitingStore{Store: memstore.New(memstore.Options{}), entered: make(chan struct{}), release: make(chan struct{})}
			defer close(w.release)
			srv := hubtest.New(t, wshub.Options{Store: tt.wrap(w)})
			alice, bob, carol := srv.Dial(t, "alice"), srv.Dial(t, "bob"), srv.Dial(t, "carol")
			alice.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "carol", CID: "wait", Content: "later"})
			othersServedWhileWaiting(t, w.entered, "the store", bob, carol)
		})
	}
}
