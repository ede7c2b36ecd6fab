package main_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
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
)

// example is the built command, run as a child process like a user would.
type example struct {
	cmd    *exec.Cmd
	addr   string // host:port it printed
	scheme string // http, or https with -tls-cert
	out    *strings.Builder
}

func buildExample(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stdlib")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

func startExample(t *testing.T, bin string, args ...string) *example {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	e := &example{cmd: cmd, out: new(strings.Builder)}
	cmd.Stderr = e.out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		if s.Scan() {
			line <- s.Text()
		}
		close(line)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		rest, ok := strings.CutPrefix(l, "listening on ")
		u, err := url.Parse(rest)
		require.True(t, ok && err == nil && (u.Scheme == "http" || u.Scheme == "https"), "first line %q", l)
		e.addr, e.scheme = u.Host, u.Scheme
	case <-time.After(20 * time.Second):
		t.Fatalf("example did not print its address; stderr: %s", e.out)
	}
	return e
}

func dial(t *testing.T, addr, path, user string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+path+user, nil)
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	var f wshub.Frame
	require.NoError(t, ws.ReadJSON(&f))
	require.Equal(t, wshub.CmdWelcome, f.Cmd)
	return ws
}

func TestExample_ServesPageAndHubAndExitsCleanly(t *testing.T) {
	bin := buildExample(t)
	for _, storeKind := range []string{"mem", "bolt"} {
		t.Run(storeKind, func(t *testing.T) {
			e := startExample(t, bin, "-addr", "127.0.0.1:0", "-store", storeKind, "-db", filepath.Join(t.TempDir(), "x.db"))

			resp, err := http.Get("http://" + e.addr + "/")
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Contains(t, strings.ToLower(string(body)), "<html")

			resp, err = http.Get("http://" + e.addr + "/ws")
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "no token: 401 before any upgrade")

			// The reference article's client: /chat?authToken=, numeric ids.
			alice := dial(t, e.addr, "/chat?authToken=", "1")
			bob := dial(t, e.addr, "/ws?token=", "2")
			require.NoError(t, alice.WriteMessage(websocket.TextMessage, []byte(`{"cmd":10,"dstid":2,"content":"hello"}`)))
			var m wshub.Frame
			require.NoError(t, bob.ReadJSON(&m))
			assert.Equal(t, "hello", m.Content)
			assert.Equal(t, "1", m.UserID)

			// /metrics: Prometheus text with the hub's counters (SPEC 6).
			resp, err = http.Get("http://" + e.addr + "/metrics")
			require.NoError(t, err)
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Contains(t, string(body), "# TYPE wshub_connections gauge\nwshub_connections 2\n")
			assert.Contains(t, string(body), "# TYPE wshub_messages_stored_total counter\nwshub_messages_stored_total 1\n")
			assert.Contains(t, string(body), `wshub_upgrades_refused_total{code="401"} 1`)

			require.NoError(t, e.cmd.Process.Signal(syscall.SIGTERM))
			for _, ws := range []*websocket.Conn{alice, bob} {
				ws.SetReadDeadline(time.Now().Add(10 * time.Second))
				var code int
				for code == 0 {
					if _, _, err := ws.ReadMessage(); err != nil {
						var ce *websocket.CloseError
						require.True(t, errors.As(err, &ce), "want a close frame, got %v", err)
						code = ce.Code
					}
				}
				assert.Equal(t, websocket.CloseGoingAway, code)
			}
			done := make(chan error, 1)
			go func() { done <- e.cmd.Wait() }()
			select {
			case err := <-done:
				assert.NoError(t, err, "exit status; stderr: %s", e.out)
			case <-time.After(15 * time.Second):
				t.Fatal("example did not exit after SIGTERM")
			}
		})
	}
}

func TestExample_DropsIncompleteRequests(t *testing.T) {
	e := startExample(t, buildExample(t), "-addr", "127.0.0.1:0", "-store", "mem")
	c, err := net.Dial("tcp", e.addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n")) // never finished
	require.NoError(t, err)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = io.ReadAll(c)
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "connection still open after ReadHeaderTimeout")
}

func TestExample_BadFlags(t *testing.T) {
	bin := buildExample(t)
	for _, args := range [][]string{{"-store", "nope"}, {"-store", "bolt", "-db", filepath.Join(os.DevNull, "x.db")}} {
		out, err := exec.Command(bin, append(args, "-addr", "127.0.0.1:0")...).CombinedOutput()
		assert.Error(t, err, "args %v", args)
		assert.NotEmpty(t, string(out))
	}
}
