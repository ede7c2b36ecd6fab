package wshub

import (
	"bufio"
	"net"
	"net/http"
	"sync"
)

// maxGather bounds the bytes a gatherConn holds before it writes them.
const maxGather = 64 << 10

// gatherConn is the net.Conn under a connection's websocket.Conn. Between
// gather and flush it collects the frames gorilla/websocket writes, so
// that a flusher pass costs one write system call however many frames it
// holds; otherwise it writes through.
type gatherConn struct {
	net.Conn
	pool *sync.Pool // of *[]byte, the hub's

	mu  sync.Mutex // guards buf and on; held across the socket write so frames keep their order
	buf *[]byte    // frames gathered; from pool, nil while not gathering
	on  bool
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

// writeGatheredLocked writes the gathered bytes and returns the buffer to
// the pool. The caller holds mu.
func (c *gatherConn) writeGatheredLocked() error {
	if c.buf == nil {
		return nil
	}
	b := *c.buf
	var err error
	if len(b) > 0 {
		_, err = c.Conn.Write(b)
	}
	if cap(b) <= 2*maxGather {
		*c.buf = b[:0]
		c.pool.Put(c.buf)
	}
	c.buf = nil
	return err
}

// Write collects p while gathering (writing what was collected first when
// p would overflow maxGather), and writes it through otherwise.
func (c *gatherConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
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
	w.conn = &gatherConn{Conn: nc, pool: w.pool}
	return w.conn, brw, nil
}
