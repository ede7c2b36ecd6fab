package main_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/internal/redistest"
)

// Two example processes on one Redis act as one hub: a message sent on
// one reaches a user connected to the other, live and when queued.
func TestExample_TwoProcessesOnOneRedis(t *testing.T) {
	rs := redistest.Start(t)
	bin := buildExample(t)
	a := startExample(t, bin, "-addr", "127.0.0.1:0", "-store", "redis", "-redis", rs.Addr)
	b := startExample(t, bin, "-addr", "127.0.0.1:0", "-store", "redis", "-redis", rs.Addr)

	alice := dialReady(t, a.addr, "alice")
	bob := dialReady(t, b.addr, "bob")

	require.NoError(t, alice.WriteJSON(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", CID: "1", Content: "across processes"}))
	assert.Equal(t, wshub.CmdReceipt, readFrame(t, alice).Cmd)
	m := readFrame(t, bob)
	assert.Equal(t, "across processes", m.Content)
	assert.Equal(t, "alice", m.UserID)

	// A room with members on both processes.
	for _, c := range []*websocket.Conn{alice, bob} {
		require.NoError(t, c.WriteJSON(&wshub.Frame{Cmd: wshub.CmdJoin, DstID: "lobby"}))
		require.Equal(t, wshub.CmdJoin, readFrame(t, c).Cmd)
	}
	require.NoError(t, bob.WriteJSON(&wshub.Frame{Cmd: wshub.CmdRoom, DstID: "lobby", CID: "2", Content: "hi room"}))
	assert.Equal(t, wshub.CmdReceipt, readFrame(t, bob).Cmd)
	r := readFrame(t, alice)
	assert.Equal(t, wshub.CmdRoom, r.Cmd)
	assert.Equal(t, "hi room", r.Content)

	// Queued for an offline user on one process, delivered by the other.
	require.NoError(t, alice.WriteJSON(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "carol", CID: "3", Content: "while you were out"}))
	assert.Equal(t, wshub.CmdReceipt, readFrame(t, alice).Cmd)
	carol := dialReady(t, b.addr, "carol")
	assert.Equal(t, "while you were out", readFrame(t, carol).Content)
}

// dialReady connects user, retrying while the hub answers 503 (its store
// feed is not subscribed yet), and reads the welcome frame.
func dialReady(t *testing.T, addr, user string) *websocket.Conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ws, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?token="+user, nil)
		if err == nil {
			t.Cleanup(func() { ws.Close() })
			require.Equal(t, wshub.CmdWelcome, readFrame(t, ws).Cmd)
			return ws
		}
		require.True(t, resp != nil && resp.StatusCode == 503 && time.Now().Before(deadline), "dial %s: %v", user, err)
		time.Sleep(50 * time.Millisecond)
	}
}

func readFrame(t *testing.T, ws *websocket.Conn) *wshub.Frame {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var f wshub.Frame
	require.NoError(t, ws.ReadJSON(&f))
	return &f
}

// lockedBuffer collects a process's output while tests read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder // guarded by mu
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// process is the example started on a free port of 127.0.0.1, without
// waiting for its listening line.
type process struct {
	cmd    *exec.Cmd
	addr   string        // the -addr it was given
	lines  chan string   // its standard output, line by line; closed at EOF
	stderr *lockedBuffer // its log
	exited chan struct{} // closed once it exited and err is set
	err    error         // cmd.Wait's result
}

// launch starts the example with args and -addr 127.0.0.1:<a free port>.
func launch(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	port, err := redistest.FreePort()
	require.NoError(t, err)
	p := &process{
		addr:   fmt.Sprintf("127.0.0.1:%d", port),
		lines:  make(chan string, 100),
		stderr: new(lockedBuffer),
		exited: make(chan struct{}),
	}
	p.cmd = exec.Command(bin, append(args, "-addr", p.addr)...)
	p.cmd.Dir = t.TempDir()
	p.cmd.Stderr = p.stderr
	stdout, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// get requests path and returns the status and the body.
func (p *process) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// eventually polls path until it answers status, and returns the body.
func (p *process) eventually(t *testing.T, path string, status int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + p.addr + path)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == status {
				return string(b)
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("the example exited (%v); log:\n%s", p.err, p.stderr)
		default:
		}
		require.True(t, time.Now().Before(deadline), "%s never answered %d; log:\n%s", path, status, p.stderr)
		time.Sleep(20 * time.Millisecond)
	}
}

// listening waits for the "listening on" line.
func (p *process) listening(t *testing.T) {
	t.Helper()
	select {
	case l := <-p.lines:
		assert.Equal(t, "listening on http://"+p.addr, l)
	case <-time.After(20 * time.Second):
		t.Fatalf("no listening line; log:\n%s", p.stderr)
	}
}

// subscribeFailures counts the logged failures to subscribe.
func (p *process) subscribeFailures() int {
	return strings.Count(p.stderr.String(), "cannot subscribe to the store feed")
}

// TestExample_StartsWhileRedisIsDown: with Redis down the example keeps
// running and retrying (logging each failure): /healthz answers 200,
// /readyz 503, and it does not print its listening line, which would
// send clients to a hub that refuses them. SIGTERM while it waits exits
// 0. Once Redis is up it prints the line, /readyz answers 200 and a
// client connects.
func TestExample_StartsWhileRedisIsDown(t *testing.T) {
	rs := redistest.Start(t)
	rs.Stop()
	bin := buildExample(t)
	waiting := launch(t, bin, "-store", "redis", "-redis", rs.Addr)
	stopped := launch(t, bin, "-store", "redis", "-redis", rs.Addr)
	for _, p := range []*process{waiting, stopped} {
		p.eventually(t, "/healthz", http.StatusOK)
		require.Eventually(t, func() bool { return p.subscribeFailures() >= 3 }, 20*time.Second, 20*time.Millisecond,
			"the hub retries, logging each failure; log:\n%s", p.stderr)
		status, body := p.get(t, "/readyz")
		assert.Equal(t, http.StatusServiceUnavailable, status)
		assert.Contains(t, body, "store feed not subscribed")
		select {
		case l, ok := <-p.lines:
			t.Fatalf("printed %q (open %v) before the hub was ready", l, ok)
		case <-p.exited:
			t.Fatalf("exited while Redis is down (%v); log:\n%s", p.err, p.stderr)
		default:
		}
	}

	require.NoError(t, stopped.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-stopped.exited:
		assert.NoError(t, stopped.err, "exit status 0; log:\n%s", stopped.stderr)
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}

	require.NoError(t, rs.Restart())
	waiting.listening(t)
	status, body := waiting.get(t, "/readyz")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "ready\n", body)
	dial(t, waiting.addr, "/ws?token=", "alice")
}

// TestExample_ReadyzFollowsRedis: /readyz answers 503 while Redis is down
// (the hub's connections are closed with 1013) and 200 once it is back,
// when clients connect again; /healthz answers 200 throughout.
func TestExample_ReadyzFollowsRedis(t *testing.T) {
	rs := redistest.Start(t)
	p := launch(t, buildExample(t), "-store", "redis", "-redis", rs.Addr)
	p.listening(t)
	status, _ := p.get(t, "/readyz")
	require.Equal(t, http.StatusOK, status)
	alice := dial(t, p.addr, "/ws?token=", "alice")

	rs.Stop()
	alice.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := alice.ReadMessage()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, wshub.CloseTryAgainLater, ce.Code)
	assert.Contains(t, p.eventually(t, "/readyz", http.StatusServiceUnavailable), "store feed not subscribed")
	status, _ = p.get(t, "/healthz")
	assert.Equal(t, http.StatusOK, status)

	require.NoError(t, rs.Restart())
	assert.Equal(t, "ready\n", p.eventually(t, "/readyz", http.StatusOK))
	dial(t, p.addr, "/ws?token=", "alice")
	select {
	case l := <-p.lines:
		t.Errorf("printed %q again", l)
	default:
	}
}
