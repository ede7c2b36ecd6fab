package wshub_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/client"
	"github.com/wshub/wshub/internal/chaosproxy"
	"github.com/wshub/wshub/internal/chaosproxy/chaostest"
	"github.com/wshub/wshub/store/boltstore"
)

// 20 users (half with ack=1) exchange direct and room messages with a
// hub on a bbolt store, through a proxy that delays, cuts, resets and
// blackholes their connections at random for chaostest.Duration. Then the
// faults stop, every client reconnects and drains, and every receipted
// direct message to an ack=1 user must have been delivered exactly once,
// in order per conversation; every room message must have reached every
// other member, live or by the replay of the rejoin, unless the hub said
// recovered false. Once the clients left, the hub's goroutines and heap
// must be back near where they started.
func TestChaos_FaultyNetworkLosesNothingReceipted(t *testing.T) {
	seed, err := chaostest.Seed()
	require.NoError(t, err, "WSHUB_CHAOS_SEED")
	dur, err := chaostest.Duration()
	require.NoError(t, err, "WSHUB_CHAOS_DURATION")
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "chaos.db"), boltstore.Options{NoSync: true})
	require.NoError(t, err)
	defer st.Close()
	hub, err := wshub.New(wshub.Options{
		Store:        st,
		Authenticate: wshub.DevAuthenticate,
		// Blackholed connections are found by the hub within about 1.5 s.
		PingInterval: 250 * time.Millisecond,
		PongTimeout:  time.Second, // raised to PingInterval + 1 s
		WriteTimeout: 2 * time.Second,
	})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hub.Shutdown(ctx)
	}()

	goroutines0, heap0 := settledRuntime()

	proxy, err := chaosproxy.New(hs.Listener.Addr().String())
	require.NoError(t, err)
	defer proxy.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := chaostest.Start(ctx, chaostest.Config{
		URLs:              []string{"ws://" + proxy.Addr() + "/ws"},
		Users:             20,
		Rooms:             3,
		RoomsPerUser:      2,
		Interval:          150 * time.Millisecond,
		RoomShare:         0.3,
		Seed:              seed,
		HeartbeatInterval: 300 * time.Millisecond,
		HeartbeatTimeout:  time.Second,
		Backoff:           client.Backoff{Base: 100 * time.Millisecond, Max: 500 * time.Millisecond},
		Logf:              t.Logf,
	})
	require.NoError(t, err)
	defer w.Close()

	w.StartSending()
	fctx, stopFaults := context.WithTimeout(ctx, dur)
	faults := chaostest.Faults(fctx, []*chaosproxy.Proxy{proxy}, seed, 100*time.Millisecond, 300*time.Millisecond)
	stopFaults()
	w.StopSending(15 * time.Second)
	res := w.Drain(15 * time.Second)
	t.Logf("seed %d, faults for %v: %v", seed, dur, faults)
	t.Logf("proxy: %+v", proxy.Stats())
	t.Logf("figures: %v", res)

	require.Positive(t, res.Direct, "direct messages receipted")
	require.Positive(t, res.RoomMessages, "room messages receipted")
	assert.Zero(t, res.Unreceipted, "messages still without a receipt once the faults stopped")
	assert.Zero(t, res.Refused, "messages refused")
	assert.Zero(t, res.Lost, "receipted direct messages to ack=1 users never delivered: %v", res.FirstLost)
	assert.Zero(t, res.Duplicated, "direct messages delivered twice to the application")
	assert.Zero(t, res.OutOfOrder, "direct messages out of order in their conversation")
	assert.Zero(t, res.Strays, "messages nobody sent")
	if !assert.Zero(t, res.RoomLost, "room messages neither received nor reported recovered false: %v", res.FirstLost) {
		t.Log(res.Trace)
	}
	assert.Zero(t, res.RoomDuplicated, "room messages delivered twice to the application")
	assert.Positive(t, faults.Cut+faults.Reset+faults.Blackholed, "faults were injected")

	// Everyone leaves: the hub lets go of every connection, goroutine and
	// buffer.
	w.Close()
	require.NoError(t, proxy.Close())
	require.Eventually(t, func() bool { return len(hub.Users()) == 0 }, 10*time.Second, 20*time.Millisecond,
		"users still online: %v", hub.Users())
	var goroutines1 int
	var heap1 uint64
	ok := assert.Eventually(t, func() bool {
		goroutines1, heap1 = settledRuntime()
		return goroutines1 <= goroutines0+10
	}, 15*time.Second, 100*time.Millisecond)
	t.Logf("hub process: goroutines %d -> %d, heap in use after GC %.1f -> %.1f MiB",
		goroutines0, goroutines1, float64(heap0)/(1<<20), float64(heap1)/(1<<20))
	if !ok {
		buf := make([]byte, 1<<20)
		t.Logf("goroutines:\n%s", buf[:runtime.Stack(buf, true)])
	}
	assert.Less(t, heap1, heap0+64<<20, "heap in use after GC, 64 MiB over the baseline at most")
}

// settledRuntime returns the goroutine count and the heap in use after a
// GC.
func settledRuntime() (int, uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms.HeapInuse
}
