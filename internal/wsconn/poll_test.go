//go:build linux

package wsconn

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// blockingHandler blocks in Message("block") until release is closed and
// reports every message on got.
type blockingHandler struct {
	entered chan struct{}
	release chan struct{}
	got     chan string
	closed  chan struct{}
	wg      *sync.WaitGroup // counts the connection while it lives
}

func (h *blockingHandler) Message(p []byte) {
	if string(p) == "block" {
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
	close(h.release)
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
