package boltstore_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/store/boltstore"
)

// childEnv names the bbolt file a child process started by startHub
// serves; modeEnv names its options in crashModes.
const (
	childEnv = "WSHUB_BOLTSTORE_CRASH_CHILD"
	modeEnv  = "WSHUB_BOLTSTORE_CRASH_MODE"
)

// crashModes are the options the crash test runs the hub with: the
// defaults; no checkpoint before the kill (everything comes back from the
// log); a checkpoint after every commit (the kill may land in one).
var crashModes = map[string]boltstore.Options{
	"Default":     {},
	"LogOnly":     {CheckpointEvery: 1 << 30, CheckpointInterval: time.Hour},
	"EveryCommit": {CheckpointEvery: 1},

	"BoundedLogOnly":     {MaxPendingPerSender: crashBound, CheckpointEvery: 1 << 30, CheckpointInterval: time.Hour},
	"BoundedEveryCommit": {MaxPendingPerSender: crashBound, CheckpointEvery: 1},
	"BoundedMixed":       {MaxPendingPerSender: crashBound, CheckpointEvery: 7},
}

// crashBound is MaxPendingPerSender of the Bounded crash modes.
const crashBound = 20

// TestCrash_ReceiptedMessagesSurviveSIGKILL: a hub process on a bbolt
// file receipts direct messages for an offline user and is killed with
// SIGKILL right after the last receipt; a new process on the same file
// delivers every one of them, in order, once.
func TestCrash_ReceiptedMessagesSurviveSIGKILL(t *testing.T) {
	for _, mode := range []string{"Default", "LogOnly", "EveryCommit"} {
		t.Run(mode, func(t *testing.T) { crashAndRecover(t, mode) })
	}
}

func crashAndRecover(t *testing.T, mode string) {
	const n = 200
	db := filepath.Join(t.TempDir(), "hub.db")

	first := startHub(t, db, mode)
	alice := dial(t, first.addr, "alice")
	type receipt struct{ id, content string }
	var receipts []receipt
	for i := range n {
		content := fmt.Sprintf("message %03d", i)
		cid := fmt.Sprintf("c-%03d", i)
		require.NoError(t, alice.WriteJSON(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: content, CID: cid}))
		for {
			f := readFrame(t, alice)
			if f.Cmd != wshub.CmdReceipt {
				continue // the welcome
			}
			require.Equal(t, cid, f.CID, "receipts come in order")
			require.NotEmpty(t, f.ID)
			receipts = append(receipts, receipt{f.ID, content})
			break
		}
	}
	first.kill(t) // at once after the last receipt

	second := startHub(t, db, mode)
	bob := dial(t, second.addr, "bob")
	var got []*wshub.Frame
	for len(got) < n {
		f := readFrame(t, bob)
		if f.Cmd == wshub.CmdSingle {
			got = append(got, f)
		}
	}
	for i, f := range got {
		assert.Equal(t, receipts[i].id, f.ID, "message %d: id", i)
		assert.Equal(t, receipts[i].content, f.Content, "message %d: content", i)
		assert.Equal(t, "alice", f.UserID, "message %d: sender", i)
		if i > 0 {
			assert.Greater(t, f.Seq, got[i-1].Seq, "message %d: seq order", i)
		}
	}
	// Once: nothing follows the 200.
	require.NoError(t, bob.SetReadDeadline(time.Now().Add(500*time.Millisecond)))
	for {
		var f wshub.Frame
		err := bob.ReadJSON(&f)
		if err != nil {
			var ne net.Error
			require.ErrorAs(t, err, &ne, "only a timeout ends the wait")
			require.True(t, ne.Timeout())
			break
		}
		assert.NotEqual(t, wshub.CmdSingle, f.Cmd, "message %s delivered twice", f.ID)
	}
	second.kill(t)
}

// TestCrash_PendingBoundsSurviveSIGKILL: the counts behind the pending
// bounds come back from the file after SIGKILL, from the index, the log or
// both: a queue that was full for a sender is still full, an ack made
// before the kill still made room, and the file's queues agree with their
// counts.
func TestCrash_PendingBoundsSurviveSIGKILL(t *testing.T) {
	for _, mode := range []string{"BoundedLogOnly", "BoundedEveryCommit", "BoundedMixed"} {
		t.Run(mode, func(t *testing.T) { crashWithBounds(t, mode) })
	}
}

func crashWithBounds(t *testing.T, mode string) {
	db := filepath.Join(t.TempDir(), "hub.db")
	sent := 0
	// send makes alice send messages to bob until one is refused and
	// returns how many were receipted; the refusal is error 507 with the
	// frame's cid.
	send := func(alice *websocket.Conn) int {
		t.Helper()
		for n := 0; ; n++ {
			sent++
			cid := fmt.Sprintf("c-%03d", sent)
			require.NoError(t, alice.WriteJSON(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: cid, CID: cid}))
			f := readFrame(t, alice)
			for f.Cmd == wshub.CmdWelcome {
				f = readFrame(t, alice)
			}
			require.Equal(t, cid, f.CID)
			if f.Cmd == wshub.CmdError {
				require.Equal(t, 507, f.Code, "refused: %+v", f)
				return n
			}
			require.Equal(t, wshub.CmdReceipt, f.Cmd, "%+v", f)
		}
	}

	first := startHub(t, db, mode)
	require.Equal(t, crashBound, send(dial(t, first.addr, "alice")), "alice fills her share")
	first.kill(t)

	second := startHub(t, db, mode)
	require.Equal(t, 0, send(dial(t, second.addr, "alice")), "still full after the kill")
	bob := dial(t, second.addr, "bob")
	var queued []string
	for len(queued) < crashBound {
		if f := readFrame(t, bob); f.Cmd == wshub.CmdSingle {
			queued = append(queued, f.ID)
		}
	}
	require.NoError(t, bob.WriteJSON(&wshub.Frame{Cmd: wshub.CmdAck, IDs: queued[:5]}))
	require.NoError(t, bob.WriteJSON(&wshub.Frame{Cmd: wshub.CmdPing}))
	for f := readFrame(t, bob); f.Cmd != wshub.CmdPong; f = readFrame(t, bob) {
		// the ack was handled before the ping
	}
	require.Equal(t, 5, send(dial(t, second.addr, "alice")), "the ack made room for 5")
	second.kill(t)
	require.NoError(t, boltstore.CheckQueues(db), "the file's queues and counts after the kill")

	third := startHub(t, db, mode)
	require.Equal(t, 0, send(dial(t, third.addr, "alice")), "full again after the second kill")
	bob = dial(t, third.addr, "bob")
	var got []string
	for len(got) < crashBound {
		if f := readFrame(t, bob); f.Cmd == wshub.CmdSingle {
			got = append(got, f.ID)
		}
	}
	assert.Equal(t, queued[5:], got[:crashBound-5], "the unacked ones, in order")
	third.kill(t)
	require.NoError(t, boltstore.CheckQueues(db))
}

// TestHelperHubProcess is the child of TestCrash_...: with childEnv set it
// serves a hub on that bbolt file at 127.0.0.1:0, prints "ADDR host:port"
// and runs until it is killed. Without it, it does nothing.
func TestHelperHubProcess(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		return
	}
	opts, ok := crashModes[os.Getenv(modeEnv)]
	if !ok {
		fmt.Fprintln(os.Stderr, "unknown mode", os.Getenv(modeEnv))
		os.Exit(2)
	}
	st, err := boltstore.Open(path, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	h, err := wshub.New(wshub.Options{
		Authenticate: wshub.DevAuthenticate,
		Store:        st,
		CheckOrigin:  func(*http.Request) bool { return true },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "hub:", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", h)
	fmt.Printf("ADDR %s\n", ln.Addr())
	err = (&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
	fmt.Fprintln(os.Stderr, "serve:", err)
	os.Exit(2)
}

type child struct {
	cmd    *exec.Cmd
	addr   string
	stderr *lockedBuffer
	done   chan struct{} // closed when the process has exited
}

// startHub runs this test binary as a hub process on the bbolt file db,
// with the options of crashModes[mode].
func startHub(t *testing.T, db, mode string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHubProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+db, modeEnv+"="+mode)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	c := &child{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = c.stderr
	require.NoError(t, cmd.Start())
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
		if t.Failed() {
			t.Logf("child stderr:\n%s", c.stderr)
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				addr <- a
			}
		}
	}()
	select {
	case c.addr = <-addr:
	case <-c.done:
		t.Fatalf("child exited before serving: %s", c.stderr)
	case <-time.After(10 * time.Second):
		t.Fatal("child did not start within 10 s")
	}
	return c
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, c.cmd.Process.Kill())
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("child did not die within 10 s")
	}
}

func dial(t *testing.T, addr, user string) *websocket.Conn {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?ack=1&token="+user, nil)
	require.NoError(t, err)
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func readFrame(t *testing.T, conn *websocket.Conn) *wshub.Frame {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, b, err := conn.ReadMessage()
	require.NoError(t, err)
	f, err := wshub.DecodeFrame(b)
	require.NoError(t, err)
	return f
}

// lockedBuffer is a bytes.Buffer safe for the writer (exec's copying
// goroutine) and a reader.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestOpen_FileHeldByAnotherProcess: a hub process holds the file; Open
// in this one fails after OpenTimeout with ErrLocked naming the file.
func TestOpen_FileHeldByAnotherProcess(t *testing.T) {
	db := filepath.Join(t.TempDir(), "hub.db")
	other := startHub(t, db, "Default")

	start := time.Now()
	_, err := boltstore.Open(db, boltstore.Options{OpenTimeout: 300 * time.Millisecond})
	require.ErrorIs(t, err, boltstore.ErrLocked)
	assert.Contains(t, err.Error(), db)
	assert.Less(t, time.Since(start), 10*time.Second, "does not hang")

	other.kill(t)
	s, err := boltstore.Open(db, boltstore.Options{})
	require.NoError(t, err, "the lock goes with the process")
	require.NoError(t, s.Close())
}
