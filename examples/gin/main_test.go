package main_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/internal/redistest"
)

// binary is the example built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wshub-gin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "gin-example")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

const timeout = 10 * time.Second

// process is one run of the example.
type process struct {
	cmd  *exec.Cmd
	addr string        // host:port it listens on
	done chan struct{} // closed when the process exited
	err  error         // exit error, set before done is closed
}

// start runs the example with args (plus -addr 127.0.0.1:0) and waits for
// its "listening on" line.
func start(t *testing.T, args ...string) *process {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	p := &process{cmd: cmd, done: make(chan struct{})}
	lines := make(chan string, 1) // written once by the scanner below
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	select {
	case line := <-lines:
		addr, ok := strings.CutPrefix(line, "listening on http://")
		require.True(t, ok, "first line %q", line)
		p.addr = addr
	case <-time.After(timeout):
		t.Fatal("no listening line")
	}
	return p
}

// stop sends SIGINT and returns the exit error.
func (p *process) stop(t *testing.T) error {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatal("no exit after SIGINT")
		return nil
	}
}

// dial opens a WebSocket to path with the request header h and reads the
// welcome frame.
func (p *process) dial(t *testing.T, path string, h http.Header) (*websocket.Conn, *wshub.Frame) {
	t.Helper()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Origin", "http://"+p.addr)
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+p.addr+path, h)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c, recv(t, c)
}

func recv(t *testing.T, c *websocket.Conn) *wshub.Frame {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(timeout)))
	_, b, err := c.ReadMessage()
	require.NoError(t, err)
	f, err := wshub.DecodeFrame(b)
	require.NoError(t, err)
	return f
}

// TestGin_AuthenticatesByHeaderQueryAndCookie: the gin middleware takes
// the token from a Bearer header, the query or the wshub_token cookie;
// without one the upgrade is refused with 401.
func TestGin_AuthenticatesByHeaderQueryAndCookie(t *testing.T) {
	p := start(t, "-store", "mem")

	resp, err := http.Get("http://" + p.addr + "/ws")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	_, resp, err = websocket.DefaultDialer.Dial("ws://"+p.addr+"/ws", nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	for _, tc := range []struct {
		name, path string
		header     http.Header
		user       string
	}{
		{"bearer", "/ws", http.Header{"Authorization": {"Bearer alice"}}, "alice"},
		{"cookie", "/ws", http.Header{"Cookie": {"wshub_token=bob"}}, "bob"},
		{"query", "/ws?token=carol", nil, "carol"},
		{"query beats cookie", "/ws?token=dave", http.Header{"Cookie": {"wshub_token=bob"}}, "dave"},
		{"reference article", "/chat?authToken=42", nil, "42"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, welcome := p.dial(t, tc.path, tc.header)
			assert.Equal(t, wshub.CmdWelcome, welcome.Cmd)
			assert.Equal(t, tc.user, welcome.UserID)
		})
	}
}

// TestGin_ServesDemoAndRoutesMessages: the demo page and wshub.js are
// served, and two users authenticated by cookie exchange a message.
func TestGin_ServesDemoAndRoutesMessages(t *testing.T) {
	p := start(t, "-store", "mem")
	for path, want := range map[string]string{
		"/":         `<script type="module" src="/app.js">`,
		"/wshub.js": `export class WSHubClient`,
	} {
		resp, err := http.Get("http://" + p.addr + path)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Contains(t, string(b), want, path)
	}

	alice, _ := p.dial(t, "/ws?ack=1", http.Header{"Cookie": {"wshub_token=alice"}})
	bob, _ := p.dial(t, "/ws", http.Header{"Cookie": {"wshub_token=bob"}})
	require.NoError(t, alice.WriteJSON(wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "hi bob", CID: "c1"}))
	receipt := recv(t, alice)
	assert.Equal(t, wshub.CmdReceipt, receipt.Cmd)
	assert.Equal(t, "c1", receipt.CID)
	got := recv(t, bob)
	assert.Equal(t, wshub.CmdSingle, got.Cmd)
	assert.Equal(t, "alice", got.UserID)
	assert.Equal(t, "hi bob", got.Content)
	assert.Equal(t, receipt.ID, got.ID)
}

// TestGin_SIGINTClosesWith1001AndBoltKeepsMessages: SIGINT closes every
// connection with 1001 and exits 0; a message queued for an offline user
// in the bbolt file is delivered after a restart.
func TestGin_SIGINTClosesWith1001AndBoltKeepsMessages(t *testing.T) {
	db := filepath.Join(t.TempDir(), "wshub.db")
	p := start(t, "-store", "bolt", "-db", db)
	alice, _ := p.dial(t, "/ws", http.Header{"Authorization": {"Bearer alice"}})
	require.NoError(t, alice.WriteJSON(wshub.Frame{Cmd: wshub.CmdSingle, DstID: "carol", Content: "while you were away", CID: "c1"}))
	assert.Equal(t, wshub.CmdReceipt, recv(t, alice).Cmd)

	// Read while the server shuts down, so that the close handshake is
	// answered (gorilla answers a close frame inside ReadMessage).
	closed := make(chan error, 1) // written once by the reader
	go func() {
		_ = alice.SetReadDeadline(time.Now().Add(timeout))
		_, _, err := alice.ReadMessage()
		_ = alice.Close() // as a browser does: the hub stops waiting for us
		closed <- err
	}()
	require.NoError(t, p.stop(t), "exit status 0")
	err := <-closed
	var ce *websocket.CloseError
	require.True(t, errors.As(err, &ce), "close frame, got %v", err)
	assert.Equal(t, websocket.CloseGoingAway, ce.Code)

	p = start(t, "-store", "bolt", "-db", db)
	carol, welcome := p.dial(t, "/ws", http.Header{"Authorization": {"Bearer carol"}})
	assert.Equal(t, "carol", welcome.UserID)
	got := recv(t, carol)
	assert.Equal(t, "while you were away", got.Content)
	assert.Equal(t, "alice", got.UserID)
}

// TestGin_BadFlags: an unknown store is refused with a non-zero exit.
func TestGin_BadFlags(t *testing.T) {
	out, err := exec.Command(binary, "-store", "etcd").CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "exit error, got %v", err)
	assert.NotEqual(t, 0, ee.ExitCode())
	assert.Contains(t, string(out), "want mem, bolt or redis")
}

// get requests path at addr and returns the status and the body.
func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestGin_HealthAndReadiness: /healthz and /readyz answer 200 while the
// example serves (a memory store is ready at once), and neither needs a
// token.
func TestGin_HealthAndReadiness(t *testing.T) {
	p := start(t, "-store", "mem")
	for path, want := range map[string]string{"/healthz": "ok\n", "/readyz": "ready\n"} {
		status, body := get(t, p.addr, path)
		assert.Equal(t, http.StatusOK, status, path)
		assert.Equal(t, want, body, path)
	}
}

// TestGin_WaitsForRedis: started while Redis is down, the example serves
// /healthz (200) and /readyz (503) and keeps trying; it prints its
// listening line only once Redis is up and the hub accepts connections.
func TestGin_WaitsForRedis(t *testing.T) {
	rs := redistest.Start(t)
	rs.Stop()
	port, err := redistest.FreePort()
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(binary, "-addr", addr, "-store", "redis", "-redis", rs.Addr)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	lines := make(chan string, 10) // closed by the reader at EOF
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}, timeout, 20*time.Millisecond, "/healthz")
	status, body := get(t, addr, "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Contains(t, body, "store feed not subscribed")
	select {
	case l, ok := <-lines:
		t.Fatalf("printed %q (open %v) while Redis is down", l, ok)
	default:
	}

	require.NoError(t, rs.Restart())
	select {
	case l := <-lines:
		assert.Equal(t, "listening on http://"+addr, l)
	case <-time.After(timeout):
		t.Fatal("no listening line once Redis is up")
	}
	status, _ = get(t, addr, "/readyz")
	assert.Equal(t, http.StatusOK, status)
	p := &process{addr: addr}
	_, welcome := p.dial(t, "/ws?token=alice", nil)
	assert.Equal(t, "alice", welcome.UserID)
}
