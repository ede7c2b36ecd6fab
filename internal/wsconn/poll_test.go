//go:build linux

package wsconn

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// blockingHandler blocks in Message("block") until release is closed,
// after telling its connection (Conn.Blocking), panics in
// Message("panic"), and reports every other message on got.
type blockingHandler struct {
	conn    atomic.Pointer[Conn]
	entered chan struct{}
	release chan struct{}
	got     chan string
	closed  chan struct{}
	wg      *sync.WaitGroup // counts the connection while it lives

	mu      sync.Mutex
	written []string // the tags reported to Written, in order
}

func (h *blockingHandler) Message(p []byte) {
	if string(p) == "panic" {
		panic("a bug in the handler")
	}
	if string(p) == "block" {
		h.conn.Load().Blocking()
		close(h.entered)
		<-h.release
	}
	if string(p) == "hold" {
		time.Sleep(100 * time.Millisecond) // busy, without Blocking
	}
	h.got <- string(p)
}
func (h *blockingHandler) Written(tags []string) {
	h.mu.Lock()
	h.written = append(h.written, tags...)
	h.mu.Unlock()
}
func (h *blockingHandler) Closed(error) { close(h.closed); h.wg.Done() }

// pollServer serves a polled transport's connections, each with a
// blockingHandler of its own; dial connects a client and returns it with
// the server side's handler (its conn set). The cleanup closes the
// clients and the transport once every connection ended.
func pollServer(t *testing.T) (tr *Transport, dial func() (*websocket.Conn, *blockingHandler)) {
	return pollServerWith(t, func(*Config) {})
}

// pollServerWith is pollServer with the transport's Config changed by
// tune first.
func pollServerWith(t *testing.T, tune func(*Config)) (tr *Transport, dial func() (*websocket.Conn, *blockingHandler)) {
	t.Helper()
	var wg sync.WaitGroup
	cfg := Config{
		ReadLimit: 1 << 20, FrameTimeout: time.Minute, WriteTimeout: time.Minute,
		PingInterval: time.Hour, PongTimeout: time.Hour,
		SendQueue: 16, SendQueueBytes: 1 << 20,
		Goroutines: &wg, Logger: slog.New(slog.DiscardHandler),
		Pollers: 1, // the tests of one loop's batches
	}
	tune(&cfg)
	tr = New(cfg)
	if len(tr.polls) == 0 {
		t.Fatal("no poller on Linux")
	}
	handlers := make(chan *blockingHandler, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := &blockingHandler{entered: make(chan struct{}), release: make(chan struct{}),
			got: make(chan string, 64), closed: make(chan struct{}), wg: &wg}
		c, err := tr.Upgrade(w, r, h, false, nil)
		if err != nil {
			t.Error(err)
			return
		}
		wg.Add(1)
		h.conn.Store(c)
		c.Serve()
		handlers <- h // after Serve: the connection is registered with its poller
	}))
	var clients []*websocket.Conn
	t.Cleanup(func() {
		for _, ws := range clients {
			ws.Close()
		}
		srv.Close()
		wg.Wait()
		tr.Close()
	})
	return tr, func() (*websocket.Conn, *blockingHandler) {
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, ws)
		return ws, <-handlers
	}
}

// expectGot fails the test unless h handles want within 10 s.
func expectGot(t *testing.T, h *blockingHandler, want string) {
	t.Helper()
	select {
	case got := <-h.got:
		if got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%q not handled within 10s", want)
	}
}

// send writes msg to ws as a text frame.
func send(t *testing.T, ws *websocket.Conn, msg string) {
	t.Helper()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// pollerNodes returns how many connections each poller has registered.
func pollerNodes(tr *Transport) []int {
	counts := make([]int, len(tr.polls))
	for i, p := range tr.polls {
		p.mu.Lock()
		counts[i] = len(p.nodes)
		p.mu.Unlock()
	}
	return counts
}

// The connections are given to the pollers in turn, each poller reads its
// own, and a connection that ends leaves its own poller (found by its
// registration's id).
func TestPoller_ConnectionsAreSpreadOverThePollers(t *testing.T) {
	tr, dial := pollServerWith(t, func(c *Config) { c.Pollers = 3 })
	type client struct {
		ws *websocket.Conn
		h  *blockingHandler
	}
	var cs []client
	for range 6 {
		ws, h := dial()
		cs = append(cs, client{ws, h})
	}
	if got := pollerNodes(tr); fmt.Sprint(got) != "[2 2 2]" {
		t.Fatalf("connections per poller %v, want [2 2 2]", got)
	}
	for i, c := range cs {
		send(t, c.ws, fmt.Sprint("hello ", i))
		expectGot(t, c.h, fmt.Sprint("hello ", i))
	}
	for _, c := range cs {
		c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		<-c.h.closed
	}
	if got := pollerNodes(tr); fmt.Sprint(got) != "[0 0 0]" {
		t.Fatalf("connections per poller after they ended %v, want [0 0 0]", got)
	}
}

// A frame that arrives while a worker is still handling the previous one
// raises an event that only marks the connection (edge-triggered socket):
// the worker reads again before it stops, so the frame is not left in the
// socket waiting for an event that will not come.
func TestPoller_FrameArrivingDuringARead(t *testing.T) {
	_, dial := pollServer(t)
	ws, h := dial()
	c := h.conn.Load()
	var release sync.Once // on every path: a handler left blocked would hold its reader
	defer release.Do(func() { close(h.release) })
	send(t, ws, "block")
	<-h.entered
	send(t, ws, "second")
	// The second frame's event came while the worker is busy.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		again := c.again
		c.mu.Unlock()
		if again {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the event of the second frame did not mark the busy connection")
		}
		time.Sleep(time.Millisecond)
	}
	release.Do(func() { close(h.release) })
	expectGot(t, h, "block")
	expectGot(t, h, "second")
	ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	<-h.closed
}

// The poller reads the last ready socket of each batch itself, on its own
// goroutine: frames of one connection, one at a time, start no worker.
func TestPoller_ReadsTheLastReadySocketItself(t *testing.T) {
	tr, dial := pollServer(t)
	ws, h := dial()
	for i := range 20 {
		msg := fmt.Sprint("frame ", i)
		send(t, ws, msg)
		expectGot(t, h, msg)
	}
	if n := tr.work.live.Load(); n != 0 {
		t.Errorf("%d workers started for frames the poller could read itself", n)
	}
}

// The sockets that became ready together are read by the poller itself,
// one after the other, within its budget: frames that came on three
// connections while it was busy with a fourth start no worker. Over its
// budget, it hands the rest of the batch to workers.
func TestPoller_ReadsSeveralReadySocketsItselfWithinItsBudget(t *testing.T) {
	for _, tt := range []struct {
		name    string
		budget  time.Duration
		workers bool
	}{
		{"within", time.Minute, false}, // -race and a loaded machine: never over it
		{"over", 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr, dial := pollServer(t)
			tr.polls[0].budget.Store(int64(tt.budget))
			a, ha := dial()
			others := make([]*websocket.Conn, 3)
			hs := make([]*blockingHandler, 3)
			for i := range others {
				others[i], hs[i] = dial()
			}
			send(t, a, "hold")
			time.Sleep(20 * time.Millisecond) // the poller is in a's read
			for i, ws := range others {
				send(t, ws, fmt.Sprint("frame ", i))
			}
			expectGot(t, ha, "hold")
			for i, h := range hs {
				expectGot(t, h, fmt.Sprint("frame ", i))
			}
			if n := tr.work.live.Load(); (n > 0) != tt.workers {
				t.Errorf("%d workers started; want some: %v", n, tt.workers)
			}
		})
	}
}

// A read that waits (its handler called Conn.Blocking) hands polling on:
// while it waits, another connection's frames are read and handled.
func TestPoller_AWaitingReadHandsPollingOn(t *testing.T) {
	_, dial := pollServer(t)
	a, ha := dial()
	b, hb := dial()
	defer close(ha.release)
	send(t, a, "block")
	select {
	case <-ha.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking frame was not handled within 10s")
	}
	for i := range 5 {
		msg := fmt.Sprint("hello ", i)
		send(t, b, msg)
		expectGot(t, hb, msg)
	}
}

// A handler that panics on the poller's goroutine ends its connection
// (ErrReadPanic), whose socket then lingers for the peer's close (up to
// closeGrace, 2 s: this client never closes); the poller goes on at once:
// another connection's frames are read meanwhile, before the first
// connection's end is reported.
func TestPoller_APanickingReadEndsOnlyItsConnection(t *testing.T) {
	_, dial := pollServer(t)
	a, ha := dial()
	b, hb := dial()
	for round := range 2 {
		send(t, a, "panic")
		for i := range 3 {
			msg := fmt.Sprint("round ", round, " frame ", i)
			send(t, b, msg)
			expectGot(t, hb, msg)
		}
		select {
		case <-ha.closed:
			t.Fatal("the other connection's frames were read only after the lingering one ended")
		default:
		}
		select {
		case <-ha.closed:
		case <-time.After(10 * time.Second):
			t.Fatal("the connection whose handler panicked did not end within 10s")
		}
		a, ha = dial()
	}
}

// A client that sends pings and reads nothing fills its socket with pongs
// until the pong's write waits (up to WriteTimeout): the connection hands
// the poller on before that write, so other connections are still read.
func TestPoller_AStuckPongDoesNotHoldUpOthers(t *testing.T) {
	_, dial := pollServer(t)
	a, _ := dial()
	b, hb := dial()
	// a's pings until the server stops reading them: its reader is then
	// stuck in a pong's write (WriteTimeout is a minute here).
	payload := strings.Repeat("p", 125)
	stuck := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		err := a.WriteControl(websocket.PingMessage, []byte(payload), time.Now().Add(time.Second))
		if err != nil {
			stuck = true // our socket is full too: the server stopped reading a
			break
		}
	}
	if !stuck {
		t.Fatal("the server kept reading pings for 30s without its pongs being read")
	}
	for i := range 3 {
		msg := fmt.Sprint("hello ", i)
		send(t, b, msg)
		expectGot(t, hb, msg)
	}
}
