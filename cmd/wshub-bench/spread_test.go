//go:build linux

package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/internal/redistest"
	"github.com/wshub/wshub/store/redisstore"
)

// TestSpread_TinyOverTwoHubsOnOneRedis drives two hubs sharing one Redis
// (in this process, with the default bounds) for a second: every direct
// message crosses from one hub to the other, the room's members are on
// both, and nothing receipted may be lost.
func TestSpread_TinyOverTwoHubsOnOneRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	var urls []string
	for range 2 {
		st, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr}),
			redisstore.Options{Prefix: "spreadtest:", CloseClient: true})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() }) // after the hub's shutdown
		h := hubtest.New(t, wshub.Options{Store: st})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.NoError(t, h.Hub.WaitReady(ctx))
		cancel()
		urls = append(urls, h.URL)
	}
	rep := runTool(t, "spread", "-targets", urls[0]+","+urls[1], "-users", "6", "-rate", "4",
		"-rooms", "1", "-members", "3", "-room-rate", "4", "-duration", "1s", "-drain", "5s")
	r := rep.Runs[0]
	assert.Zero(t, metric(t, r, "lost"))
	assert.Zero(t, metric(t, r, "duplicated"))
	assert.Zero(t, metric(t, r, "error_frames"))
	rec := metric(t, r, "direct_receipted")
	assert.Positive(t, rec, "direct messages receipted")
	assert.Positive(t, metric(t, r, "room_receipted"), "room messages receipted")
	assert.Equal(t, metric(t, r, "delivered_expected"), metric(t, r, "delivered"))
	// Each hub delivered its half of the direct messages and its members'
	// share of the room's.
	assert.Positive(t, metric(t, r, "hub0_delivered"))
	assert.Positive(t, metric(t, r, "hub1_delivered"))
	assert.Equal(t, metric(t, r, "delivered"), metric(t, r, "hub0_delivered")+metric(t, r, "hub1_delivered"))
	_, ok := r.metric("hub0_cpu_s")
	assert.False(t, ok, "no CPU readings without -hub-pids")
}

func TestSpread_RefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"spread"}, // neither -targets nor -spawn-example
		{"spread", "-targets", "ws://10.1.2.3:80/ws"},
		{"spread", "-targets", "ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws", "-hub-pids", "1"},
		{"spread", "-spawn-example", "/bin/false", "-redis", "10.1.2.3:6379"},
		{"spread", "-targets", "ws://127.0.0.1:1/ws", "-users", "3"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		assert.Error(t, err, "%q", args)
	}
}

func TestSpread_VariantsAlternateExamplesWithinEachCount(t *testing.T) {
	c := &config{sp: spreadConfig{examples: "old=/tmp/a,/tmp/new", hubs: "1,3", repeat: 2}}
	var names []string
	for _, v := range spreadVariants(c) {
		names = append(names, v.name)
	}
	assert.Equal(t, []string{"old x1 #1", "new x1 #1", "old x3 #1", "new x3 #1",
		"old x1 #2", "new x1 #2", "old x3 #2", "new x3 #2"}, names)
	assert.Equal(t, "/tmp/a", spreadVariants(c)[0].example)
	assert.Equal(t, 3, spreadVariants(c)[2].hubs)
}

// TestSpread_SpawnsTheExample builds examples/stdlib and has the tool
// start two of it on one Redis, as the published figures do: per process
// CPU readings, deliveries on both, nothing lost.
func TestSpread_SpawnsTheExample(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/stdlib")
	}
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go not found: %v", err)
	}
	srv := redistest.Start(t)
	exe := filepath.Join(t.TempDir(), "stdlib")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, goBin, "build", "-o", exe, "./stdlib")
	build.Dir = "../../examples"
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	rep := runTool(t, "spread", "-spawn-example", "ex="+exe, "-hubs", "2", "-redis", srv.Addr,
		"-users", "4", "-rate", "4", "-rooms", "1", "-members", "2", "-room-rate", "4", "-duration", "1s", "-drain", "5s")
	r := rep.Runs[0]
	assert.Equal(t, "ex x2", r.Name)
	assert.Zero(t, metric(t, r, "lost"))
	assert.Equal(t, metric(t, r, "delivered_expected"), metric(t, r, "delivered"))
	for _, h := range []string{"hub0_", "hub1_"} {
		assert.Positive(t, metric(t, r, h+"delivered"))
		assert.GreaterOrEqual(t, metric(t, r, h+"cpu_s"), 0.0)
		metric(t, r, h+"cpu_s_per_million_delivered")
	}
}
