package wsconn

import (
	"net"
	"sync"
	"syscall"
)

// WriteMany does what Write does for each of conns, whose writer roles
// the caller took (Queue said writer), submitting the sockets' writes
// together where the system allows (io_uring on Linux; see ring): one
// system call writes up to 128 sockets. What a socket does not take at
// once goes to a flusher, as with Write. Without io_uring (another
// system, a kernel or sandbox that refuses it, Config.NoRing) it calls
// Write for each.
func (t *Transport) WriteMany(conns []*Conn) {
	var r *ring
	if len(conns) > 1 && !t.cfg.NoRing {
		r = t.rings.get()
	}
	if r == nil {
		for _, c := range conns {
			c.Write()
		}
		return
	}
	p := passPool.Get().(*pass)
	for len(conns) > 0 {
		k := min(len(conns), r.entries)
		if !p.run(r, conns[:k]) {
			t.rings.disable()
			for _, c := range conns[k:] {
				c.Write()
			}
			break
		}
		conns = conns[k:]
	}
	p.reset()
	passPool.Put(p)
	t.rings.put(r)
}

// pass is one WriteMany submission's state, kept for reuse.
type pass struct {
	conns   []*Conn
	batches [][]Frame
	fds     []int
	bufs    [][]byte
	res     []int32
}

var passPool = sync.Pool{New: func() any { return new(pass) }}

func (p *pass) reset() {
	clear(p.conns)
	clear(p.batches)
	clear(p.bufs)
	p.conns, p.batches, p.fds, p.bufs, p.res = p.conns[:0], p.batches[:0], p.fds[:0], p.bufs[:0], p.res[:0]
}

// run writes conns (at most r.entries) with one submission and ends their
// passes; it goes back to Write for a connection whose queue grew
// meanwhile. It reports false when the ring itself failed: the bytes of
// that submission were then left to the connections' flushers.
func (p *pass) run(r *ring, conns []*Conn) bool {
	p.reset()
	for _, c := range conns {
		if !c.gc.canTry() {
			c.Write()
			continue
		}
		batch, ok := c.writeBegin()
		if !ok {
			continue
		}
		p.conns = append(p.conns, c)
		p.batches = append(p.batches, batch)
	}
	if len(p.conns) == 0 {
		return true
	}
	// Lock each connection's gathered bytes (control frames wait, so
	// frames stay whole) and keep its descriptor open until the
	// submission returned.
	for _, c := range p.conns {
		gc := c.gc
		gc.mu.Lock()
		gc.on = false
		gc.closeMu.RLock()
		var b []byte
		fd := -1
		if gc.buf != nil && !gc.closed {
			b, fd = (*gc.buf)[gc.sent:], gc.fd
		}
		p.bufs = append(p.bufs, b)
		p.fds = append(p.fds, fd)
		p.res = append(p.res, 0)
	}
	// A connection with nothing to send, or closed, is submitted as a
	// send of nothing to no descriptor (-EBADF, ignored), which keeps the
	// indexes simple.
	err := r.send(p.fds, p.bufs, p.res)
	for i, c := range p.conns {
		gc := c.gc
		closed := gc.closed
		gc.closeMu.RUnlock()
		done, werr := gc.sentLocked(p.res[i], closed, err)
		gc.mu.Unlock()
		if c.writeEnd(p.batches[i], done, werr) {
			c.Write() // frames queued meanwhile
		}
	}
	return err == nil
}

// sentLocked records the outcome of a submitted send (res: the bytes
// written or a negative errno), as tryFlush does for its write. The
// caller holds mu. A full socket, and a failed submission (serr), leave
// the bytes for a flusher.
func (c *gatherConn) sentLocked(res int32, closed bool, serr error) (done bool, err error) {
	switch {
	case c.buf == nil:
		return true, nil
	case closed:
		return c.wroteLocked(0, net.ErrClosed)
	case serr != nil || res == -int32(syscall.EAGAIN) || res == -int32(syscall.EINTR):
		return c.wroteLocked(0, nil)
	case res < 0:
		return c.wroteLocked(0, syscall.Errno(-res))
	}
	return c.wroteLocked(int(res), nil)
}
