//go:build linux

package wsconn

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// countedHandler ignores a connection's events but its end, which it
// counts out of wg: the owner counts each connection in
// Config.Goroutines while it lives, as the hub does.
type countedHandler struct{ wg *sync.WaitGroup }

func (countedHandler) Message([]byte)   {}
func (countedHandler) Written([]string) {}
func (h countedHandler) Closed(error)   { h.wg.Done() }

// WriteMany delivers every connection's frames once and in order, with
// io_uring and without: 200 connections (two submissions of a ring), one
// of them not reading until its socket is full (the rest of a send goes
// to its flusher), one closed by its peer midway (the others go on).
func TestWriteMany_EveryFrameOnceInOrder(t *testing.T) {
	for _, noRing := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoRing=%v", noRing), func(t *testing.T) {
			if !noRing {
				r, err := newRing(ringEntries)
				if err != nil {
					// CI's machine has io_uring: there the ring path must
					// be tested, never skipped.
					if os.Getenv("CI") == "true" {
						t.Fatalf("io_uring is not available (%v), and CI=true", err)
					}
					t.Skipf("io_uring is not available here (%v): the NoRing case covers WriteMany", err)
				}
				r.close()
			}
			testWriteMany(t, noRing)
		})
	}
}

func testWriteMany(t *testing.T, noRing bool) {
	const n = 200
	var wg sync.WaitGroup
	tr := New(Config{
		ReadLimit: 1 << 20, FrameTimeout: time.Minute, WriteTimeout: time.Minute,
		PingInterval: time.Hour, PongTimeout: time.Hour,
		SendQueue: 1 << 20, SendQueueBytes: 1 << 30,
		Goroutines: &wg, Logger: slog.New(slog.DiscardHandler), NoRing: noRing,
	})
	var mu sync.Mutex
	var conns []*Conn
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := tr.Upgrade(w, r, countedHandler{&wg}, false, nil)
		if err != nil {
			t.Error(err)
			return
		}
		wg.Add(1)
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		c.Serve()
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	clients := make([]*websocket.Conn, n)
	for i := range n {
		ws, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		// Wait for the server's side so that conns[i] is clients[i].
		for {
			mu.Lock()
			k := len(conns)
			mu.Unlock()
			if k == i+1 {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		clients[i] = ws
	}
	const stalled, closing = 7, 150
	// queue gives each connection in to its next frame and writes them
	// all with WriteMany.
	next := make([]int, n)
	queue := func(to []int, size int) {
		var writers []*Conn
		for _, i := range to {
			data := fmt.Appendf(nil, "%d-%d-", i, next[i])
			data = append(data, bytes.Repeat([]byte{'x'}, size)...)
			w, err := conns[i].Queue(Frame{Data: data})
			if err != nil {
				if i == closing {
					continue
				}
				t.Fatalf("queue to %d: %v", i, err)
			}
			next[i]++
			if w {
				writers = append(writers, conns[i])
			}
		}
		tr.WriteMany(writers)
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	// Readers: every client but the stalled one reads from the start.
	got := make([]atomic.Int64, n)
	errs := make([]atomic.Value, n) // error
	var readers sync.WaitGroup
	start := make(chan struct{})
	read := func(i int) {
		defer readers.Done()
		if i == stalled {
			<-start
		}
		for {
			_, p, err := clients[i].ReadMessage()
			if err != nil {
				return
			}
			want := fmt.Sprintf("%d-%d-", i, got[i].Load())
			if !bytes.HasPrefix(p, []byte(want)) {
				errs[i].Store(fmt.Errorf("client %d: got %.20q, want %q first", i, p, want))
				return
			}
			got[i].Add(1)
		}
	}
	readers.Add(n)
	for i := range n {
		go read(i)
	}
	for range 10 {
		queue(all, 100)
	}
	clients[closing].Close()
	// Fill the stalled client's socket: until a WriteMany leaves it a
	// rest that a flusher is writing (its writer role still taken).
	deadline := time.Now().Add(20 * time.Second)
	for {
		queue([]int{stalled, 3}, 16<<10)
		c := conns[stalled]
		c.mu.Lock()
		busy := c.writing
		c.mu.Unlock()
		if busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stalled client's socket never filled")
		}
	}
	for range 10 {
		queue(all, 100)
	}
	close(start)
	// Every client but the closed one gets all its frames.
	deadline = time.Now().Add(20 * time.Second)
	for i := range n {
		if i == closing {
			continue
		}
		for {
			if err := errs[i].Load(); err != nil {
				t.Fatal(err)
			}
			if got[i].Load() == int64(next[i]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("client %d got %d of %d frames", i, got[i].Load(), next[i])
			}
			time.Sleep(time.Millisecond)
		}
	}
	if !noRing {
		tr.rings.mu.Lock()
		made, off := tr.rings.made, tr.rings.off
		tr.rings.mu.Unlock()
		if made == 0 || off {
			t.Fatalf("the ring was not used (made %d, off %v)", made, off)
		}
	}
	for _, c := range clients {
		c.Close()
	}
	readers.Wait()
	mu.Lock()
	for _, c := range conns {
		c.Close(1000, "", false)
	}
	mu.Unlock()
	wg.Wait()
	tr.Close()
}
