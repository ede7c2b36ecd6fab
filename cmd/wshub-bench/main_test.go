//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
	"github.com/wshub/wshub/store"
)

// TestMain lets the test binary stand in for the tool: the scenarios
// spawn os.Executable() as "serve" (the hub) and "worker" (idle
// connections), which here is this binary, marked by childEnv.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "wshub-bench:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runTool runs the tool with args plus -json, requires it to succeed and
// returns the report.
func runTool(t *testing.T, args ...string) *Report {
	t.Helper()
	path := filepath.Join(t.TempDir(), "report.json")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, append(args, "-json", path, "-progress", "200ms", "-timeout", "45s"), &stdout, &stderr)
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	assert.Contains(t, stdout.String(), "| |", "a Markdown table on stdout")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var rep Report
	require.NoError(t, json.Unmarshal(b, &rep))
	require.NotEmpty(t, rep.Runs)
	for _, r := range rep.Runs {
		require.Empty(t, r.Errors, "run %s", r.Name)
	}
	return &rep
}

// metric returns the named metric of run r, failing the test if absent.
func metric(t *testing.T, r *Run, name string) float64 {
	t.Helper()
	v, ok := r.metric(name)
	require.True(t, ok, "run %s has no metric %s: %+v", r.Name, name, r.Metrics)
	return v
}

func TestFanout_TinyDeliversEverythingOnce(t *testing.T) {
	t.Parallel()
	prof := filepath.Join(t.TempDir(), "hub.prof")
	rep := runTool(t, "fanout", "-rooms", "2", "-members", "5", "-rate", "20", "-duration", "1s", "-batch", "both", "-hub-cpuprofile", prof)
	require.Len(t, rep.Runs, 2)
	for _, r := range rep.Runs {
		fi, err := os.Stat(r.Params["hub_cpuprofile"])
		if assert.NoError(t, err, "the hub's CPU profile of run %s", r.Name) {
			assert.Positive(t, fi.Size())
		}
		sent := metric(t, r, "messages_receipted")
		assert.InDelta(t, 40, sent, 4, "2 rooms x 20/s x 1 s")
		assert.Equal(t, sent*5, metric(t, r, "deliveries"))
		assert.Zero(t, metric(t, r, "lost"))
		assert.Zero(t, metric(t, r, "duplicated"))
		p50, max := metric(t, r, "latency_p50"), metric(t, r, "latency_max")
		assert.Positive(t, p50)
		assert.LessOrEqual(t, p50, max)
		assert.Positive(t, metric(t, r, "hub_cpu_s")+1e-9, "hub CPU read from /proc")
		assert.Positive(t, metric(t, r, "hub_rss"))
	}
}

func TestFanout_TinyAgainstTheFloorServer(t *testing.T) {
	t.Parallel()
	rep := runTool(t, "fanout", "-floor", "-rooms", "2", "-members", "5", "-rate", "20", "-duration", "1s", "-batch", "1")
	require.Len(t, rep.Runs, 1)
	r := rep.Runs[0]
	assert.Equal(t, "floor", r.Params["server"])
	sent := metric(t, r, "messages_receipted")
	assert.InDelta(t, 40, sent, 4, "2 rooms x 20/s x 1 s")
	assert.Equal(t, sent*5, metric(t, r, "deliveries"), "the floor server writes every message to every other member")
	assert.Zero(t, metric(t, r, "lost"))
	assert.Zero(t, metric(t, r, "duplicated"))
	assert.Positive(t, metric(t, r, "hub_rss"), "readings of the server process")
}

func TestSaturate_TinyLosesNothing(t *testing.T) {
	t.Parallel()
	rep := runTool(t, "saturate", "-rooms", "2", "-members", "5", "-duration", "1s", "-count", "300")
	require.Len(t, rep.Runs, 2, "batch=1 and batch=0")
	for _, r := range rep.Runs {
		rec := metric(t, r, "messages_receipted")
		assert.Positive(t, rec)
		assert.LessOrEqual(t, rec, 600.0, "-count bounds each publisher")
		assert.Equal(t, rec*5, metric(t, r, "deliveries"))
		assert.Zero(t, metric(t, r, "lost"))
		assert.Zero(t, metric(t, r, "duplicated"))
		assert.Positive(t, metric(t, r, "deliveries_per_s"))
	}
}

func TestDirect_TinyMemAndBoltDurable(t *testing.T) {
	t.Parallel()
	rep := runTool(t, "direct", "-pairs", "4", "-duration", "1s", "-count", "200")
	require.Len(t, rep.Runs, 2, "mem and bolt")
	for _, r := range rep.Runs {
		rec := metric(t, r, "messages_receipted")
		assert.Positive(t, rec)
		assert.Equal(t, rec, metric(t, r, "messages_delivered"))
		assert.Zero(t, metric(t, r, "lost"))
		assert.Zero(t, metric(t, r, "duplicated"))
	}
	bolt := rep.Runs[1]
	assert.Equal(t, "bolt", bolt.Params["store"])
	assert.Equal(t, metric(t, bolt, "messages_receipted"), metric(t, bolt, "durable_checked_after_sigkill"))
	assert.Zero(t, metric(t, bolt, "durable_missing_after_sigkill"))
}

// TestDirect_TinyFixedRateHubAndFloor runs the fixed-rate direct scenario
// against the hub and the direct floor server, alternating, in one
// invocation.
func TestDirect_TinyFixedRateHubAndFloor(t *testing.T) {
	t.Parallel()
	rep := runTool(t, "direct", "-store", "mem,floor", "-repeat", "2", "-pairs", "4", "-rate", "20", "-duration", "1s")
	require.Len(t, rep.Runs, 4, "mem, floor, mem, floor")
	for i, r := range rep.Runs {
		if i%2 == 1 {
			assert.Equal(t, "floor-direct", r.Params["server"], r.Name)
		} else {
			assert.Equal(t, "mem", r.Params["store"], r.Name)
		}
		assert.Equal(t, "20", r.Params["rate_per_user"])
		assert.Equal(t, "paced", r.Params["sends"])
		rec := metric(t, r, "messages_receipted")
		assert.InDelta(t, 160, rec, 16, "%s: 8 users x 20/s x 1 s", r.Name)
		assert.Positive(t, metric(t, r, "messages_delivered"), r.Name)
		assert.Equal(t, rec, metric(t, r, "messages_delivered"), r.Name)
		assert.Zero(t, metric(t, r, "lost"), r.Name)
		assert.Zero(t, metric(t, r, "duplicated"), r.Name)
		metric(t, r, "hub_cpu_s")
	}
}

// With -timers the senders keep their rate on timers of their own.
func TestDirect_TinyFixedRateOnTimers(t *testing.T) {
	t.Parallel()
	rep := runTool(t, "direct", "-store", "mem", "-timers", "-pairs", "4", "-rate", "20", "-duration", "1s")
	require.Len(t, rep.Runs, 1)
	r := rep.Runs[0]
	assert.Equal(t, "timers", r.Params["sends"])
	rec := metric(t, r, "messages_receipted")
	assert.InDelta(t, 160, rec, 16, "8 users x 20/s x 1 s")
	assert.Equal(t, rec, metric(t, r, "messages_delivered"))
	assert.Zero(t, metric(t, r, "lost"))
}

func TestStorm_TinyEveryoneReconnects(t *testing.T) {
	t.Parallel()
	for _, drop := range []string{"hub", "client"} {
		rep := runTool(t, "storm", "-conns", "20", "-drop", drop, "-settle", "100ms")
		r := rep.Runs[0]
		assert.Equal(t, 20.0, metric(t, r, "reconnected"), drop)
		assert.Positive(t, metric(t, r, "time_to_all_reconnected"), drop)
	}
}

func TestIdle_TinyOverWorkersAndSourceAddresses(t *testing.T) {
	t.Parallel()
	rep := runTool(t, "idle", "-conns", "30", "-procs", "2", "-per-src", "10", "-settle", "200ms", "-hold", "300ms")
	r := rep.Runs[0]
	assert.Equal(t, 30.0, metric(t, r, "connected"))
	assert.Equal(t, 30.0, metric(t, r, "held"))
	assert.Equal(t, 30.0, metric(t, r, "hub_conns"))
	assert.Positive(t, metric(t, r, "conns_per_s"))
	metric(t, r, "hub_rss_per_conn")
}

// TestSlowloris_TinyAgainstASpawnedHub asserts only what holds whether the
// hub keeps a partial frame for the whole run (c65ea75) or closes the
// connection after a frame deadline.
func TestSlowloris_TinyAgainstASpawnedHub(t *testing.T) {
	t.Parallel()
	rep := runTool(t, "slowloris", "-conns", "20", "-frame", "4096", "-sent", "3000", "-drip", "200ms", "-duration", "2s", "-sample", "500ms")
	r := rep.Runs[0]
	assert.Equal(t, 20.0, metric(t, r, "dialed"))
	assert.Equal(t, 20.0, metric(t, r, "partial_frames"))
	assert.Equal(t, 20.0, metric(t, r, "held_to_end")+metric(t, r, "closed_by_hub"))
	assert.Positive(t, metric(t, r, "hub_rss_baseline"))
	assert.GreaterOrEqual(t, metric(t, r, "hub_rss_peak"), metric(t, r, "hub_rss_baseline"))
	metric(t, r, "hub_rss_after_gc")
	require.GreaterOrEqual(t, len(r.Samples), 4, "a sample at the start, every 500 ms for 2 s, and at the end")
	for _, sm := range r.Samples {
		assert.Positive(t, sm.HubRSS, "sample at %.1f s", sm.T)
		assert.LessOrEqual(t, sm.Open+sm.Closed, int64(20))
	}
	assert.Zero(t, r.Samples[0].Open, "the first sample is the baseline")
	assert.Len(t, r.Notes, 1, "the outcome")
}

// TestSlowloris_WhatTheServerSees runs the scenario against a stand-in
// server that reads what each connection sends: a masked text frame
// announcing -frame bytes, -sent of them at once, then single bytes,
// never the whole frame. It closes every other connection with 1008
// after two dripped bytes and holds the rest.
func TestSlowloris_WhatTheServerSees(t *testing.T) {
	t.Parallel()
	const conns, frame, sent = 20, 3000, 2000
	type seen struct {
		n       int // payload bytes received
		closed  bool
		problem string
	}
	got := make(chan seen, conns)
	var accepted atomic.Int64
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ws, err := up.Upgrade(w, req, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		closer := accepted.Add(1)%2 == 0
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"cmd":20}`)); err != nil {
			got <- seen{problem: err.Error()}
			return
		}
		mt, rd, err := ws.NextReader()
		if err != nil || mt != websocket.TextMessage {
			got <- seen{problem: fmt.Sprintf("no text frame: type %d, %v", mt, err)}
			return
		}
		s := seen{}
		buf := make([]byte, 4096)
		for {
			m, err := rd.Read(buf)
			for _, b := range buf[:m] {
				if b != lorisPlain && s.problem == "" {
					s.problem = fmt.Sprintf("payload byte %d is %q", s.n, b)
				}
				s.n++
			}
			if closer && s.n >= sent+2 {
				_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, "too slow"), time.Now().Add(time.Second))
				s.closed = true
				got <- s
				return
			}
			if errors.Is(err, io.EOF) {
				s.problem = "the frame was completed"
			}
			if err != nil {
				got <- s
				return
			}
		}
	}))
	defer srv.Close()
	target := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"

	rep := runTool(t, "slowloris", "-target", target, "-conns", strconv.Itoa(conns), "-frame", strconv.Itoa(frame), "-sent", strconv.Itoa(sent),
		"-drip", "50ms", "-duration", "1500ms", "-sample", "500ms")
	r := rep.Runs[0]
	assert.Equal(t, float64(conns), metric(t, r, "dialed"))
	assert.Equal(t, float64(conns/2), metric(t, r, "closed_by_hub"))
	assert.Equal(t, float64(conns/2), metric(t, r, "closed_code_1008"))
	assert.Equal(t, float64(conns/2), metric(t, r, "held_to_end"))
	assert.GreaterOrEqual(t, metric(t, r, "held_min"), 80.0, "two drips of 50 ms")
	assert.LessOrEqual(t, metric(t, r, "held_min"), metric(t, r, "held_p50"))
	assert.LessOrEqual(t, metric(t, r, "held_p50"), metric(t, r, "held_max"))
	assert.Less(t, metric(t, r, "held_max"), 1500.0)
	assert.NotEmpty(t, r.Samples)
	assert.Zero(t, r.Samples[0].HubRSS, "no readings without -hub-pid")
	for range conns {
		s := <-got
		assert.Empty(t, s.problem)
		assert.GreaterOrEqual(t, s.n, sent+2, "the partial frame and some single bytes")
		assert.Less(t, s.n, frame, "never the whole frame")
	}
}

func TestPartialFrame_Header(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	for _, c := range []struct {
		size int
		hdr  []byte
	}{
		{125, []byte{0x81, 0x80 | 125}},
		{126, []byte{0x81, 0x80 | 126, 0, 126}},
		{65535, []byte{0x81, 0x80 | 126, 0xff, 0xff}},
		{65536, []byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	} {
		b := partialFrame(c.size, 5, key)
		require.Len(t, b, len(c.hdr)+4+5, "size %d", c.size)
		assert.Equal(t, c.hdr, b[:len(c.hdr)], "size %d", c.size)
		assert.Equal(t, key[:], b[len(c.hdr):len(c.hdr)+4])
		for i, m := range b[len(c.hdr)+4:] {
			assert.Equal(t, byte(lorisPlain), m^key[i&3])
		}
	}
	assert.Equal(t, "eof", closeKind(&websocket.CloseError{Code: websocket.CloseAbnormalClosure}))
	assert.Equal(t, "code_1008", closeKind(&websocket.CloseError{Code: 1008}))
	assert.Equal(t, "reset", closeKind(fmt.Errorf("read: %w", syscall.ECONNRESET)))
	assert.Equal(t, "other", closeKind(errors.New("x")))
}

func TestFanout_AgainstTarget(t *testing.T) {
	t.Parallel()
	srv := hubtest.New(t, wshub.Options{})
	rep := runTool(t, "fanout", "-target", srv.URL, "-rooms", "1", "-members", "3", "-rate", "20", "-duration", "500ms")
	r := rep.Runs[0]
	assert.Equal(t, srv.URL, r.Params["target"])
	assert.Zero(t, metric(t, r, "lost"))
	assert.Equal(t, metric(t, r, "messages_receipted")*3, metric(t, r, "deliveries"))
	_, ok := r.metric("hub_cpu_s")
	assert.False(t, ok, "no hub CPU without -hub-pid")
}

func TestRun_RefusesNonLoopbackTargets(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"fanout", "-target", "ws://10.1.2.3:80/ws"}, &out, &errOut)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "loopback")
	err = run(context.Background(), []string{"nope"}, &out, &errOut)
	assert.ErrorIs(t, err, errUsage)
}

func TestHistogram_Quantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i)*time.Microsecond, i)
	}
	s := h.snapshot()
	assert.EqualValues(t, 1000, s.n)
	assert.Equal(t, time.Millisecond, s.max)
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, time.Millisecond}} {
		got := s.quantile(c.q)
		assert.InEpsilon(t, float64(c.want), float64(got), 1.0/32, "q=%v", c.q)
		assert.GreaterOrEqual(t, got, c.want, "upper bucket bound, q=%v", c.q)
	}
	var empty histogram
	assert.Zero(t, empty.snapshot().quantile(0.99))
}

func TestLineParsing(t *testing.T) {
	f := &wshub.Frame{Cmd: wshub.CmdRoom, ID: "id-1", CID: "7", UserID: "u", DstID: "room1", Content: string(appendContent(nil, 3, 42, 1234567))}
	line, err := f.Encode()
	require.NoError(t, err)
	assert.Equal(t, 11, lineCmd(line))
	assert.Equal(t, "id-1", string(strField(line, "id")))
	assert.Equal(t, "7", string(strField(line, "cid")))
	src, seq, sent, ok := parseContent(strField(line, "content"))
	require.True(t, ok)
	assert.Equal(t, []int64{3, 42, 1234567}, []int64{int64(src), int64(seq), sent})
	_, _, _, ok = parseContent([]byte("1.2"))
	assert.False(t, ok)
	assert.Equal(t, -1, lineCmd([]byte(`{"id":"x"}`)))
	assert.Nil(t, strField(line, "memo"))

	var s seqSet
	assert.False(t, s.add(130))
	assert.True(t, s.add(130))
	assert.True(t, s.has(130))
	assert.False(t, s.has(129))
	assert.False(t, s.has(100000))

	var want seqSet
	for _, n := range []int{1, 64, 130, 500} {
		want.add(n)
	}
	assert.Equal(t, int64(3), s.missingFrom(&want), "1, 64 and 500 missing; 130 there")
	assert.Zero(t, want.missingFrom(&s))
}

func TestSoak_TinyLosesNothingAndSamplesTheHub(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "report.json")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"soak", "-users", "10", "-rooms", "3", "-rate", "40", "-churn", "3", "-offline", "300ms",
		"-duration", "6s", "-sample", "500ms", "-drain", "10s", "-progress", "1s", "-timeout", "45s", "-json", path}, &stdout, &stderr)
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	assert.Contains(t, stdout.String(), "#### soak over time", "the samples as a Markdown table")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var rep soakReport
	require.NoError(t, json.Unmarshal(b, &rep))
	require.Len(t, rep.Runs, 1)
	r := rep.Runs[0]
	require.Empty(t, r.Errors)
	assert.Equal(t, "bolt", r.Params["store"])
	assert.Positive(t, metric(t, r, "receipted"))
	assert.Positive(t, metric(t, r, "direct_delivered"))
	assert.Positive(t, metric(t, r, "room_deliveries"))
	assert.Zero(t, metric(t, r, "lost"))
	assert.Zero(t, metric(t, r, "strays"))
	assert.Positive(t, metric(t, r, "churn_closed")+metric(t, r, "churn_cut"), "users came and went")
	metric(t, r, "levels_off")
	metric(t, r, "hub_fds_last_slope_per_min")
	require.GreaterOrEqual(t, len(rep.Samples), 8, "a sample at the start, every 500 ms for 6 s, and after the drain")
	for _, sm := range rep.Samples {
		assert.Positive(t, sm.HubRSS, "sample at %.1f s", sm.T)
		assert.Positive(t, sm.HubAnon, "sample at %.1f s", sm.T)
		assert.Positive(t, sm.Goroutines, "sample at %.1f s", sm.T)
		assert.Greater(t, sm.FDs, 3, "sample at %.1f s: the listener, the bbolt file, the connections", sm.T)
	}
	last := rep.Samples[len(rep.Samples)-1]
	assert.Equal(t, metric(t, r, "receipted"), float64(last.Receipted))
}

func TestLevelOff_FlagsGrowthInTheLastThird(t *testing.T) {
	flat, growing := newRun("flat"), newRun("growing")
	var fs, gs []soakSample
	for i := range 31 {
		s := soakSample{T: float64(i * 10), HubRSS: 20, HubAnon: 10, HeapInuse: 5, Goroutines: 10, FDs: 30}
		fs = append(fs, s)
		s.FDs = 30 + 5*i // a descriptor leak
		gs = append(gs, s)
	}
	levelOff(flat, fs)
	levelOff(growing, gs)
	assert.Equal(t, 1.0, metric(t, flat, "levels_off"))
	assert.Equal(t, 0.0, metric(t, growing, "levels_off"))
	assert.InDelta(t, 30.0, metric(t, growing, "hub_fds_last_slope_per_min"), 1e-6, "5 per 10 s")
	assert.Contains(t, growing.Notes[0], "hub_fds")
}

// TestDirectFloor_ForwardsToEveryConnectionAndReceipts checks the direct
// yardstick on its own: a message reaches every connection of its
// recipient with the sender stamped, the sender gets a receipt with its
// cid, and a message to a user who is not connected is receipted and
// dropped. With -floor-direct-store it also stores each message, with
// the store's seq, and the deliveries leave the recipient's pending queue
// once written.
func TestDirectFloor_ForwardsToEveryConnectionAndReceipts(t *testing.T) {
	t.Parallel()
	for _, stored := range []bool{false, true} {
		t.Run(fmt.Sprintf("stored=%v", stored), func(t *testing.T) {
			t.Parallel()
			testDirectFloor(t, stored)
		})
	}
}

func testDirectFloor(t *testing.T, stored bool) {
	floor := newDirectFloor(nil, stored)
	srv := httptest.NewServer(floor)
	defer srv.Close()
	base := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws?token="
	dial := func(user string) *websocket.Conn {
		ws, _, err := websocket.DefaultDialer.Dial(base+user, nil)
		require.NoError(t, err)
		t.Cleanup(func() { ws.Close() })
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		return ws
	}
	read := func(ws *websocket.Conn) map[string]any {
		_, p, err := ws.ReadMessage()
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(p, &m))
		return m
	}
	a, b1, b2 := dial("a"), dial("b"), dial("b")
	// The server registers a connection after its handshake's answer:
	// wait for all three, or the message could go out before b2 is known.
	require.Eventually(t, func() bool {
		floor.mu.RLock()
		defer floor.mu.RUnlock()
		return len(floor.users["a"]) == 1 && len(floor.users["b"]) == 2
	}, 5*time.Second, time.Millisecond, "the floor server registered the connections")
	require.NoError(t, a.WriteMessage(websocket.TextMessage, []byte(`{"cmd":10,"dstid":"b","cid":"7","content":"hi"}`)))
	r := read(a)
	assert.Equal(t, 15.0, r["cmd"])
	assert.Equal(t, "7", r["cid"])
	assert.NotEmpty(t, r["id"])
	for _, b := range []*websocket.Conn{b1, b2} {
		m := read(b)
		assert.Equal(t, 10.0, m["cmd"])
		assert.Equal(t, "a", m["userid"])
		assert.Equal(t, "b", m["dstid"])
		assert.Equal(t, "hi", m["content"])
		assert.Equal(t, r["id"], m["id"], "the receipt names the delivered message")
		assert.Nil(t, m["cid"], "the sender's cid stays with the sender")
	}
	require.NoError(t, a.WriteMessage(websocket.TextMessage, []byte(`{"cmd":10,"dstid":"nobody","cid":"8","content":"x"}`)))
	r8 := read(a)
	assert.Equal(t, 15.0, r8["cmd"])
	assert.Equal(t, "8", r8["cid"])
	if !stored {
		return
	}
	ctx := context.Background()
	page, err := floor.store.History(ctx, store.DirectConv("a", "b"), store.Query{Limit: 10})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Equal(t, r["id"], page.Items[0].ID)
	assert.Equal(t, 1.0, r["seq"], "the store's seq")
	require.Eventually(t, func() bool {
		p, err := floor.store.Pending(ctx, "b")
		return err == nil && len(p) == 0
	}, 5*time.Second, time.Millisecond, "written, the delivery left b's pending queue")
	p, err := floor.store.Pending(ctx, "nobody")
	require.NoError(t, err)
	require.Len(t, p, 1, "a message to a user not connected stays queued")
	assert.Equal(t, r8["id"], p[0].ID)
}

// -progress 0 turns the progress line off instead of panicking in
// time.NewTicker.
func TestProgress_ZeroIntervalPrintsNothing(t *testing.T) {
	var out bytes.Buffer
	p := startProgress(&out, 0, "x", func() string { return "line" })
	time.Sleep(10 * time.Millisecond)
	p.end()
	assert.Empty(t, out.String())
}

// A soak run that lost a message says which, when it was posted and
// receipted, what its recipient's client was doing, and when the
// recipient's and the sender's sockets were dialed.
func TestSoak_LostDetailNamesTheMessageAndItsRecipient(t *testing.T) {
	now := time.Now()
	k := &soak{msgs: map[string]*soakMsg{
		"k1#7": {to: "k2", receipted: true, posted: now.Add(-4 * time.Second), at: now.Add(-3 * time.Second)},
		"k1#8": {to: "k2", receipted: true, at: now, delivered: 1},
		"k1#9": {receipted: true, at: now}, // a room message
	}}
	k.users = []*soakUser{{name: "k1", dials: []time.Time{now.Add(-6 * time.Second)}}, {name: "k2", dials: []time.Time{now.Add(-5 * time.Second), now.Add(-time.Second)}}}
	d := k.lostDetail(5)
	assert.Regexp(t, `^k1#7 to k2 posted 4\.\d\d s and receipted 3\.\d\d s before the end \(its client away; `+
		`its sockets dialed 5\.\d\d, 1\.\d\d s before the end; the sender's 6\.\d\d\)$`, d)
}

// The slow deliveries of a run are summarized: how many, on how many
// connections and which had most, over which span, and the slowest.
func TestSlowLog_Summary(t *testing.T) {
	var l slowLog
	assert.Empty(t, l.summary(), "nothing slow: no note")
	base := time.Now().UnixNano()
	l.add(base, 5*time.Millisecond, 1) // under slowLatency: not kept
	l.add(base, 25*time.Millisecond, 3)
	l.add(base+int64(2*time.Second), 130*time.Millisecond, 3)
	l.add(base+int64(time.Second), 40*time.Millisecond, 7)
	assert.Equal(t, "3 deliveries over 20ms (0 not kept) on 2 connections (most on connection 3: 2), "+
		"arriving over 2s; the slowest 130ms on connection 3", l.summary())
}

// direct -deliveries writes one line per delivery, in arrival order, a
// file per run when there are several.
func TestDirect_DeliveriesFile(t *testing.T) {
	t.Parallel()
	base := filepath.Join(t.TempDir(), "d")
	rep := runTool(t, "direct", "-store", "mem,floor", "-pairs", "2", "-rate", "20", "-duration", "500ms", "-deliveries", base)
	require.Len(t, rep.Runs, 2)
	for _, r := range rep.Runs {
		path := r.Params["deliveries"]
		require.NotEmpty(t, path, r.Name)
		assert.True(t, strings.HasPrefix(path, base+"."), "%s: %s", r.Name, path)
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		assert.Equal(t, int(metric(t, r, "messages_delivered")), len(lines), r.Name)
		var last int64
		for _, l := range lines {
			var at, lat int64
			var conn int
			_, err := fmt.Sscanf(l, "%d %d %d", &at, &lat, &conn)
			require.NoError(t, err, l)
			assert.GreaterOrEqual(t, at, last, "arrival order")
			assert.Positive(t, lat)
			assert.True(t, conn >= 0 && conn < 4, "connection %d of 4", conn)
			last = at
		}
	}
}
