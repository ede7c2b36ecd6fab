package wsconn

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// maxGather bounds the bytes a gatherConn holds before it writes them.
const maxGather = 64 << 10

// gatherConn is the net.Conn under a connection's websocket.Conn. Between
// gather and flush it collects the frames gorilla/websocket writes, so
// that a flusher pass costs one write system call however many frames it
// holds; otherwise it writes through.
//
// tryFlush writes what was gathered without waiting for the socket (on
// Unix TCP sockets, see raw): what the socket did not take stays in buf
// from offset sent on, and is written before anything else.
type gatherConn struct {
	net.Conn
	pool *sync.Pool      // of *[]byte, the hub's
	raw  syscall.RawConn // for tryFlush; nil where it is not supported (TLS, Windows)

	// fd is the socket's descriptor when raw is set, for writes submitted
	// through a ring (Transport.WriteMany); closeMu keeps it open while a
	// submission uses it (held for reading then, for writing by Close).
	fd      int
	closeMu sync.RWMutex
	closed  bool // guarded by closeMu

	mu       sync.Mutex // guards buf, sent, on and deadline; held across the socket write so frames keep their order
	buf      *[]byte    // frames gathered, or a rest tryFlush left; from pool, else nil
	sent     int        // bytes at the start of buf already written
	on       bool
	deadline time.Time // the write deadline last set
}

// newGatherConn wraps nc.
func newGatherConn(nc net.Conn, pool *sync.Pool) *gatherConn {
	c := &gatherConn{Conn: nc, pool: pool, raw: rawConnOf(nc), fd: -1}
	if c.raw != nil && c.raw.Control(func(fd uintptr) { c.fd = int(fd) }) != nil {
		c.raw = nil
	}
	return c
}

// Close closes the socket once no ring submission is using its
// descriptor (a submission is short: its sends never wait).
func (c *gatherConn) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	c.closed = true
	return c.Conn.Close()
}

// SetWriteDeadline sets the write deadline, unless it is the one already
// set: gorilla/websocket sets it again for every frame, and each setting
// costs a timer update.
func (c *gatherConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.Equal(c.deadline) {
		return nil
	}
	c.deadline = t
	return c.Conn.SetWriteDeadline(t)
}

// extendWriteDeadline moves the write deadline to now+d when less than
// d/2 of it is left, so that a busy connection does not update a timer
// for every pass, and a write always has at least d/2.
func (c *gatherConn) extendWriteDeadline(d time.Duration) error {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deadline.Sub(now) >= d/2 {
		return nil
	}
	c.deadline = now.Add(d)
	return c.Conn.SetWriteDeadline(c.deadline)
}

// SetDeadline sets both deadlines.
func (c *gatherConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

// appendText gathers one unmasked, final text frame (RFC 6455 section
// 5.2) holding the parts, which are joined by newlines. The caller is
// gathering.
func (c *gatherConn) appendText(parts ...[]byte) {
	n := len(parts) - 1
	for _, p := range parts {
		n += len(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := appendHeader(*c.buf, opText, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, '\n')
		}
		b = append(b, p...)
	}
	*c.buf = b
}

// writeControl writes a control frame (RFC 6455 section 5.5) of op with
// payload p: gathered when a writer is gathering, else written through,
// after the rest a tryFlush left, within timeout.
func (c *gatherConn) writeControl(op byte, p []byte, timeout time.Duration) error {
	var a [2 + 125]byte
	frame := appendFrame(a[:0], op, p)
	if err := c.extendWriteDeadline(timeout); err != nil {
		return err
	}
	_, err := c.Write(frame)
	return err
}

// full reports whether the gathered bytes reached maxGather.
func (c *gatherConn) full() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf != nil && len(*c.buf) >= maxGather
}

// gather starts collecting writes.
func (c *gatherConn) gather() {
	c.mu.Lock()
	c.on = true
	if c.buf == nil {
		c.buf = c.pool.Get().(*[]byte)
	}
	c.mu.Unlock()
}

// flush writes what was collected and stops collecting.
func (c *gatherConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.on = false
	return c.writeGatheredLocked()
}

// canTry reports whether tryFlush is supported.
func (c *gatherConn) canTry() bool { return c.raw != nil }

// tryFlush stops collecting and writes what was collected without waiting
// for the socket: it reports false when the socket took only part of it
// (or none), keeping the rest for the next write. The caller checked
// canTry.
func (c *gatherConn) tryFlush() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.on = false
	if c.buf == nil {
		return true, nil
	}
	return c.wroteLocked(rawWrite(c.raw, (*c.buf)[c.sent:]))
}

// wroteLocked records a non-blocking write of w bytes of the gathered
// ones (tryFlush's, or a ring submission's): it reports whether all were
// written, when the buffer goes back to the pool; a failed write drops
// them. The caller holds mu and checked that buf is set.
func (c *gatherConn) wroteLocked(w int, err error) (done bool, _ error) {
	c.sent += w
	if err != nil {
		c.releaseLocked()
		return false, err
	}
	if c.sent < len(*c.buf) {
		return false, nil
	}
	c.releaseLocked()
	return true, nil
}

// writeGatheredLocked writes the gathered bytes, after a rest tryFlush
// left, and returns the buffer to the pool. The caller holds mu.
func (c *gatherConn) writeGatheredLocked() error {
	if c.buf == nil {
		return nil
	}
	var err error
	if b := (*c.buf)[c.sent:]; len(b) > 0 {
		if c.raw != nil {
			// What the socket takes at once, as a raw system call (no
			// hand-off of the processor, no poller bookkeeping); only a
			// rest waits for the socket, through the net.Conn.
			var n int
			n, err = rawWrite(c.raw, b)
			b = b[n:]
		}
		if len(b) > 0 && err == nil {
			_, err = c.Conn.Write(b)
		}
	}
	c.releaseLocked()
	return err
}

// releaseLocked returns the buffer to the pool. The caller holds mu.
func (c *gatherConn) releaseLocked() {
	if b := *c.buf; cap(b) <= 2*maxGather {
		*c.buf = b[:0]
		c.pool.Put(c.buf)
	}
	c.buf, c.sent = nil, 0
}

// Write collects p while gathering (writing what was collected first when
// p would overflow maxGather), and writes it through otherwise, after a
// rest tryFlush left.
func (c *gatherConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on && c.buf != nil {
		if err := c.writeGatheredLocked(); err != nil {
			return 0, err
		}
	}
	if c.on {
		if len(*c.buf)+len(p) <= maxGather {
			*c.buf = append(*c.buf, p...)
			return len(p), nil
		}
		if err := c.writeGatheredLocked(); err != nil {
			return 0, err
		}
		c.buf = c.pool.Get().(*[]byte)
	}
	return c.Conn.Write(p)
}

// tcp returns the TCP connection underneath, if it is one.
func (c *gatherConn) tcp() (*net.TCPConn, bool) {
	tc, ok := c.Conn.(*net.TCPConn)
	return tc, ok
}

// hijacker hands gorilla/websocket's Upgrader a gatherConn instead of the
// raw connection.
type hijacker struct {
	http.ResponseWriter
	pool *sync.Pool
	conn *gatherConn // set by Hijack
}

// Hijack takes the connection over from net/http.
func (w *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = newGatherConn(nc, w.pool)
	return w.conn, brw, nil
}
