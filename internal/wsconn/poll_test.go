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
// after telling its connection (Conn.Blocking), and reports every message
// on got.
type blockingHandler struct {
	conn    atomic.Pointer[Conn]
	entered chan struct{}
	release chan struct{}
	got     chan string
	closed  chan struct{}
	wg      *sync.WaitGroup // counts the connection while it lives
}

func (h *blockingHandler) Message(p []byte) {
	if string(p) == "block" {
		h.conn.Load().Blocking()
		close(h.entered)
		<-h.release
	}
	h.got <- string(p)
}
func (h *blockingHandler) Written([]string) {}
func (h *blockingHandler) Closed(error)     { close(h.closed); h.wg.Done() }

// A frame that arrives while a worker is still handling the previous one
// raises an event that only marks the connection (edge-triggered socket):
// the worker reads again before it stops, so the frame is not left in the
// socket waiting for an event that will not come.
func TestPoller_FrameArrivingDuringARead(t *testing.T) {
	var wg sync.WaitGroup
	tr := New(Config{
		ReadLimit: 1 << 20, FrameTimeout: time.Minute, WriteTimeout: time.Minute,
		PingInterval: time.Hour, PongTimeout: time.Hour,
		SendQueue: 16, SendQueueBytes: 1 << 20,
		Goroutines: &wg, Logger: slog.New(slog.DiscardHandler),
	})
	if tr.poll == nil {
		t.Fatal("no poller on Linux")
	}
	h := &blockingHandler{entered: make(chan struct{}), release: make(chan struct{}), got: make(chan string, 4), closed: make(chan struct{}), wg: &wg}
	conns := make(chan *Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := tr.Upgrade(w, r, h, false, nil)
		if err != nil {
			t.Error(err)
			return
		}
		wg.Add(1)
		h.conn.Store(c)
		conns <- c
		c.Serve()
	}))
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	c := <-conns
	var release sync.Once // on every path: a handler left blocked would hold the poller
	defer release.Do(func() { close(h.release) })
	if err := ws.WriteMessage(websocket.TextMessage, []byte("block")); err != nil {
		t.Fatal(err)
	}
	<-h.entered
	if err := ws.WriteMessage(websocket.TextMessage, []byte("second")); err != nil {
		t.Fatal(err)
	}
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
	for _, want := range []string{"block", "second"} {
		select {
		case got := <-h.got:
			if got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q not handled within 10s", want)
		}
	}
	ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	<-h.closed
	wg.Wait()
	tr.Close()
}

// pollServer serves a transport's connections with the handlers newHandler
// makes, one per connection; close ends the connections' transport after
// they ended.
func pollServer(t *testing.T, newHandler func(wg *sync.WaitGroup) *blockingHandler) (tr *Transport, dial func() *websocket.Conn) {
	t.Helper()
	var wg sync.WaitGroup
	tr = New(Config{
		ReadLimit: 1 << 20, FrameTimeout: time.Minute, WriteTimeout: time.Minute,
		PingInterval: time.Hour, PongTimeout: time.Hour,
		SendQueue: 16, SendQueueBytes: 1 << 20,
		Goroutines: &wg, Logger: slog.New(slog.DiscardHandler),
	})
	if tr.poll == nil {
		t.Fatal("no poller on Linux")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := newHandler(&wg)
		c, err := tr.Upgrade(w, r, h, false, nil)
		if err != nil {
			t.Error(err)
			return
		}
		wg.Add(1)
		h.conn.Store(c)
		c.Serve()
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
	return tr, func() *websocket.Conn {
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, ws)
		return ws
	}
}

func newBlockingHandler(wg *sync.WaitGroup) *blockingHandler {
	return &blockingHandler{entered: make(chan struct{}), release: make(chan struct{}), got: make(chan string, 64), closed: make(chan struct{}), wg: wg}
}

// The poller reads the last ready socket of each batch itself, on its own
// goroutine: frames of one connection, one at a time, start no worker.
func TestPoller_ReadsTheLastReadySocketItself(t *testing.T) {
	handlers := make(chan *blockingHandler, 1)
	tr, dial := pollServer(t, func(wg *sync.WaitGroup) *blockingHandler {
		h := newBlockingHandler(wg)
		handlers <- h
		return h
	})
	ws := dial()
	h := <-handlers
	for i := range 20 {
		msg := fmt.Sprint("frame ", i)
		if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-h.got:
			if got != msg {
				t.Fatalf("got %q, want %q", got, msg)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q not handled within 10s", msg)
		}
	}
	if n := tr.work.live.Load(); n != 0 {
		t.Errorf("%d workers started for frames the poller could read itself", n)
	}
}

// A read that waits (its handler called Conn.Blocking) hands polling on:
// while it waits, another connection's frames are read and handled.
func TestPoller_AWaitingReadHandsPollingOn(t *testing.T) {
	handlers := make(chan *blockingHandler, 2)
	_, dial := pollServer(t, func(wg *sync.WaitGroup) *blockingHandler {
		h := newBlockingHandler(wg)
		handlers <- h
		return h
	})
	a := dial()
	ha := <-handlers
	b := dial()
	hb := <-handlers
	defer close(ha.release)
	if err := a.WriteMessage(websocket.TextMessage, []byte("block")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ha.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking frame was not handled within 10s")
	}
	for i := range 5 {
		msg := fmt.Sprint("hello ", i)
		if err := b.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-hb.got:
			if got != msg {
				t.Fatalf("got %q, want %q", got, msg)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q of another connection not handled within 10s while a read waits", msg)
		}
	}
}
