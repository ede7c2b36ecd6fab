package wshub_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
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
