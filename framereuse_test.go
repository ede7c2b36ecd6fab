package wshub_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
)

// keptFrames keeps every frame application code was handed, with a copy
// of its fields at that moment.
type keptFrames struct {
	mu   sync.Mutex
	kept []*wshub.Frame
	as   []wshub.Frame
}

func (k *keptFrames) keep(f *wshub.Frame) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kept = append(k.kept, f)
	k.as = append(k.as, *f)
}

// check fails t when a kept frame changed since it was handed over.
func (k *keptFrames) check(t *testing.T) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	require.NotEmpty(t, k.kept)
	for i, f := range k.kept {
		assert.Equal(t, k.as[i], *f, "frame %d changed after it was handed to application code", i)
	}
}

// The hub decodes its own messages into frames it takes back once
// handled. A frame that application code saw is never taken back: a
// Middleware or an application command's Dispatcher may keep it, and it
// must not change under them.
func TestHub_FramesHandedToApplicationCodeAreNotReused(t *testing.T) {
	t.Run("middleware", func(t *testing.T) {
		var k keptFrames
		srv := hubtest.New(t, wshub.Options{
			Middleware: []wshub.Middleware{func(next wshub.Dispatcher) wshub.Dispatcher {
				return wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
					k.keep(f)
					return next.Dispatch(ctx, n, f)
				})
			}},
		})
		sendDirectChecked(t, srv, 50)
		k.check(t)
	})
	t.Run("application command among direct messages", func(t *testing.T) {
		var k keptFrames
		srv := hubtest.New(t, wshub.Options{
			Dispatcher: wshub.DispatcherFunc(func(ctx context.Context, n *wshub.Node, f *wshub.Frame) error {
				k.keep(f)
				return n.Send(&wshub.Frame{Cmd: f.Cmd + 1, CID: f.CID})
			}),
		})
		alice := srv.Dial(t, "alice")
		bob := srv.Dial(t, "bob")
		for i := range 50 {
			alice.SendRaw(t, fmt.Sprintf(`{"cmd":100,"cid":"app%d","content":"app %d"}`, i, i))
			alice.Expect(t, 101)
			alice.SendRaw(t, fmt.Sprintf(`{"cmd":10,"cid":"d%d","dstid":"bob","content":"direct %d"}`, i, i))
			alice.Expect(t, wshub.CmdReceipt)
			got := bob.Expect(t, wshub.CmdSingle)
			require.Equal(t, fmt.Sprintf("direct %d", i), got.Content)
		}
		k.check(t)
	})
}

// sendDirectChecked has alice send n direct messages to bob, each checked on
// arrival.
func sendDirectChecked(t *testing.T, srv *hubtest.Server, n int) {
	t.Helper()
	alice := srv.Dial(t, "alice")
	bob := srv.Dial(t, "bob")
	for i := range n {
		alice.SendRaw(t, fmt.Sprintf(`{"cmd":10,"cid":"d%d","dstid":"bob","content":"direct %d"}`, i, i))
		r := alice.Expect(t, wshub.CmdReceipt)
		require.Equal(t, fmt.Sprintf("d%d", i), r.CID)
		got := bob.Expect(t, wshub.CmdSingle)
		require.Equal(t, fmt.Sprintf("direct %d", i), got.Content)
	}
}
