package main_test

import (
	"context"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/client"
	"github.com/wshub/wshub/internal/chaosproxy"
	"github.com/wshub/wshub/internal/chaosproxy/chaostest"
	"github.com/wshub/wshub/internal/redistest"
)

// Two example processes on one redis-server act as one hub while the
// network between them and their 20 clients fails at random (a fault
// proxy in front of each process: delays, cuts, resets, blackholes) and
// redis-server is stopped and started again on the same port, its data
// kept (append-only file, fsync always). Clients are spread over both
// processes. Once the faults stop and everyone drained, every receipted
// direct message to an ack=1 user was delivered exactly once, in order,
// and every receipted room message reached every other member or was
// reported recovered false; then both processes exit cleanly on SIGTERM.
//
// The example has no flags for its ping interval, so a blackholed
// connection is found by the client's heartbeat (the hub's own check is
// the default 25 s ping and 60 s pong timeout, longer than the run).
func TestExample_ChaosOverTwoProcessesAndARedisRestart(t *testing.T) {
	seed, err := chaostest.Seed()
	require.NoError(t, err, "WSHUB_CHAOS_SEED")
	dur, err := chaostest.Duration()
	require.NoError(t, err, "WSHUB_CHAOS_DURATION")
	rs := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	bin := buildExample(t)
	a := startExample(t, bin, "-addr", "127.0.0.1:0", "-store", "redis", "-redis", rs.Addr)
	b := startExample(t, bin, "-addr", "127.0.0.1:0", "-store", "redis", "-redis", rs.Addr)
	// Wait until both accept connections (their feed is subscribed).
	dialReady(t, a.addr, "probe-a").Close()
	dialReady(t, b.addr, "probe-b").Close()

	var proxies []*chaosproxy.Proxy
	var urls []string
	for _, e := range []*example{a, b} {
		p, err := chaosproxy.New(e.addr)
		require.NoError(t, err)
		defer p.Close()
		proxies = append(proxies, p)
		urls = append(urls, (&url.URL{Scheme: "ws", Host: p.Addr(), Path: "/ws"}).String())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := chaostest.Start(ctx, chaosConfig(t, urls, seed))
	require.NoError(t, err)
	defer w.Close()

	w.StartSending()
	fctx, stopFaults := context.WithTimeout(ctx, dur)
	// Redis goes away a third into the faults, for 2 s, and comes back
	// on the same port with its data.
	restarted := make(chan error, 1)
	go func() {
		select {
		case <-time.After(dur / 3):
		case <-fctx.Done():
			restarted <- fctx.Err()
			return
		}
		rs.Stop()
		down := time.Now()
		time.Sleep(2 * time.Second)
		err := rs.Restart()
		t.Logf("redis-server down for %v", time.Since(down).Round(time.Millisecond))
		restarted <- err
	}()
	faults := chaostest.Faults(fctx, proxies, seed, 100*time.Millisecond, 300*time.Millisecond)
	stopFaults()
	require.NoError(t, <-restarted, "restarting redis-server")
	w.StopSending(15 * time.Second)
	res := w.Drain(15 * time.Second)
	t.Logf("seed %d, faults for %v: %v", seed, dur, faults)
	for i, p := range proxies {
		t.Logf("proxy %d: %+v", i, p.Stats())
	}
	t.Logf("figures: %v", res)

	assertNothingLost(t, res)

	w.Close()
	for _, p := range proxies {
		p.Close()
	}
	for _, e := range []*example{a, b} {
		require.NoError(t, e.cmd.Process.Signal(syscall.SIGTERM))
		done := make(chan error, 1)
		go func() { done <- e.cmd.Wait() }()
		select {
		case err := <-done:
			assert.NoError(t, err, "exit status; stderr: %s", e.out)
		case <-time.After(15 * time.Second):
			t.Fatalf("example did not exit after SIGTERM; stderr: %s", e.out)
		}
	}
}

// chaosConfig is the workload of the example's chaos tests: 20 Go
// clients over urls, direct and room messages, fast heartbeats and
// reconnects.
func chaosConfig(t *testing.T, urls []string, seed uint64) chaostest.Config {
	return chaostest.Config{
		URLs:              urls,
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
	}
}

// assertNothingLost checks a chaos run's figures: every receipted direct
// message to an ack=1 user delivered once and in order, every receipted
// room message to every other member or reported recovered false,
// nothing refused or left without a receipt.
func assertNothingLost(t *testing.T, res chaostest.Result) {
	t.Helper()
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
}
