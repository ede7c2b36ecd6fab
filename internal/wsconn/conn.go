package wsconn

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Errors that end a connection, as Handler.Closed receives them. A normal
// close handshake ends it with nil.
var (
	// ErrSilent: no whole frame arrived for Config.PongTimeout.
	ErrSilent = errors.New("wsconn: connection silent past the pong timeout")
	// ErrNoAnswer: the peer did not answer the close frame in time.
	ErrNoAnswer = errors.New("wsconn: close frame not answered in time")
	// ErrClosing: the connection is closing; nothing more is queued.
	ErrClosing = errors.New("wsconn: connection is closing")
	// ErrQueueFull: the send queue is full (in frames or in bytes).
	ErrQueueFull = errors.New("wsconn: send queue full")
	// ErrReadPanic: reading the connection panicked (a bug; logged).
	ErrReadPanic = errors.New("wsconn: panic while reading")
)

// errPeerClose: the peer closed the connection (a close frame or EOF).
var errPeerClose = errors.New("wsconn: closed by the peer")

// errWouldBlock: the socket holds nothing to read right now.
var errWouldBlock = errors.New("wsconn: would block")

// CloseError is the error a connection ends with when it was closed with a
// close frame, either way: Code is the close code the peer sent, or the
// one the transport failed the connection with.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return "wsconn: closed with " + itoa(e.Code) + " " + e.Reason
}

func itoa(i int) string {
	var b [8]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 || n == 0 {
			return string(b[n:])
		}
	}
}

// closeGrace is how long a connection that was sent a close frame may take
// to answer it before its socket is closed.
const closeGrace = 2 * time.Second

// Config is the transport's settings, shared by the connections of one
// Transport. Zero fields are not defaulted here: the hub fills them in.
type Config struct {
	// ReadLimit is the largest text message a client may send; a larger
	// one fails the connection with 1009.
	ReadLimit int64
	// FrameTimeout bounds how long a frame, or a fragmented message, may
	// take to arrive whole once its first byte came; past it the
	// connection is closed with 1008.
	FrameTimeout time.Duration
	// WriteTimeout bounds each write to the socket.
	WriteTimeout time.Duration
	// PingInterval is how often a ping frame is sent; PongTimeout how long
	// a connection may send no whole frame before it is dropped.
	PingInterval, PongTimeout time.Duration
	// SendQueue and SendQueueBytes bound the frames waiting for one
	// connection, in number and in bytes; Queue fails past either.
	SendQueue, SendQueueBytes int
	// Goroutines counts the transport's goroutines (readers, writers), so
	// that the owner can wait for them. Required.
	Goroutines *sync.WaitGroup
	// Logger receives debug logs of failed connections. Required.
	Logger *slog.Logger
	// NoRing makes WriteMany write each socket with its own system call
	// even where io_uring is available.
	NoRing bool
	// CloseSent, when set, is called with the code of every close frame
	// a connection starts sending (once per connection), for metrics.
	CloseSent func(code int)
	// PollBudget is how long the epoll loop may spend reading the ready
	// sockets of one batch itself before it hands the rest to workers;
	// with 0 it reads only the last one itself. Set it when handling a
	// message seldom waits (a read that waits hands the loop on, and each
	// hand-off wakes a worker).
	PollBudget time.Duration
	// Pollers is how many epoll loops read the sockets, each for its
	// share of the connections (given out in turn). 0 means twice
	// GOMAXPROCS: a loop busy with its batch leaves the sockets that
	// become ready meanwhile to the others, parked and woken at once,
	// rather than making them wait for the batch's end (docs/benchmarks.md,
	// "More than one poller").
	Pollers int
	// InlineWritten says Handler.Written never waits: Write and WriteMany
	// then write tagged frames on the calling goroutine as they do others,
	// and call Written there once the socket took them. Otherwise tagged
	// frames go to a flusher, which calls Written.
	InlineWritten bool
}

// writerTags are the tags a writer collects (buf, reused) and those of
// frames a Write left partly written to the flusher, which reports them
// once it wrote the rest (held).
type writerTags struct {
	held, buf []string
}

// ReadBatcher is implemented by a Handler that holds work back across the
// messages of one read (the hub: the writes of their deliveries and
// receipts, so that a client's burst goes out in few system calls).
// ReadDone is called on the goroutine reading the connection after the
// messages of each read were handled, and before that goroutine waits for
// anything of its own (a pong's write, the end of the connection) or
// leaves a read that panicked.
type ReadBatcher interface {
	ReadDone()
}

// Handler receives one connection's events.
type Handler interface {
	// Message handles one whole text message, valid UTF-8. It is called
	// on the goroutine reading the connection, one message at a time, in
	// order; data is valid only during the call.
	Message(data []byte)
	// Written is called after frames queued with a Tag were written to
	// the socket, with their tags, on a writer goroutine (with
	// Config.InlineWritten, possibly the goroutine that called Write). tags
	// is valid only during the call.
	Written(tags []string)
	// Closed is called once, when the connection ended and its socket is
	// closed, with what ended it: nil after a normal close handshake
	// (1000 or 1001 from the peer, or the peer's answer to ours).
	Closed(err error)
}

// Transport accepts WebSocket connections and drives them: on Linux an
// epoll loop reads the sockets of plain TCP connections, so that an idle
// connection has no goroutine; others (TLS) get a reader goroutine each.
type Transport struct {
	cfg      Config
	upgrader websocket.Upgrader
	pool     sync.Pool // *[]byte write buffers of the gatherConns
	polls    []*poller // none where every connection has a reader goroutine
	nextPoll atomic.Uint32
	work     workers // run the reads of ready sockets and the flushers
	rings    rings   // io_uring instances for WriteMany
}

// New makes a Transport. Close it after every connection ended.
func New(cfg Config) *Transport {
	t := &Transport{cfg: cfg}
	t.upgrader = websocket.Upgrader{
		ReadBufferSize:  256,
		WriteBufferSize: 256,
		WriteBufferPool: &sync.Pool{},
		// The caller checks the origin before Upgrade.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	t.pool.New = func() any { b := make([]byte, 0, 4096); return &b }
	pollers := cfg.Pollers
	if pollers <= 0 {
		pollers = 2 * runtime.GOMAXPROCS(0)
	}
	for i := range min(pollers, maxPollers) {
		p, err := newPoller(&t.work, cfg.PollBudget, i)
		if err != nil {
			cfg.Logger.Debug("wsconn: no poller; one reader goroutine per connection", slog.Any("err", err))
			break
		}
		t.polls = append(t.polls, p)
		go p.loop()
	}
	return t
}

// poller returns the epoll loop the next connection goes to, or nil.
func (t *Transport) poller() *poller {
	if len(t.polls) == 0 {
		return nil
	}
	return t.polls[int(t.nextPoll.Add(1))%len(t.polls)]
}

// Close releases the epoll loop and the idle workers. Call it once no
// connection is left.
func (t *Transport) Close() {
	for _, p := range t.polls {
		p.close()
	}
	t.work.stop()
	t.rings.close()
}

// Upgrade answers a WebSocket handshake (RFC 6455 section 4; a bad one is
// answered with an HTTP error and returned) and returns the connection,
// which reads nothing until Serve. Its frames go to h; batch joins the
// frames queued together into one text frame, separated by newlines. mu
// is the connection's lock, shared with its owner, whose per-connection
// state it may also guard (so that queueing a frame under the owner's
// rules takes one lock: QueueLocked); nil gives the connection a lock of
// its own.
func (t *Transport) Upgrade(w http.ResponseWriter, r *http.Request, h Handler, batch bool, mu *sync.Mutex) (*Conn, error) {
	hj := &hijacker{ResponseWriter: w, pool: &t.pool}
	ws, err := t.upgrader.Upgrade(hj, r, nil)
	if err != nil {
		return nil, err
	}
	// gorilla/websocket did the handshake; its Conn, and its buffers, are
	// not used past here (it refuses a client that sent bytes before the
	// handshake's answer, so none is lost in its reader).
	_ = ws
	if mu == nil {
		mu = new(sync.Mutex)
	}
	c := &Conn{t: t, h: h, gc: hj.conn, batch: batch, mu: mu}
	c.rd, _ = h.(ReadBatcher)
	c.lastFrame.Store(time.Now().UnixNano())
	return c, nil
}

// Conn is one WebSocket connection. Its socket is read by one goroutine
// at a time (the epoll loop's, or its reader goroutine), which calls
// Handler.Message in order. It is written by at most one goroutine at a
// time, which holds the writer role: the one that queued the first frame,
// with a non-blocking write (Write), or a flusher goroutine started on
// demand while frames wait for the socket. Control frames (pings, pongs,
// close) go through the gatherConn, whose lock keeps frames whole.
type Conn struct {
	t  *Transport
	h  Handler
	rd ReadBatcher // h, when it is one
	gc *gatherConn

	mu *sync.Mutex // see Upgrade
	// queue holds frames waiting for the writer, qbytes their size;
	// spare is a written batch's array kept for reuse.
	queue  []Frame // guarded by mu
	spare  []Frame // guarded by mu
	qbytes int     // guarded by mu
	// tags, used by the writer role's holder, is made at the first
	// tagged frame written with Config.InlineWritten.
	tags *writerTags
	// drained, made when WaitRoom first waits, is signalled (on mu) when
	// the writer takes the queue.
	drained *sync.Cond // guarded by mu
	// closeMsg is the close frame to send; the writer sends it after the
	// queue when writerCloses is set (a draining close). closeSent: it was
	// written; peerClosed: the peer's close frame was read.
	closeMsg     []byte // guarded by mu
	writerCloses bool   // guarded by mu
	closeSent    bool   // guarded by mu
	peerClosed   bool   // guarded by mu
	finished     bool   // guarded by mu: finish ran
	writing      bool   // guarded by mu: someone holds the writer role
	closing      bool   // guarded by mu: a close began; nothing more is queued
	frameArmed   bool   // guarded by mu: frameTimer will run checkFrame
	batch        bool
	// endErr is what a close handshake ends the connection with: the
	// peer's close code when it is not a normal one.
	endErr     error       // guarded by mu
	pinger     *time.Timer // guarded by mu
	grace      *time.Timer // guarded by mu: ends a close the peer does not answer
	frameTimer *time.Timer // guarded by mu: checks partialSince

	// p and rbuf are used by the goroutine reading the connection, one
	// at a time.
	p    parser
	rbuf *[]byte // an incomplete header kept for the next read; nil when none

	lastFrame    atomic.Int64 // UnixNano when the last whole frame was read
	partialSince atomic.Int64 // UnixNano when the incomplete frame began; 0: none

	// Set by poller.add, then read-only; pollFD is the socket's
	// descriptor, valid while not finished (guarded by mu).
	raw    rawReader
	polled bool
	// reading: a worker reads the socket; again: an event came meanwhile,
	// so it reads once more before it stops.
	reading, again bool // guarded by mu
	pollFD         int
	pollID         uint64
	// inline is the poller whose goroutine reads the connection in its
	// place (readInline), until Blocking hands polling on; nil otherwise.
	inline atomic.Pointer[poller]
}

// RemoteAddr returns the peer's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.gc.RemoteAddr() }

// Serve starts reading the connection and pinging it.
func (c *Conn) Serve() {
	cfg := &c.t.cfg
	c.p.limit = cfg.ReadLimit
	c.mu.Lock()
	if c.finished {
		c.mu.Unlock()
		return
	}
	// Spread the pings of connections that arrived together.
	d := cfg.PingInterval
	c.pinger = time.AfterFunc(d/2+rand.N(d/2+1), c.sendPing)
	c.mu.Unlock()
	if p := c.t.poller(); p == nil || !p.add(c) {
		cfg.Goroutines.Add(1) // while the connection is counted by its owner
		go c.readBlocking()
	}
}

// Closing reports whether a close began.
func (c *Conn) Closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// ClosingLocked is Closing for a caller that holds the connection's lock.
func (c *Conn) ClosingLocked() bool { return c.closing }

// Close closes the connection with a close frame of code and reason. With
// drain, the frames already queued are written first; without, they are
// dropped. The peer then has closeGrace to answer before the socket is
// closed. It never blocks.
func (c *Conn) Close(code int, reason string, drain bool) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	if len(reason) > 123 { // a control frame's payload is at most 125 bytes
		reason = strings.ToValidUTF8(reason[:123], "")
	}
	c.closeMsg = websocket.FormatCloseMessage(code, reason)
	if f := c.t.cfg.CloseSent; f != nil {
		f(code)
	}
	if !drain {
		clear(c.queue)
		c.queue, c.qbytes = c.queue[:0], 0
	}
	c.writerCloses = drain && c.writing
	c.broadcastLocked()
	c.grace = time.AfterFunc(closeGrace+c.t.cfg.WriteTimeout, func() { c.finish(ErrNoAnswer) })
	byWriter := c.writerCloses
	c.mu.Unlock()
	if !byWriter {
		go c.writeClose()
	}
}

// Abort ends the connection at once, without a close handshake: its socket
// is closed and Handler.Closed gets err.
func (c *Conn) Abort(err error) { c.end(err, true) }

// writeClose writes the close frame, and ends the connection when the
// peer's close came already; else it gives the peer closeGrace to answer.
func (c *Conn) writeClose() {
	c.mu.Lock()
	msg := c.closeMsg
	c.mu.Unlock()
	if err := c.gc.writeControl(opClose, msg, c.t.cfg.WriteTimeout); err != nil {
		c.finish(err)
		return
	}
	c.mu.Lock()
	c.closeSent = true
	answered := c.peerClosed
	if c.grace != nil {
		c.grace.Reset(closeGrace)
	}
	c.mu.Unlock()
	if answered {
		c.finish(errPeerClose)
	}
}

// sendPing ends a connection that sent no whole frame for PongTimeout, or
// writes a ping frame and schedules the next one.
func (c *Conn) sendPing() {
	cfg := &c.t.cfg
	if c.Closing() {
		return
	}
	if time.Since(time.Unix(0, c.lastFrame.Load())) > cfg.PongTimeout {
		c.finish(ErrSilent)
		return
	}
	if err := c.gc.writeControl(opPing, nil, cfg.WriteTimeout); err != nil {
		c.finish(err)
		return
	}
	c.mu.Lock()
	if !c.closing {
		c.pinger.Reset(cfg.PingInterval)
	}
	c.mu.Unlock()
}

// checkFrame runs FrameTimeout after a frame was left incomplete: it
// closes the connection when that frame (or a later incomplete one that
// began as long ago) is still incomplete, and checks again later when a
// newer one is.
func (c *Conn) checkFrame() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frameArmed = false
	since := c.partialSince.Load()
	if since == 0 || c.finished {
		return
	}
	left := c.t.cfg.FrameTimeout - time.Since(time.Unix(0, since))
	if left > 0 {
		c.frameArmed = true
		c.frameTimer.Reset(left)
		return
	}
	c.t.cfg.Logger.Debug("wsconn: message not completed in time", slog.String("peer", c.RemoteAddr().String()))
	go c.Close(ClosePolicy, "message not completed in time", false)
}

// readChunk is the size of a read.
const readChunk = 4 << 10

// rawReader reads a socket without blocking.
type rawReader interface {
	readNow(p []byte) (int, error)
	// rearms reports whether bytes that arrive after a read raise a new
	// event that reads them (the poller's sockets), so that a read that
	// came back short need not be followed by one that would only report
	// errWouldBlock.
	rearms() bool
}

// readPool holds the read buffers (*[]byte of readChunk+maxHeader); a
// connection holds one only while it reads.
var readPool = sync.Pool{New: func() any { b := make([]byte, 0, readChunk+maxHeader); return &b }}

// readReady reads what the socket holds (without blocking, from the
// poller; or waiting, from readBlocking) and handles every frame; it
// reports whether the connection goes on (the socket is to be armed
// again).
func (c *Conn) readReady(rc rawReader) (goOn bool) {
	defer c.recoverRead(&goOn)
	buf := c.rbuf
	if buf == nil {
		buf = readPool.Get().(*[]byte)
	}
	c.rbuf = nil
	defer func() {
		if c.rbuf != buf {
			*buf = (*buf)[:0]
			readPool.Put(buf)
		}
	}()
	for {
		b := *buf
		asked := cap(b) - len(b)
		got, err := rc.readNow(b[len(b):cap(b)])
		if got > 0 {
			frames, units := c.p.frames, c.p.units
			rest, fail := c.p.feed(b[:len(b)+got], c)
			c.readDone()
			if c.p.frames != frames {
				c.lastFrame.Store(time.Now().UnixNano())
			}
			*buf = append(b[:0], rest...)
			if fail != nil {
				c.fail(fail)
			}
			if c.isFinished() {
				return false
			}
			c.notePartial(len(rest) > 0 || c.p.busy(), c.p.units != units)
		}
		switch {
		case err == errWouldBlock, err == nil && got > 0 && got < asked && rc.rearms():
			// The socket is empty: a short read took all it had (one
			// system call fewer per event than reading to EAGAIN).
			if len(*buf) > 0 {
				c.rbuf = buf
			}
			return true
		case err != nil:
			c.finish(err)
			return false
		case got == 0:
			c.finish(errPeerClose) // EOF
			return false
		}
	}
}

// notePartial records, after a read, whether the peer left a message (or
// a control frame) incomplete, and since when: since the read when done
// says a message or control frame completed, else since it was first
// seen incomplete. It arms the frame timer for it.
func (c *Conn) notePartial(partial, done bool) {
	switch {
	case !partial:
		c.partialSince.Store(0)
		return
	case done || c.partialSince.Load() == 0:
		c.partialSince.Store(time.Now().UnixNano())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.finished || c.frameArmed {
		return
	}
	c.frameArmed = true
	if c.frameTimer == nil {
		c.frameTimer = time.AfterFunc(c.t.cfg.FrameTimeout, c.checkFrame)
	} else {
		c.frameTimer.Reset(c.t.cfg.FrameTimeout)
	}
}

// fail answers a broken stream: the close frame with the failure's code,
// after what the connection owes for the frames read before.
func (c *Conn) fail(f *failure) {
	c.t.cfg.Logger.Debug("wsconn: failing connection", slog.String("peer", c.RemoteAddr().String()),
		slog.Int("code", f.code), slog.String("reason", f.reason))
	c.mu.Lock()
	if c.endErr == nil && !c.closing {
		c.endErr = &CloseError{Code: f.code, Reason: f.reason}
	}
	// A bad close frame is still the peer's close: it will not answer
	// ours, so the connection ends once ours is out.
	c.peerClosed = c.peerClosed || f.closed
	answered := f.closed && c.closeSent
	c.mu.Unlock()
	if answered { // the peer's close answered ours, badly: done all the same
		c.finish(errPeerClose)
		return
	}
	c.Close(f.code, f.reason, true)
}

// message passes a text message to the handler, unless a close began.
func (c *Conn) message(p []byte) {
	if c.Closing() {
		return
	}
	c.h.Message(p)
}

// readDone calls the handler's ReadDone, if it has one (see ReadBatcher),
// on the reading goroutine.
func (c *Conn) readDone() {
	if c.rd != nil {
		c.rd.ReadDone()
	}
}

// ping answers a ping frame with a pong of the same payload.
func (c *Conn) ping(p []byte) {
	c.readDone()
	c.Blocking() // the write waits while the peer does not read
	if err := c.gc.writeControl(opPong, p, c.t.cfg.WriteTimeout); err != nil {
		c.finish(err)
	}
}

// closeFrame handles the peer's close frame: the answer to ours ends the
// connection now; a close of the peer's own is answered, after the frames
// queued before it, and the connection ends once that answer is written.
func (c *Conn) closeFrame(code int, reason string) {
	c.readDone() // the connection may end here
	c.mu.Lock()
	c.peerClosed = true
	began, sent := c.closing, c.closeSent
	c.mu.Unlock()
	if began {
		if sent {
			c.finish(errPeerClose)
		}
		return // writeClose ends it once our close is out
	}
	echo := code
	if code == closeNoStatus {
		echo = CloseNormal
	}
	if code != CloseNormal && code != CloseGoingAway && code != closeNoStatus {
		c.mu.Lock()
		c.endErr = &CloseError{Code: code, Reason: reason}
		c.mu.Unlock()
	}
	c.Close(echo, "", true)
}

// readBlocking is the reader goroutine of a connection the poller cannot
// serve: the same loop as readReady, with reads that wait for bytes, until
// the connection ends.
func (c *Conn) readBlocking() {
	defer c.t.cfg.Goroutines.Done()
	c.readReady(blockingReader{c.gc.Conn})
}

// blockingReader reads a connection with calls that wait for bytes; it
// never reports errWouldBlock.
type blockingReader struct{ c net.Conn }

func (blockingReader) rearms() bool { return false }

func (r blockingReader) readNow(p []byte) (int, error) {
	got, err := r.c.Read(p)
	if got > 0 {
		return got, nil // an error comes again with the next read
	}
	if err == nil {
		err = errPeerClose
	}
	return 0, err
}

// recoverRead turns a panic while reading (a bug) into the end of that
// connection, logged with its stack, instead of the end of the process.
func (c *Conn) recoverRead(goOn *bool) {
	if v := recover(); v != nil {
		c.t.cfg.Logger.Error("wsconn: reading a connection panicked",
			slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
		*goOn = false
		c.readDone()
		c.finish(ErrReadPanic)
	}
}

// readable runs in the poller's loop when the socket got bytes: it hands
// the connection to a worker that reads and handles them or, while one
// does, tells that worker to read again before it stops (the socket is
// edge-triggered: bytes that arrive during a read raise a new event).
func (c *Conn) readable() {
	c.mu.Lock()
	switch {
	case c.finished:
		c.mu.Unlock()
		return
	case c.reading:
		c.again = true
		c.mu.Unlock()
		return
	}
	c.reading = true
	c.t.cfg.Goroutines.Add(1) // counted while the connection is, so never from zero
	c.mu.Unlock()
	c.t.work.run(c, (*Conn).readPolled)
}

// readInline reads the ready socket on the goroutine of the poller's loop
// instead of handing it to a worker (readable), which saves waking a
// thread for the worker: the loop reads the last socket of each batch of
// events itself. It reports whether that goroutine still polls: a read
// that may block hands polling on to another goroutine first (Blocking),
// and the loop's goroutine then returns when the read is done.
func (c *Conn) readInline(p *poller) bool {
	c.mu.Lock()
	switch {
	case c.finished:
		c.mu.Unlock()
		return true
	case c.reading:
		c.again = true
		c.mu.Unlock()
		return true
	}
	c.reading = true
	c.t.cfg.Goroutines.Add(1)
	c.inline.Store(p)
	c.mu.Unlock()
	c.readPolled()
	return c.inline.Swap(nil) != nil
}

// Blocking tells the connection that the goroutine reading it is about to
// wait for something (a store's I/O, the application's code): when that
// goroutine is the transport's poller, reading the connection in its place
// (readInline), it hands polling on to another goroutine first, so that no
// other connection's read waits behind it. Otherwise it does nothing. Call
// it from Handler.Message before a call that may wait; the connection
// calls it itself before its own waits (a pong's write, a lingering
// close).
func (c *Conn) Blocking() {
	if c.inline.Load() == nil {
		return
	}
	if p := c.inline.Swap(nil); p != nil {
		p.handoff()
	}
}

// readPolled reads a ready socket (see readable), on a worker or the
// poller's goroutine, until no event came during its last read.
func (c *Conn) readPolled() {
	defer c.t.cfg.Goroutines.Done()
	for c.readReady(c.raw) {
		c.mu.Lock()
		if !c.again || c.finished {
			c.reading = false
			c.mu.Unlock()
			return
		}
		c.again = false
		c.mu.Unlock()
	}
}

// isFinished reports whether finish ran.
func (c *Conn) isFinished() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.finished
}

// finish ends the connection: see end. A connection that ends by a
// timeout is closed at once, others after a linger (lingerClose).
func (c *Conn) finish(err error) {
	var ne net.Error
	abrupt := (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, ErrSilent) || errors.Is(err, ErrNoAnswer)
	c.end(err, abrupt)
}

// end ends the connection, once, whoever calls it first (its reader, its
// writer, a timer, Abort): it closes the socket, at once when abrupt, and
// calls Handler.Closed.
func (c *Conn) end(err error, abrupt bool) {
	c.mu.Lock()
	if c.finished {
		c.mu.Unlock()
		return
	}
	c.finished, c.closing = true, true
	clear(c.queue)
	c.queue, c.spare, c.qbytes = nil, nil, 0
	c.broadcastLocked()
	for _, t := range []*time.Timer{c.pinger, c.grace, c.frameTimer} {
		if t != nil {
			t.Stop()
		}
	}
	if c.polled {
		c.t.polls[pollerOf(c.pollID)].removeLocked(c) // before the descriptor is closed and reused
	}
	if errors.Is(err, errPeerClose) {
		err = c.endErr
	}
	c.mu.Unlock()
	c.Blocking() // the linger and Handler.Closed may wait
	if abrupt {
		c.gc.Close() // the peer went silent: nothing to linger for
	} else {
		c.lingerClose()
	}
	c.h.Closed(err)
}

// lingerClose closes the socket after letting the peer read what was
// written: it shuts down the sending side, then discards input until the
// peer closes or a short time passed. Closing a socket with unread input
// would reset it, and the peer could lose the close frame.
func (c *Conn) lingerClose() {
	if tc, ok := c.gc.tcp(); ok {
		tc.CloseWrite()
		tc.SetReadDeadline(time.Now().Add(closeGrace))
		io.Copy(io.Discard, io.LimitReader(tc, 1<<20))
	}
	c.gc.Close()
}

// appendFrame appends an unmasked server frame of op with payload p.
func appendFrame(b []byte, op byte, p []byte) []byte {
	return append(appendHeader(b, op, len(p)), p...)
}

// appendHeader appends the header of an unmasked, final server frame of op
// with a payload of n bytes (RFC 6455 section 5.2).
func appendHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xFFFF:
		return append(b, 126, byte(n>>8), byte(n))
	}
	b = append(b, 127)
	return binary.BigEndian.AppendUint64(b, uint64(n))
}

// pollerShift places a poller's number in the top bits of the ids of its
// epoll registrations, so that a connection finds its poller by its id;
// maxPollers is how many numbers that leaves.
const (
	pollerShift = 56
	maxPollers  = 1 << (64 - pollerShift)
)

// pollerOf returns the number of the poller that gave id.
func pollerOf(id uint64) int { return int(id >> pollerShift) }
