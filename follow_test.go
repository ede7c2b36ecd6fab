package wshub_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/memstore"
)

// countingRouter is a memory store with a Router that only counts, as
// redisstore does: one subscription, active until ctx ends, and the
// follows of each channel ("u:" user or "r:" room). An unfollow of a
// channel whose count is zero came before the follow it undoes, or undid
// none: either way, had another connection followed the channel, the
// count would have fallen to zero under it and Redis unsubscribed the
// channel while that connection still needed it.
type countingRouter struct {
	store.Store
	mu        sync.Mutex
	follows   map[string]int // guarded by mu
	underflow []string       // guarded by mu
}

func newCountingRouter() *countingRouter {
	return &countingRouter{Store: memstore.New(memstore.Options{}), follows: map[string]int{}}
}

func (r *countingRouter) Subscribe(ctx context.Context, fn func(store.Event)) error {
	fn(store.Event{Kind: store.EventReady})
	<-ctx.Done()
	return ctx.Err()
}

func (r *countingRouter) Follow(ctx context.Context, users, rooms []string, wait bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range users {
		r.follows["u:"+u]++
	}
	for _, room := range rooms {
		r.follows["r:"+room]++
	}
	return nil
}

func (r *countingRouter) Unfollow(users, rooms []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ch := range append(prefixed("u:", users), prefixed("r:", rooms)...) {
		if r.follows[ch] == 0 {
			r.underflow = append(r.underflow, ch)
			continue
		}
		if r.follows[ch]--; r.follows[ch] == 0 {
			delete(r.follows, ch)
		}
	}
}

// state returns the counts of the channels followed, and the unfollows
// that found a count of zero.
func (r *countingRouter) state() (map[string]int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := make(map[string]int, len(r.follows))
	for k, v := range r.follows {
		f[k] = v
	}
	return f, append([]string(nil), r.underflow...)
}

func prefixed(p string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = p + n
	}
	return out
}

// The follows on the store's feed mirror the connections and their rooms:
// while one user's connections come and go at once and the user joins and
// leaves rooms meanwhile, every follow is undone exactly once and never
// before it was made (else, with Redis, a room could be unsubscribed
// while a connection of this process still needs it, and that connection
// miss its messages silently; a follow never undone leaks a
// subscription), and once things settle each connection follows its user
// and each of its rooms once.
func TestHub_FollowsMirrorConnectionsAndRooms(t *testing.T) {
	st := newCountingRouter()
	srv := hubtest.New(t, wshub.Options{Store: st, MaxConnsPerIP: -1, UpgradeRate: -1})
	waitFor(t, srv.Hub.Ready)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				ws, _, err := websocket.DefaultDialer.DialContext(ctx, srv.DialURL("u"), nil)
				if err != nil {
					continue
				}
				_ = ws.Close() // gone at once: mid-setup, often
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			room := fmt.Sprintf("room%d", i%3)
			if i%2 == 0 {
				_ = srv.Hub.Join(context.Background(), "u", room)
			} else {
				_ = srv.Hub.Leave(context.Background(), "u", room)
			}
		}
	}()
	wg.Wait()
	waitFor(t, func() bool { return srv.Hub.Stats().Connections == 0 })
	follows, underflow := st.state()
	assert.Empty(t, underflow, "unfollows that found nothing followed")
	assert.Empty(t, follows, "follows left once every connection is gone")
	require.False(t, srv.Hub.IsOnline("u"))

	// Settled: two connections follow the user and its rooms twice.
	rooms, err := srv.Hub.Store().Rooms(context.Background(), "u")
	require.NoError(t, err)
	want := map[string]int{"u:u": 2}
	for _, r := range rooms {
		want["r:"+r] = 2
	}
	srv.Dial(t, "u")
	last := srv.Dial(t, "u")
	last.Send(t, &wshub.Frame{Cmd: wshub.CmdPing})
	last.Expect(t, wshub.CmdPong) // past its registration
	follows, underflow = st.state()
	assert.Equal(t, want, follows)
	assert.Empty(t, underflow)
}
