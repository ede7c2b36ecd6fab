package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// connEnds is what the connections of a scenario report to: how many the
// hub ended, and the first error noted. tally and gstate embed it.
type connEnds struct {
	closed   atomic.Int64 // connections the hub ended
	mu       sync.Mutex
	firstErr string // guarded by mu: the first error frame or close reason
}

// noteErr keeps the error if it is the first.
func (e *connEnds) noteErr(format string, args ...any) {
	e.mu.Lock()
	if e.firstErr == "" {
		e.firstErr = fmt.Sprintf(format, args...)
	}
	e.mu.Unlock()
}

// first returns the first error noted.
func (e *connEnds) first() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.firstErr
}

// benchConn is the part of the tool's lean connections (lconn, gconn)
// that dials, reads and closes: the socket, its reader goroutine and how
// it ended, and the window of frames sent and not yet answered.
type benchConn struct {
	idx  int // connection number: source address, histogram shard
	user string
	ws   *websocket.Conn
	// window holds a token per frame sent and not yet answered; the
	// sender puts them, the reader takes them (release).
	window chan struct{}
	// rErr is how the reading ended; read by others only after readerDone
	// is closed, by the reader goroutine.
	rErr       error
	readerDone chan struct{}
	// closing is set before the tool closes the connection itself, so that
	// the reader does not count the end as the hub's doing.
	closing atomic.Bool
}

// connect dials the connection and starts its reader, which hands every
// frame to handle and reports an end it did not ask for to ends.
func (c *benchConn) connect(ctx context.Context, d *dialers, batch bool, handle func(line []byte, now int64), ends *connEnds) error {
	ws, err := d.dial(ctx, c.idx, c.user, batch)
	if err != nil {
		return err
	}
	c.ws = ws
	go func() {
		defer close(c.readerDone)
		c.rErr = readLoop(c.ws, handle)
		if !c.closing.Load() {
			ends.closed.Add(1)
			ends.noteErr("%s: connection ended by the hub: %v", c.user, c.rErr)
		}
	}()
	return nil
}

// release gives back one token of the window.
func (c *benchConn) release() {
	select {
	case <-c.window:
	default:
	}
}

// close closes the connection from the tool's side.
func (c *benchConn) close() {
	c.closing.Store(true)
	if c.ws != nil {
		_ = c.ws.Close()
	}
}

// deliveryLog keeps every delivery, for direct -deliveries: enough to
// tell when the slow ones came, on which connections, and what was sent
// around them (a delivery's send time is its arrival minus its latency).
type deliveryLog struct {
	mu   sync.Mutex
	recs []slowSample // guarded by mu
}

// add keeps the delivery; a nil log keeps nothing.
func (l *deliveryLog) add(at int64, d time.Duration, conn int) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.recs = append(l.recs, slowSample{at, d, conn})
	l.mu.Unlock()
}

// writeFile writes the deliveries to path in arrival order, one line
// each: arrival in Unix nanoseconds, latency in nanoseconds, connection.
func (l *deliveryLog) writeFile(path string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.SortFunc(l.recs, func(a, b slowSample) int { return cmp.Compare(a.at, b.at) })
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, r := range l.recs {
		fmt.Fprintf(w, "%d %d %d\n", r.at, int64(r.d), r.conn)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// slowLatency is the latency from which slowLog keeps a delivery.
const slowLatency = 20 * time.Millisecond

// slowLogMax bounds what a slowLog keeps.
const slowLogMax = 4096

// slowLog keeps the deliveries slower than slowLatency, with when they
// arrived and on which connection, so that a report can tell a stall of
// the whole server (many connections within milliseconds) from one
// connection left behind (one connection, spread over the run).
type slowLog struct {
	mu      sync.Mutex
	samples []slowSample // guarded by mu; at most slowLogMax
	more    int          // guarded by mu: samples not kept
}

type slowSample struct {
	at   int64 // unix ns of the delivery
	d    time.Duration
	conn int
}

// add keeps the sample if it is slow.
func (l *slowLog) add(at int64, d time.Duration, conn int) {
	if d < slowLatency {
		return
	}
	l.mu.Lock()
	if len(l.samples) < slowLogMax {
		l.samples = append(l.samples, slowSample{at, d, conn})
	} else {
		l.more++
	}
	l.mu.Unlock()
}

// summary describes the slow deliveries, or returns "" when there were
// none: how many, on how many connections, over which span of time, and
// the slowest.
func (l *slowLog) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.samples) == 0 {
		return ""
	}
	conns := map[int]int{}
	first, last := l.samples[0].at, l.samples[0].at
	worst := l.samples[0]
	for _, s := range l.samples {
		conns[s.conn]++
		first, last = min(first, s.at), max(last, s.at)
		if s.d > worst.d {
			worst = s
		}
	}
	busiest, most := 0, 0
	for c, n := range conns {
		if n > most {
			busiest, most = c, n
		}
	}
	return fmt.Sprintf("%d deliveries over %v (%d not kept) on %d connections (most on connection %d: %d), "+
		"arriving over %v; the slowest %v on connection %d",
		len(l.samples)+l.more, slowLatency, l.more, len(conns), busiest, most,
		time.Duration(last-first).Round(time.Millisecond), worst.d.Round(100*time.Microsecond), worst.conn)
}
