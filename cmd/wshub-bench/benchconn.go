package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

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
