package wshub

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"
)

// Close codes of SPEC.md section 5 that the hub sends, besides those of
// RFC 6455 that gorilla/websocket names.
const (
	// CloseTryAgainLater: the connection's send queue was full.
	CloseTryAgainLater = 1013
	// CloseReplaced: the user opened more connections than allowed.
	CloseReplaced = 4000
)

// closeGrace is how long a connection that was sent a close frame may take
// to answer it before its socket is closed.
const closeGrace = 2 * time.Second

// maxBatchBytes bounds one text frame of several objects on a batch=1
// connection.
const maxBatchBytes = 32 << 10

// outFrame is one encoded frame waiting to be written to a connection.
type outFrame struct {
	data []byte
	// pendingID is the id of a direct message to this connection's user:
	// on a connection without ack=1 it leaves the user's pending queue
	// once written.
	pendingID string
	// conv and seq place a stored message in its conversation; empty for
	// other frames.
	conv string
	seq  uint64
}

// Node is one WebSocket connection of a user.
//
// Its socket is read by one goroutine at a time, which dispatches the
// frames in order: on Linux one the hub's epoll loop starts when the
// socket has bytes (an idle connection has none), elsewhere or over TLS a
// reader goroutine (reader.go). It is written by at most one goroutine at
// a time: the delivery that queued the first frame, with a non-blocking
// write (writeNow), or the flusher, started on demand while frames are
// queued that need waiting for the socket, so that an idle connection
// parks no writer. Control frames (pings, pongs, close)
// go through gorilla/websocket's WriteControl, which a timer or the
// reader may call alongside the flusher.
type Node struct {
	hub     *Hub
	conn    *websocket.Conn
	gc      *gatherConn // under conn
	id      string
	user    string
	ack     bool // ack=1: pending messages leave the queue by cmd 14 only
	batch   bool // batch=1: several objects may share one text frame
	created time.Time

	mu sync.Mutex
	// ctx and cancel are made on first use (most idle connections never
	// need them), guarded by mu; finished says finish ran.
	ctx      context.Context
	cancel   context.CancelFunc
	finished bool
	// drained, made when sendPending first waits, is signalled (on mu)
	// when the flusher takes the queue.
	drained *sync.Cond
	queue   []outFrame // guarded by mu: frames waiting for the flusher
	spare   []outFrame // guarded by mu: a drained queue kept for reuse
	writing bool       // guarded by mu: someone holds the writer role (writeNow or a flusher)
	syncing bool       // guarded by mu: pending queue not yet sent; live frames wait in held
	holding string     // guarded by mu: a room's conversation being replayed; its live frames wait in held
	held    []outFrame // guarded by mu
	// floor maps a conversation to the newest seq this connection got
	// from the pending queue or a replay: a live copy at or below it,
	// which a store's feed can deliver late, is dropped. An entry goes
	// with the first newer live frame. Guarded by mu; nil until needed.
	floor   map[string]uint64
	closing bool // guarded by mu: closing; nothing more is queued
	// closeMsg is the close frame to send; the flusher writes it after
	// the queue when flusherCloses is set (a draining close).
	closeMsg      []byte      // guarded by mu
	flusherCloses bool        // guarded by mu
	ping          *time.Timer // guarded by mu

	grace *time.Timer // guarded by mu: ends a close the peer does not answer

	// in, limiter and overLimit are used by the goroutine reading the
	// connection, one at a time (see reader.go).
	in        input
	limiter   *rate.Limiter // nil without Options.RateLimit
	overLimit int           // frames refused in a row

	lastRead atomic.Int64 // UnixNano of the last bytes read

	// Set by poller.add, then read-only; pollFD is the socket's
	// descriptor, valid while not finished (guarded by mu).
	raw    rawReader
	polled bool
	pollFD int
	pollID uint64
}

func newNode(h *Hub, conn *websocket.Conn, gc *gatherConn, user string, ack, batch bool) *Node {
	n := &Node{
		hub: h, conn: conn, gc: gc, id: uuid.NewString(), user: user, ack: ack, batch: batch,
		created: time.Now(), syncing: true,
	}
	if h.opts.RateLimit > 0 {
		n.limiter = rate.NewLimiter(h.opts.RateLimit, h.opts.RateBurst)
	}
	return n
}

// ID returns the connection's id, unique per connection.
func (n *Node) ID() string { return n.id }

// UserID returns the authenticated user of the connection.
func (n *Node) UserID() string { return n.user }

// Context returns the connection's context, cancelled when it closes.
func (n *Node) Context() context.Context {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ctx == nil {
		n.ctx, n.cancel = context.WithCancel(n.hub.ctx)
		if n.finished {
			n.cancel()
		}
	}
	return n.ctx
}

// broadcastLocked wakes sendPending if it waits for room in the queue.
// The caller holds mu.
func (n *Node) broadcastLocked() {
	if n.drained != nil {
		n.drained.Broadcast()
	}
}

// RemoteAddr returns the network address of the peer.
func (n *Node) RemoteAddr() string { return n.gc.RemoteAddr().String() }

// AckMode reports whether the connection opted into explicit acks (ack=1).
func (n *Node) AckMode() bool { return n.ack }

// Connected returns when the connection was accepted.
func (n *Node) Connected() time.Time { return n.created }

// Send queues f for this connection. It never blocks: when the queue is
// full the connection is closed with 1013 and Send returns ErrClosed, as it
// does once the connection is closing.
func (n *Node) Send(f *Frame) error {
	data, err := f.Encode()
	if err != nil {
		return err
	}
	if !n.push(outFrame{data: data}, true, nil) {
		return ErrClosed
	}
	return nil
}

// Close closes the connection with a close frame of code and reason,
// after the frames already queued for it are written.
func (n *Node) Close(code int, reason string) { n.startClose(code, reason, true) }

// enqueue queues a live frame: while the connection is still sending its
// pending queue, it waits behind it. See push for st.
func (n *Node) enqueue(f outFrame, st *starter) bool { return n.push(f, false, st) }

// push queues f. A live frame (now false) is dropped when the
// connection already has it (floor), and held back while the pending
// queue, or a replay of its room, is being sent. When no writer runs,
// push starts the flusher, or, given a starter, leaves the connection in
// it to be written by the caller once it released its locks. It reports
// false when the connection is closing or its queue is full (then it
// starts closing with 1013).
func (n *Node) push(f outFrame, now bool, st *starter) bool {
	n.mu.Lock()
	if n.closing {
		n.mu.Unlock()
		return false
	}
	if !now {
		if f.seq > 0 && n.floor != nil {
			if fl, ok := n.floor[f.conv]; ok {
				if f.seq <= fl {
					n.mu.Unlock()
					return true // sent already
				}
				delete(n.floor, f.conv)
			}
		}
		if n.syncing || (n.holding != "" && f.conv == n.holding) {
			if len(n.held) >= n.hub.opts.SendQueue {
				n.mu.Unlock()
				n.closeWith(CloseTryAgainLater, "send queue full")
				return false
			}
			n.held = append(n.held, f)
			n.mu.Unlock()
			return true
		}
	}
	start, ok := n.queueLocked(f)
	n.mu.Unlock()
	if !ok {
		n.closeWith(CloseTryAgainLater, "send queue full")
		return false
	}
	if start {
		if st != nil {
			st.nodes = append(st.nodes, n)
		} else {
			go n.flush()
		}
	}
	return true
}

// queueLocked appends f to the queue. It reports whether the caller must
// start a flusher, and false when the queue is full. The caller holds mu.
func (n *Node) queueLocked(f outFrame) (start, ok bool) {
	if len(n.queue) >= n.hub.opts.SendQueue {
		return false, false
	}
	n.queue = append(n.queue, f)
	start = !n.writing
	n.writing = true
	if start {
		// Counted while the reader still runs, so never from zero.
		n.hub.nodes.Add(1)
	}
	return start, true
}

// release ends a hold (the pending sync, or the replay of conv), raising
// the floor of each conversation in sent, and queues the frames held
// meanwhile that were not sent already, all under one lock, so that no
// newer live frame overtakes them.
func (n *Node) release(sent map[string]uint64) {
	n.mu.Lock()
	held := n.held
	n.held, n.syncing, n.holding = nil, false, ""
	if n.closing {
		n.mu.Unlock()
		return
	}
	for conv, seq := range sent {
		if seq == 0 {
			continue
		}
		if n.floor == nil {
			n.floor = make(map[string]uint64, len(sent))
		}
		n.floor[conv] = max(n.floor[conv], seq)
	}
	start, ok := false, true
	for _, f := range held {
		if f.seq > 0 && f.seq <= n.floor[f.conv] {
			continue
		}
		var st bool
		if st, ok = n.queueLocked(f); !ok {
			break
		}
		start = start || st
	}
	n.mu.Unlock()
	if !ok {
		n.closeWith(CloseTryAgainLater, "send queue full")
	}
	if start {
		go n.flush()
	}
}

// tryBytes bounds the frames writeNow writes itself; a longer queue goes
// to a flusher.
const tryBytes = maxGather / 2

// writeNow writes the queue of a connection whose writer role the caller
// took (queueLocked said start), without waiting for the socket: what the
// socket does not take at once, a queue longer than tryBytes, and direct
// messages that leave the pending queue once written (a store call) go
// to a flusher goroutine. Writing from the delivering goroutine saves a
// goroutine start, and the stack growth of a fresh goroutine, per
// delivery to an idle connection.
func (n *Node) writeNow() {
	if !n.gc.canTry() {
		go n.flush()
		return
	}
	for {
		n.mu.Lock()
		if len(n.queue) == 0 {
			closes := n.giveUpLocked()
			n.mu.Unlock()
			if closes {
				go n.writeClose()
			}
			n.hub.nodes.Done()
			return
		}
		size := 0
		for _, f := range n.queue {
			size += len(f.data) + 10
			if f.pendingID != "" && !n.ack {
				size = tryBytes
			}
		}
		if size >= tryBytes {
			n.mu.Unlock()
			go n.flush()
			return
		}
		batch := n.takeLocked()
		n.mu.Unlock()

		n.gc.gather()
		err := n.write(batch) // under maxGather: gathered only
		done := false
		if err == nil {
			done, err = n.gc.tryFlush()
		}
		n.recycle(batch)
		if err != nil {
			n.writeFailed(err)
			n.hub.nodes.Done()
			return
		}
		if !done {
			go n.flush() // writes the rest first
			return
		}
	}
}

// takeLocked takes the queued frames for a writer's pass. The caller holds
// mu.
func (n *Node) takeLocked() []outFrame {
	batch := n.queue
	n.queue, n.spare = n.spare[:0], nil
	n.broadcastLocked()
	return batch
}

// recycle keeps a written batch's array for the next queue.
func (n *Node) recycle(batch []outFrame) {
	clear(batch)
	n.mu.Lock()
	n.spare = batch[:0]
	n.mu.Unlock()
}

// giveUpLocked ends the writer role once the queue is empty and reports
// whether the close frame is the writer's to send (a draining close). The
// caller holds mu.
func (n *Node) giveUpLocked() (closes bool) {
	n.writing = false
	return n.flusherCloses
}

// writeFailed ends the connection after a failed write.
func (n *Node) writeFailed(err error) {
	n.mu.Lock()
	n.closing, n.writing = true, false
	n.queue, n.held = nil, nil
	n.broadcastLocked()
	n.mu.Unlock()
	n.hub.log.Debug("wshub: write failed", slog.String("conn", n.id), slog.Any("err", err))
	n.finish(err)
}

// flush writes queued frames until the queue is empty, then exits; it
// first writes what a writeNow left. Only one flusher runs per connection
// (guarded by writing).
func (n *Node) flush() {
	defer n.hub.nodes.Done()
	if err := n.gc.flush(); err != nil {
		n.writeFailed(err)
		return
	}
	var acks []string
	for {
		n.mu.Lock()
		if len(n.queue) == 0 {
			closes := n.giveUpLocked()
			n.mu.Unlock()
			if closes {
				n.writeClose()
			}
			return
		}
		batch := n.takeLocked()
		n.mu.Unlock()

		n.gc.gather()
		err := n.write(batch)
		if ferr := n.gc.flush(); err == nil {
			err = ferr
		}
		acks = acks[:0]
		if err == nil && !n.ack {
			for _, f := range batch {
				if f.pendingID != "" {
					acks = append(acks, f.pendingID)
				}
			}
		}
		n.recycle(batch)
		if err != nil {
			n.writeFailed(err)
			return
		}
		if len(acks) > 0 {
			// Written to a connection without ack=1: delivered (SPEC 4).
			if err := n.hub.store.Ack(n.hub.ctx, n.user, acks...); err != nil {
				n.hub.log.Warn("wshub: ack after write failed", slog.String("user", n.user), slog.Any("err", err))
			}
		}
	}
}

// write writes a batch of frames to the socket; several per text frame on
// a batch=1 connection. It frames them itself (server frames are a short
// header and the unmasked payload) into the gatherConn, so that one
// encoded message is shared by all its recipients without copies through
// gorilla/websocket's writer, which writes only control frames. The
// caller gathers and flushes; the gatherConn's lock keeps those control
// frames whole between these.
func (n *Node) write(batch []outFrame) error {
	if err := n.gc.extendWriteDeadline(n.hub.opts.WriteTimeout); err != nil {
		return err
	}
	var group [][]byte // for batch=1: the payloads of one text frame
	size := 0
	for _, f := range batch {
		if !n.batch {
			n.gc.appendText(f.data)
		} else {
			if len(group) > 0 && size+1+len(f.data) > maxBatchBytes {
				n.gc.appendText(group...)
				group, size = group[:0], 0
			}
			group = append(group, f.data)
			size += len(f.data) + 1
		}
		if n.gc.full() {
			if err := n.gc.flush(); err != nil {
				return err
			}
			n.gc.gather()
		}
	}
	if len(group) > 0 {
		n.gc.appendText(group...)
	}
	return nil
}

// closeWith starts closing the connection with a close frame, dropping
// the frames still queued (direct messages among them stay in the user's
// pending queue). It never blocks.
func (n *Node) closeWith(code int, reason string) { n.startClose(code, reason, false) }

// startClose marks the connection closing and has the close frame
// written: by the flusher after the queue when drain is set and a flusher
// runs, else by a goroutine of its own (it may wait for the write timeout
// on a full socket). The reader closes the socket when the peer answers or
// closeGrace passed.
func (n *Node) startClose(code int, reason string, drain bool) {
	n.mu.Lock()
	if n.closing {
		n.mu.Unlock()
		return
	}
	n.closing = true
	n.closeMsg = websocket.FormatCloseMessage(code, reason)
	if !drain {
		n.queue, n.held = nil, nil
	}
	n.flusherCloses = drain && n.writing
	n.broadcastLocked()
	n.grace = time.AfterFunc(closeGrace+n.hub.opts.WriteTimeout, func() { n.finish(errNoAnswer) })
	byFlusher := n.flusherCloses
	n.mu.Unlock()
	if !byFlusher {
		go n.writeClose()
	}
}

// writeClose writes the close frame and gives the peer closeGrace to
// answer it.
func (n *Node) writeClose() {
	n.mu.Lock()
	msg := n.closeMsg
	n.mu.Unlock()
	if err := n.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(n.hub.opts.WriteTimeout)); err != nil {
		n.finish(err)
		return
	}
	n.mu.Lock()
	if n.grace != nil {
		n.grace.Reset(closeGrace)
	}
	n.mu.Unlock()
}

// isClosing reports whether the connection is closing.
func (n *Node) isClosing() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closing
}

// isFinished reports whether finish ran.
func (n *Node) isFinished() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.finished
}

// sendPing ends a connection silent for PongTimeout, or writes a
// WebSocket ping and schedules the next one.
func (n *Node) sendPing() {
	n.mu.Lock()
	if n.closing {
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	if time.Since(time.Unix(0, n.lastRead.Load())) > n.hub.opts.PongTimeout {
		n.finish(errSilent)
		return
	}
	if err := n.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(n.hub.opts.WriteTimeout)); err != nil {
		n.finish(err)
		return
	}
	n.mu.Lock()
	if !n.closing {
		n.ping.Reset(n.hub.opts.PingInterval)
	}
	n.mu.Unlock()
}

// readable runs in the poller's loop when the socket has bytes: it starts
// a goroutine that reads and handles them, then arms the socket again.
func (n *Node) readable() {
	n.mu.Lock()
	if n.finished {
		n.mu.Unlock()
		return
	}
	n.hub.nodes.Add(1) // counted while the node is, so never from zero
	n.mu.Unlock()
	go func() {
		defer n.hub.nodes.Done()
		if !n.readReady(n.raw) {
			return
		}
		n.mu.Lock()
		var err error
		if !n.finished {
			err = n.hub.poll.rearmLocked(n)
		}
		n.mu.Unlock()
		if err != nil {
			n.finish(err)
		}
	}()
}

// errPanic ends a connection whose setup panicked (in OnConnect, say).
var errPanic = errors.New("wshub: panic while starting the connection")

// safeStart runs start, turning a panic (an application bug in
// OnConnect) into an error after logging it with its stack, so that the
// hijacked socket is still closed and the connection still counted out.
func (n *Node) safeStart() (err error) {
	defer func() {
		if v := recover(); v != nil {
			n.hub.log.Error("wshub: connection setup panicked", slog.String("user", n.user),
				slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
			err = errPanic
		}
	}()
	return n.start()
}

// start registers the connection, then queues the welcome frame and the
// user's pending messages.
func (n *Node) start() error {
	h := n.hub
	n.touch()
	evicted, err := h.register(h.ctx, n)
	if err != nil {
		h.log.Error("wshub: register failed", slog.String("user", n.user), slog.Any("err", err))
		n.closeWith(websocket.CloseInternalServerErr, "store unavailable")
		return nil // read until the peer answers the close
	}
	// Registered first, so that a client holding the welcome is online
	// with its rooms; live frames wait behind it and the pending queue.
	welcome := &Frame{Cmd: CmdWelcome, UserID: n.user, ID: n.id, TS: time.Now().UnixMilli()}
	if err := n.Send(welcome); err != nil {
		return err
	}
	if evicted != nil {
		evicted.closeWith(CloseReplaced, "replaced by a newer connection")
	}
	// Shutdown marks the hub closed before it lists the connections to
	// close: one registered after that listing closes itself here.
	if h.isClosed() {
		n.closeWith(websocket.CloseGoingAway, "server shutting down")
		return nil
	}
	if err := n.sendPending(); err != nil {
		h.log.Error("wshub: pending failed", slog.String("user", n.user), slog.Any("err", err))
		n.closeWith(websocket.CloseInternalServerErr, "store unavailable")
		return nil
	}
	n.mu.Lock()
	d := h.opts.PingInterval
	// Spread the pings of connections that arrived together.
	first := d/2 + rand.N(d/2+1)
	n.ping = time.AfterFunc(first, n.sendPing)
	n.mu.Unlock()
	if h.opts.OnConnect != nil {
		h.opts.OnConnect(n)
	}
	return nil
}

// sendPending queues the user's pending messages, oldest first, then the
// live frames held back meanwhile, without the ones already sent; it
// leaves a floor per conversation for live copies that come late.
func (n *Node) sendPending() error {
	h := n.hub
	msgs, err := h.store.Pending(h.ctx, n.user)
	if err != nil {
		return err
	}
	sent := make(map[string]uint64)
	for i := range msgs {
		m := &msgs[i]
		data, err := frameOf(m).Encode()
		if err != nil {
			return err
		}
		// Leave room in the queue for live frames: wait while it is
		// more than half full rather than overflow it.
		n.mu.Lock()
		for len(n.queue) >= h.opts.SendQueue/2 && !n.closing {
			if n.drained == nil {
				n.drained = sync.NewCond(&n.mu)
			}
			n.drained.Wait()
		}
		n.mu.Unlock()
		n.push(outFrame{data: data, pendingID: m.ID, conv: m.Conv, seq: m.Seq}, true, nil)
		sent[m.Conv] = max(sent[m.Conv], m.Seq)
	}
	n.release(sent)
	return nil
}

// dispatch runs the dispatcher chain on f. A panic in it (an application
// bug) is logged with its stack, answered as an internal error, and closes
// the connection with 1011; the hub goes on.
func (n *Node) dispatch(f *Frame) (err error) {
	defer func() {
		if v := recover(); v != nil {
			n.hub.log.Error("wshub: dispatcher panicked", slog.String("user", n.user), slog.Int("cmd", int(f.Cmd)),
				slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
			n.Send(&Frame{Cmd: CmdError, CID: f.CID, Code: ErrInternal.Code, Reason: ErrInternal.Reason})
			n.Close(websocket.CloseInternalServerErr, "internal error")
			err = nil
		}
	}()
	return n.hub.dispatch.Dispatch(n.Context(), n, f)
}

// errShutdown ends the connections still open when Shutdown's context
// ends.
var errShutdown = errors.New("wshub: shutdown deadline passed")

// finish ends the connection, once, whoever calls it first (its reader,
// its flusher, a timer, Shutdown): it unregisters it, closes its socket,
// calls OnDisconnect, and counts it out of the hub.
func (n *Node) finish(err error) {
	h := n.hub
	n.mu.Lock()
	if n.finished {
		n.mu.Unlock()
		return
	}
	n.finished = true
	n.closing = true
	n.queue, n.held = nil, nil
	n.broadcastLocked()
	if n.ping != nil {
		n.ping.Stop()
	}
	if n.grace != nil {
		n.grace.Stop()
	}
	if n.cancel != nil {
		n.cancel()
	}
	if n.polled {
		h.poll.removeLocked(n) // before the descriptor is closed and reused
	}
	n.mu.Unlock()
	h.unregister(n)
	if errors.Is(err, errPeerClose) {
		err = nil
	}
	var ne net.Error
	if (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, errSilent) || errors.Is(err, errNoAnswer) || errors.Is(err, errShutdown) {
		n.gc.Close() // the peer went silent: nothing to linger for
	} else {
		n.lingerClose()
	}
	if h.opts.OnDisconnect != nil {
		h.opts.OnDisconnect(n, err)
	}
	h.nodes.Done()
}

// lingerClose closes the socket after letting the peer read what was
// written: it shuts down the sending side, then discards input until the
// peer closes or a short time passed. Closing a socket with unread input
// would reset it, and the peer could lose the close frame.
func (n *Node) lingerClose() {
	if tc, ok := n.gc.tcp(); ok {
		tc.CloseWrite()
		tc.SetReadDeadline(time.Now().Add(closeGrace))
		io.Copy(io.Discard, io.LimitReader(tc, 1<<20))
	}
	n.gc.Close()
}
