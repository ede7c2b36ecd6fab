// Package chaosproxy is a TCP proxy for fault-injection tests: it listens
// on 127.0.0.1, forwards every accepted connection to one target, and lets
// the test delay, cut, reset or blackhole connections, one at a time or all
// of them, while traffic flows.
//
//	p, err := chaosproxy.New("127.0.0.1:8080")
//	defer p.Close()
//	// dial p.Addr() instead of the target
//	p.SetLatency(50 * time.Millisecond)   // every connection, now and later
//	p.Conns()[0].Blackhole()               // stop forwarding, keep the sockets
//	p.CutAll()                             // close every connection abruptly
//
// The faults:
//
//   - Latency: every chunk read on one side is written to the other side
//     that much later (order kept; the delay does not limit throughput).
//   - Cut: both sockets are closed at once, without waiting for queued
//     bytes: each peer sees the end of the stream (FIN).
//   - Reset: both sockets are closed with SO_LINGER 0: each peer sees a
//     connection reset (RST).
//   - Blackhole: bytes are still read from both peers, so their writes
//     never block, but thrown away, and neither an end of stream nor a
//     reset is passed on: the connection looks alive to both peers and
//     carries nothing, as after a NAT forgot it. Only the peers' own
//     heartbeats can tell. The proxy lets the connection go once both
//     peers have closed their side.
//
// The proxy runs five goroutines per connection (a reader and a writer
// per direction, and one that cleans up after them) plus one accept loop; Close stops all of them and waits
// for them.
package chaosproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// chunkSize is the largest read of one side; each chunk is forwarded as one
// write.
const chunkSize = 32 << 10

// queueLen is how many chunks may wait for their latency in one direction
// before the reader stops reading (TCP backpressure then reaches the
// sender).
const queueLen = 64

// dialTimeout bounds the dial to the target of each accepted connection.
const dialTimeout = 5 * time.Second

// ErrClosed is returned by Proxy methods after Close.
var ErrClosed = errors.New("chaosproxy: closed")

// Stats counts what a proxy did.
type Stats struct {
	Accepted   int64 // connections accepted and connected to the target
	DialFailed int64 // accepted connections whose dial to the target failed
	Cut        int64 // connections ended by Cut or CutAll
	Reset      int64 // connections ended by Reset or ResetAll
	Blackholed int64 // connections blackholed by Blackhole or BlackholeAll
	Open       int64 // connections open now
}

// Proxy forwards connections accepted on 127.0.0.1 to a target address.
// All methods are safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string

	latency atomic.Int64 // time.Duration for new connections

	accepted, dialFailed, cut, reset, blackholed atomic.Int64

	// wg counts the accept loop and every goroutine of every connection.
	wg sync.WaitGroup
	// ctx is cancelled by Close (closeOnce); it ends dials to the target.
	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once

	mu     sync.Mutex
	conns  map[uint64]*Conn // guarded by mu: the open connections
	nextID uint64           // guarded by mu
	closed bool             // guarded by mu
}

// New starts a proxy on a free port of 127.0.0.1 that forwards to target
// (host:port). The target must be a loopback address.
func New(target string) (*Proxy, error) {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("chaosproxy: target %q: %w", target, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("chaosproxy: target %q is not a loopback address", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: make(map[uint64]*Conn)}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the proxy's address, 127.0.0.1:PORT: dial it instead of
// the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// SetLatency delays every chunk by d, on the open connections and on
// those accepted later. 0 removes the delay.
func (p *Proxy) SetLatency(d time.Duration) {
	p.latency.Store(int64(max(0, d)))
	for _, c := range p.Conns() {
		c.SetLatency(d)
	}
}

// Conns returns the open connections, oldest first.
func (p *Proxy) Conns() []*Conn {
	p.mu.Lock()
	cs := make([]*Conn, 0, len(p.conns))
	for _, c := range p.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	slices.SortFunc(cs, func(a, b *Conn) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	return cs
}

// CutAll cuts every open connection (see Conn.Cut) and returns how many.
func (p *Proxy) CutAll() int {
	cs := p.Conns()
	for _, c := range cs {
		c.Cut()
	}
	return len(cs)
}

// ResetAll resets every open connection (see Conn.Reset) and returns how
// many.
func (p *Proxy) ResetAll() int {
	cs := p.Conns()
	for _, c := range cs {
		c.Reset()
	}
	return len(cs)
}

// BlackholeAll blackholes every open connection (see Conn.Blackhole) and
// returns how many. Connections accepted later are not affected.
func (p *Proxy) BlackholeAll() int {
	cs := p.Conns()
	for _, c := range cs {
		c.Blackhole()
	}
	return len(cs)
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	open := int64(len(p.conns))
	p.mu.Unlock()
	return Stats{
		Accepted:   p.accepted.Load(),
		DialFailed: p.dialFailed.Load(),
		Cut:        p.cut.Load(),
		Reset:      p.reset.Load(),
		Blackholed: p.blackholed.Load(),
		Open:       open,
	}
}

// Close stops accepting, closes every connection abruptly and waits until
// every goroutine of the proxy has returned. It is idempotent.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.cancel()
		_ = p.ln.Close()
	})
	for _, c := range p.Conns() {
		c.closeBoth(false)
	}
	p.wg.Wait()
	return nil
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		p.wg.Add(1)
		go p.connect(down.(*net.TCPConn))
	}
}

// connect dials the target for an accepted connection and starts
// forwarding.
func (p *Proxy) connect(down *net.TCPConn) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	stopDial := context.AfterFunc(p.ctx, cancel)
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", p.target)
	stopDial()
	cancel()
	if err != nil {
		p.dialFailed.Add(1)
		_ = down.SetLinger(0)
		_ = down.Close()
		return
	}
	up := nc.(*net.TCPConn)
	c := &Conn{p: p, down: down, up: up, done: make(chan struct{}), stop: make(chan struct{})}
	c.latency.Store(p.latency.Load())
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = down.Close()
		_ = up.Close()
		return
	}
	p.nextID++
	c.id = p.nextID
	p.conns[c.id] = c
	p.mu.Unlock()
	p.accepted.Add(1)

	// Four goroutines forward, the fifth (this one) cleans up after them.
	var dirs sync.WaitGroup
	dirs.Add(4)
	p.wg.Add(4)
	c.pipe(&dirs, down, up) // client -> target
	c.pipe(&dirs, up, down) // target -> client
	dirs.Wait()
	c.closeBoth(false)
	p.mu.Lock()
	delete(p.conns, c.id)
	p.mu.Unlock()
	close(c.done)
}

// Conn is one proxied connection: the client's socket (down) and the
// proxy's socket to the target (up).
type Conn struct {
	p        *Proxy
	id       uint64
	down, up *net.TCPConn

	latency    atomic.Int64 // time.Duration
	blackholed atomic.Bool
	// stop is closed by closeBoth (stopOnce): writers waiting out a delay
	// give up.
	stop     chan struct{}
	stopOnce sync.Once
	// done is closed when both directions have ended and the sockets are
	// closed.
	done chan struct{}
	// ended records the first fault that ended the connection.
	ended atomic.Bool
}

// ID returns the connection's number, 1 for the first one the proxy
// accepted.
func (c *Conn) ID() uint64 { return c.id }

// ClientAddr returns the address of the client's end (its local address
// as the client sees it).
func (c *Conn) ClientAddr() string { return c.down.RemoteAddr().String() }

// Done returns a channel that is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// SetLatency delays every chunk of this connection read from now on by d.
func (c *Conn) SetLatency(d time.Duration) { c.latency.Store(int64(max(0, d))) }

// Blackholed reports whether Blackhole was called.
func (c *Conn) Blackholed() bool { return c.blackholed.Load() }

// Cut closes both sockets at once: bytes not yet forwarded are lost and
// each peer sees the end of the stream.
func (c *Conn) Cut() {
	if c.ended.CompareAndSwap(false, true) {
		c.p.cut.Add(1)
	}
	c.closeBoth(false)
}

// Reset closes both sockets with SO_LINGER 0: each peer sees a connection
// reset.
func (c *Conn) Reset() {
	if c.ended.CompareAndSwap(false, true) {
		c.p.reset.Add(1)
	}
	c.closeBoth(true)
}

// Blackhole stops forwarding in both directions, for good, and keeps both
// sockets open: what either peer sends is read and dropped, and neither
// its end of stream nor its reset reaches the other. The connection ends
// once both peers closed it (or Cut, Reset, or Close).
func (c *Conn) Blackhole() {
	if !c.blackholed.Swap(true) {
		c.p.blackholed.Add(1)
	}
}

// closeBoth closes both sockets, with RST when rst.
func (c *Conn) closeBoth(rst bool) {
	c.stopOnce.Do(func() { close(c.stop) })
	if rst {
		_ = c.down.SetLinger(0)
		_ = c.up.SetLinger(0)
	}
	_ = c.down.Close()
	_ = c.up.Close()
}

// chunk is bytes read from one side, due on the other at due.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe starts the reader and the writer of one direction, src to dst;
// each calls dirs.Done and c.p.wg.Done when it returns.
func (c *Conn) pipe(dirs *sync.WaitGroup, src, dst *net.TCPConn) {
	q := make(chan chunk, queueLen) // closed by the reader
	go func() {
		defer c.p.wg.Done()
		defer dirs.Done()
		c.read(src, q)
	}()
	go func() {
		defer c.p.wg.Done()
		defer dirs.Done()
		c.write(dst, q)
	}()
}

// read reads src until it ends, queueing what it read (or dropping it when
// blackholed), then closes q.
func (c *Conn) read(src *net.TCPConn, q chan<- chunk) {
	defer close(q)
	buf := make([]byte, chunkSize)
	for {
		n, err := src.Read(buf)
		if n > 0 && !c.blackholed.Load() {
			ch := chunk{b: append([]byte(nil), buf[:n]...), due: time.Now().Add(time.Duration(c.latency.Load()))}
			select {
			case q <- ch:
			case <-c.stop:
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !c.blackholed.Load() {
				// A reset (or another failure) on one side: the other
				// side is reset too, as a router would pass it on.
				c.closeBoth(true)
			}
			return
		}
	}
}

// write writes each chunk of q to dst when it is due. When q is closed
// (the source ended with EOF) it passes the end of stream on, unless
// blackholed.
func (c *Conn) write(dst *net.TCPConn, q <-chan chunk) {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for ch := range q {
		if c.blackholed.Load() {
			continue
		}
		if wait := time.Until(ch.due); wait > 0 {
			if t == nil {
				t = time.NewTimer(wait)
			} else {
				t.Reset(wait)
			}
			select {
			case <-t.C:
			case <-c.stop:
				return
			}
		}
		if c.blackholed.Load() {
			continue
		}
		if _, err := dst.Write(ch.b); err != nil {
			c.closeBoth(true)
			return
		}
	}
	if !c.blackholed.Load() {
		_ = dst.CloseWrite()
	}
}
