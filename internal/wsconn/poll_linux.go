package wsconn

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// rawConn reads a TCP socket's file descriptor directly.
type rawConn struct{ rc syscall.RawConn }

func (rawConn) rearms() bool { return true }

func (r rawConn) readNow(p []byte) (int, error) {
	o := getRawOp(p)
	cerr := r.rc.Read(o.readFn)
	n, err := o.n, o.err
	o.put()
	switch {
	case cerr != nil:
		return 0, cerr
	case err == syscall.EAGAIN:
		return 0, errWouldBlock
	case err != nil:
		return 0, err
	}
	return n, nil
}

// poller waits on an epoll instance for the sockets of idle connections
// and reads the ones that got bytes, itself or, past its budget, on
// workers (see loop). The sockets are
// edge-triggered (EPOLLET): an event comes when bytes arrive, and stays
// registered, so no system call re-arms a socket after each read; a
// connection that gets an event while a worker reads it is read again by
// that worker (Conn.readable), so one goroutine at a time reads a
// connection, in order.
//
// The epoll instance is itself watched by the Go runtime's network poller
// (file, ep): loop takes events with non-blocking epoll_wait calls and
// parks in between like any goroutine waiting for a socket, rather than
// sitting in a blocking system call, which the runtime would take its
// processor back from every 10 ms, keeping its monitor thread busy.
type poller struct {
	epfd int
	file *os.File        // owns epfd
	ep   syscall.RawConn // of file
	wake [2]int          // a pipe; a byte on wake[1] ends loop

	mu    sync.Mutex       // guards nodes and next
	nodes map[uint64]*Conn // by the id in their epoll registration
	next  uint64

	// One goroutine at a time runs loop: the one started by New, then,
	// after a hand-off (Conn.Blocking), a worker, which goes on with the
	// batch where the other left it. events[at:k] are the batch's events
	// not handled yet; start is when the batch began to be handled. Used
	// by the goroutine running loop.
	work   *workers
	events []syscall.EpollEvent
	k, at  int
	// take's results, and take as a func value made once (a closure per
	// wait would escape into RawConn.Read, three allocations a wait).
	took    int
	takeErr error
	takeFn  func(fd uintptr) bool
	start   time.Time
	budget  atomic.Int64 // Config.PollBudget in nanoseconds (tests change it)

	done     chan struct{} // closed by loop when it ends (close, or a failed wait)
	doneOnce sync.Once
}

// pollEvents: readable, peer closed, edge-triggered (syscall.EPOLLET, a
// negative int constant there).
const pollEvents uint32 = syscall.EPOLLIN | syscall.EPOLLRDHUP | 1<<31

// newPoller makes the epoll instance and its wake-up pipe, for the
// Transport's poller number i: the ids of its registrations carry i
// (pollerOf).
func newPoller(work *workers, budget time.Duration, i int) (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, err
	}
	// Non-blocking, so os.NewFile registers it with the runtime's poller.
	p := &poller{epfd: epfd, file: os.NewFile(uintptr(epfd), "wshub-epoll"), nodes: make(map[uint64]*Conn), next: uint64(i)<<pollerShift | 1, done: make(chan struct{}),
		work: work, events: make([]syscall.EpollEvent, 256)}
	p.takeFn = p.take
	p.budget.Store(int64(budget))
	if p.ep, err = p.file.SyscallConn(); err != nil {
		p.file.Close()
		return nil, err
	}
	if err := syscall.Pipe2(p.wake[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		p.file.Close()
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // id 0: the wake-up pipe
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		p.closeFDs()
		return nil, err
	}
	return p, nil
}

func (p *poller) closeFDs() {
	syscall.Close(p.wake[0])
	syscall.Close(p.wake[1])
	p.file.Close()
}

// add registers n's socket, when it is a plain TCP connection, and reports
// true; it reports false otherwise (n is then read by a goroutine of its
// own). A connection that ended already needs neither: add reports true.
func (p *poller) add(n *Conn) bool {
	rc, fd := n.gc.raw, n.gc.fd // set for a plain TCP socket (newGatherConn)
	if rc == nil || fd < 0 {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.finished {
		// Ended already (evicted, say): its descriptor may be another
		// connection's by now, and nothing is left to read.
		return true
	}
	p.mu.Lock()
	id := p.next
	p.next++
	p.nodes[id] = n
	p.mu.Unlock()
	n.raw, n.pollFD, n.pollID = rawConn{rc}, fd, id
	ev := syscall.EpollEvent{Events: pollEvents, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	if syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev) != nil {
		p.forget(id)
		n.raw = nil
		return false
	}
	n.polled = true
	return true
}

// removeLocked unregisters n's socket before it is closed. The caller
// holds n.mu.
func (p *poller) removeLocked(n *Conn) {
	syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, n.pollFD, nil)
	p.forget(n.pollID)
}

func (p *poller) forget(id uint64) {
	p.mu.Lock()
	delete(p.nodes, id)
	p.mu.Unlock()
}

// loop waits for events until close and reads the ready sockets of each
// batch itself (Conn.readInline), one after the other, until it spent
// Config.PollBudget on the batch; the rest but the last it hands to workers
// (Conn.readable). Waking a worker's thread costs more time than a few
// reads that do not wait: read inline, a frame is handled sooner (this
// VM, direct messages: 47 µs from the client's write to the hub's read at
// the median against 184 through a worker), and a frame that takes long
// to handle still does not hold up many others. A read that may wait
// hands polling on to another goroutine first (Conn.Blocking, handoff),
// which goes on with the rest of the batch; loop then returns once that
// read is done. One goroutine at a time runs loop.
func (p *poller) loop() {
	for {
		if p.at >= p.k {
			p.took, p.takeErr = 0, nil
			err := p.ep.Read(p.takeFn)
			if err != nil || p.takeErr != nil {
				p.end()
				return
			}
			p.k, p.at, p.start = p.took, 0, time.Now()
		}
		for p.at < p.k {
			ev := p.events[p.at]
			p.at++
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				p.end() // the wake-up pipe: close was called
				return
			}
			p.mu.Lock()
			n := p.nodes[id]
			p.mu.Unlock()
			if n == nil {
				continue
			}
			if p.at < p.k && time.Since(p.start) >= time.Duration(p.budget.Load()) {
				n.readable()
				continue
			}
			if !n.readInline(p) {
				return // another goroutine polls now, from p.at on
			}
		}
	}
}

// take takes the ready events into p.events (p.took of them, or
// p.takeErr), for RawConn.Read: it reports false, to park until the
// instance is readable, when there were none.
func (p *poller) take(fd uintptr) bool {
	p.took, p.takeErr = epollTake(int(fd), p.events)
	if p.takeErr == syscall.EINTR {
		p.took, p.takeErr = 0, nil
	}
	return p.took > 0 || p.takeErr != nil
}

// end marks the loop ended, once (a loop started by a late hand-off that
// finds the instance closed ends it again).
func (p *poller) end() { p.doneOnce.Do(func() { close(p.done) }) }

// handoff starts loop on a worker: the goroutine running it is about to
// wait (Conn.Blocking).
func (p *poller) handoff() {
	p.work.run(nil, func(*Conn) { p.loop() })
}

// close ends loop and releases the epoll instance. Call it once no socket
// is registered.
func (p *poller) close() {
	syscall.Write(p.wake[1], []byte{1})
	<-p.done
	p.closeFDs()
}

var _ net.Conn = (*gatherConn)(nil)
