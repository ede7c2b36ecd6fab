//go:build linux

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tinyFill is a fill small enough for a test: 20 users, 50
// conversations, two points.
func tinyFill(store, to, point, svg string) []string {
	return []string{"growth", "-store", store, "-case", "fill", "-users", "20", "-convs", "50",
		"-to", to, "-points", point, "-hot-conns", "2", "-history", "10", "-measure", "300ms", "-measure-rate", "100", "-svg", svg}
}

// checkFill asserts what every fill run must show, whatever the store.
func checkFill(t *testing.T, rep *Report, points ...float64) {
	t.Helper()
	require.Len(t, rep.Runs, len(points), "one run per point")
	for i, r := range rep.Runs {
		assert.Equal(t, points[i], metric(t, r, "stored_messages"), r.Name)
		assert.Positive(t, metric(t, r, "fill_messages_per_s"), r.Name)
		assert.Zero(t, metric(t, r, "failed"), r.Name)
		assert.Positive(t, metric(t, r, "measured_messages"), r.Name)
		assert.Positive(t, metric(t, r, "receipt_p50"), r.Name)
		assert.LessOrEqual(t, metric(t, r, "receipt_p50"), metric(t, r, "receipt_p99"), r.Name)
		// The hot conversation holds its share, and the pages show it.
		hot := metric(t, r, "hot_conversation_messages")
		assert.Equal(t, float64(int(0.01*points[i])), hot, r.Name)
		assert.Equal(t, min(50, hot), metric(t, r, "history_newest_items"), r.Name)
		assert.Equal(t, min(50, hot-1), metric(t, r, "history_deep_items"), "%s: since 1 leaves out seq 1", r.Name)
		assert.Positive(t, metric(t, r, "history_other_newest_items"), r.Name)
		assert.Positive(t, metric(t, r, "hub_rss"), r.Name)
		assert.Positive(t, metric(t, r, "hub_heap_after_gc"), r.Name)
	}
}

func checkSVG(t *testing.T, path string, lines int) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(b, []byte("<svg ")), "an SVG document")
	assert.Equal(t, lines, bytes.Count(b, []byte("<polyline ")), "one line per store and metric")
	assert.True(t, bytes.HasSuffix(bytes.TrimSpace(b), []byte("</svg>")))
}

// svgLines is the number of lines a chart of one store draws: every
// metric of growthCharts the fill reports for that store.
func svgLines(skip ...string) int {
	n := 0
	for _, ch := range growthCharts {
		for _, s := range ch.series {
			if !strings.Contains(strings.Join(skip, ","), s.metric) {
				n++
			}
		}
	}
	return n
}

func TestGrowth_TinyFillMem(t *testing.T) {
	t.Parallel()
	svg := filepath.Join(t.TempDir(), "g.svg")
	rep := runTool(t, tinyFill("mem", "3000", "1000", svg)...)
	checkFill(t, rep, 1000, 3000)
	for _, r := range rep.Runs {
		assert.Positive(t, metric(t, r, "hub_heap_bytes_per_message"), "the memory store's footprint: %s", r.Name)
		_, ok := r.metric("store_bytes_per_message")
		assert.False(t, ok, "the memory store has no size of its own")
	}
	checkSVG(t, svg, svgLines("store_bytes_per_message"))
}

func TestGrowth_TinyFillBoltFileGrows(t *testing.T) {
	t.Parallel()
	svg := filepath.Join(t.TempDir(), "g.svg")
	// bbolt grows its file 16 MiB at a time, which 5,000 messages do not
	// cross: the blocks it takes grow with the commits.
	rep := runTool(t, tinyFill("bolt", "5000", "1000", svg)...)
	checkFill(t, rep, 1000, 5000)
	a, b := metric(t, rep.Runs[0], "store_disk_mib"), metric(t, rep.Runs[1], "store_disk_mib")
	assert.Greater(t, b, a, "the bbolt file takes more disk with the messages")
	assert.Positive(t, metric(t, rep.Runs[1], "store_disk_bytes_per_message"))
	assert.GreaterOrEqual(t, metric(t, rep.Runs[1], "store_mib"), metric(t, rep.Runs[0], "store_mib"))
	checkSVG(t, svg, svgLines())
}

func TestGrowth_TinyPendingRoomAndRooms(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"mem", "bolt"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			rep := runTool(t, "growth", "-store", store, "-case", "pending,room,rooms",
				"-pending", "3000", "-members", "50", "-room-msgs", "3",
				"-rooms", "40", "-room-size", "5", "-rooms-per-user", "10", "-measure", "300ms", "-measure-rate", "100")
			require.Len(t, rep.Runs, 3)
			checkPendingRoomRooms(t, rep, 3000, 50, 3)
		})
	}
}

func checkPendingRoomRooms(t *testing.T, rep *Report, pending, members, msgs float64) {
	t.Helper()
	p := rep.Runs[0]
	assert.Equal(t, pending, metric(t, p, "queued"))
	assert.Equal(t, pending, metric(t, p, "delivered"), "the user gets every queued message")
	assert.Zero(t, metric(t, p, "duplicated"))
	assert.Zero(t, metric(t, p, "delivered_again_on_reconnect"), "written without ack=1, they left the queue")
	assert.LessOrEqual(t, metric(t, p, "time_to_first"), metric(t, p, "time_to_last"))

	room := rep.Runs[1]
	assert.Equal(t, msgs, metric(t, room, "receipted"))
	assert.Equal(t, msgs*members, metric(t, room, "deliveries"), "every member got every message")
	assert.LessOrEqual(t, metric(t, room, "fanout_first_p50"), metric(t, room, "fanout_last_p50"))

	rooms := rep.Runs[2]
	assert.Equal(t, 200.0, metric(t, rooms, "memberships"), "20 users in 10 rooms each")
	assert.Positive(t, metric(t, rooms, "joins_per_s"))
	d := metric(t, rooms, "room_deliveries")
	assert.Positive(t, d)
	assert.Equal(t, metric(t, rooms, "expected_room_deliveries"), d, "every other member got every room message")
}

// TestGrowth_TinyRedis runs the fill and the other cases against a
// redis-server the tool starts; skipped where there is none, unless
// CI=true.
func TestGrowth_TinyRedis(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server: %v", err)
		}
		t.Skipf("redis-server not available: %v", err)
	}
	t.Parallel()
	svg := filepath.Join(t.TempDir(), "g.svg")
	rep := runTool(t, tinyFill("redis", "3000", "1000", svg)...)
	checkFill(t, rep, 1000, 3000)
	for _, r := range rep.Runs {
		assert.Positive(t, metric(t, r, "store_bytes_per_message"), "Redis used_memory grows: %s", r.Name)
	}
	rep = runTool(t, "growth", "-store", "redis", "-case", "pending,room,rooms",
		"-pending", "2000", "-members", "30", "-room-msgs", "2",
		"-rooms", "40", "-room-size", "5", "-rooms-per-user", "10", "-measure", "300ms", "-measure-rate", "100")
	require.Len(t, rep.Runs, 3)
	checkPendingRoomRooms(t, rep, 2000, 30, 2)
}

func TestGrowthPoints(t *testing.T) {
	ps, err := growthPoints("1000, 300,5000,1000", 2000)
	require.NoError(t, err)
	assert.Equal(t, []int64{300, 1000, 2000}, ps, "sorted, deduplicated, capped at -to, ending with it")
	_, err = growthPoints("10,x", 100)
	assert.Error(t, err)
	assert.Equal(t, "100k", countLabel(100_000))
	assert.Equal(t, "2.5M", countLabel(2_500_000))
	assert.Equal(t, "512", countLabel(512))
}

func TestGrowth_RefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-store", "floor"},
		{"-case", "fill,nope"},
		{"-users", "10", "-convs", "100"}, // 10 per user, at most 4 distinct
		{"-window", "65"},
		{"-case", "rooms", "-rooms", "15", "-rooms-per-user", "10"},
		{"-case", "fill,pending", "-db", "/tmp/x.db"},
		{"-store", "redis", "-redis", "10.1.2.3:6379"},
	} {
		var out, errb bytes.Buffer
		err := run(t.Context(), append([]string{"growth"}, args...), &out, &errb)
		assert.Error(t, err, "%v", args)
	}
}

func TestGrowthSVG_OneLinePerStoreAndMetric(t *testing.T) {
	mk := func(store string, stored float64, v float64) *Run {
		r := newRun(store)
		r.param("store", store)
		r.add("stored_messages", stored, "")
		r.add("fill_messages_per_s", v, "msg/s")
		r.add("receipt_p50", v/1000, "ms")
		return r
	}
	reps := []*Report{
		{Runs: []*Run{mk("bolt", 1e5, 9000), mk("bolt", 1e6, 8000), mk("pending", 0, 1)}},
		{Runs: []*Run{mk("redis", 1e5, 7000), mk("redis", 3e6, 6000)}},
	}
	stores, pts := growthSeries(reps)
	assert.Equal(t, []string{"bolt", "redis"}, stores, "runs without stored messages are not points")
	var b bytes.Buffer
	renderGrowthSVG(&b, stores, pts)
	s := b.String()
	assert.Equal(t, 4, strings.Count(s, "<polyline "), "2 stores x 2 metrics")
	assert.Equal(t, 8, strings.Count(s, "<circle "))
	assert.Contains(t, s, storeColors["redis"])
	assert.Contains(t, s, "no data", "the charts of metrics absent")
}
