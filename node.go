package wshub

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/wshub/wshub/internal/wsconn"
	"github.com/wshub/wshub/store"
)

// Close codes of docs/protocol.md that the hub sends, besides those of
// RFC 6455 that gorilla/websocket names.
const (
	// CloseTryAgainLater: the connection's send queue was full.
	CloseTryAgainLater = 1013
	// CloseReplaced: the user opened more connections than allowed.
	CloseReplaced = 4000
)

// outFrame is one encoded frame on its way to a connection.
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
	// own marks a copy of a direct message to its sender's other
	// connections: never in the user's pending queue, so never covered
	// by what the pending sync sent (Node.floor).
	own bool
}

// floored reports whether a connection's floor (the highest seq of f's
// conversation it was sent already) covers f: a stored message, and not
// a copy of the user's own direct message, which shares the conversation
// but not the pending queue.
func (f *outFrame) floored() bool { return f.seq > 0 && !f.own }

// Node is one WebSocket connection of a user: what a Dispatcher and the
// hooks get to answer it (Send), close it (Close), and learn who is on it
// (UserID, ID, RemoteAddr).
//
// Frames reach a connection in the order they were queued; per
// conversation, in seq order. Sending never blocks: a connection that
// cannot keep up with what is queued for it is closed with 1013, and what
// it missed stays in its user's pending queue and in the history.
type Node struct {
	hub    *Hub
	conn   *wsconn.Conn // the WebSocket transport
	id     string
	user   string
	ack    bool   // ack=1: pending messages leave the queue by cmd 14 only
	remote string // the client's address (RemoteAddr)
	// feedBreaks is Hub.feedBreaks when the connection passed the ready
	// check (see Node.start).
	feedBreaks uint64
	created    time.Time
	ipKey      string // the client's address in Hub.ips, released by Closed; "" without

	// mu guards the fields below, and is the lock of conn too (given to
	// it at upgrade), so that a frame passes the hub's rules (floors,
	// holds) and enters the send queue under one lock.
	mu sync.Mutex
	// ctx and cancel are made on first use (most idle connections never
	// need them), guarded by mu; finished says the connection ended.
	ctx      context.Context
	cancel   context.CancelFunc
	finished bool
	syncing  bool       // guarded by mu: pending queue not yet sent; live frames wait in held
	holding  string     // guarded by mu: a room's conversation being replayed; its live frames wait in held
	held     []outFrame // guarded by mu
	// floor maps a conversation to the newest seq this connection got
	// from the pending queue or a replay: a live copy at or below it,
	// which a store's feed can deliver late, is dropped. An entry goes
	// with the first newer live frame. Guarded by mu; nil until needed.
	floor map[string]uint64

	// limiter and overLimit are used by the goroutine reading the
	// connection, one at a time.
	limiter   *rate.Limiter // nil without Options.RateLimit
	overLimit int           // frames refused in a row
	// typing bounds the connection's typing frames (cmd 22); made on
	// the first one, used by the goroutine reading the connection only.
	typing *rate.Limiter
	// batch holds the writes the frames of the current read left, until
	// its end (readBatch); used by the goroutine reading the connection.
	batch *starter

	// watching lists the users this connection watches (cmd 21), guarded
	// by the hub's presence.watchMu. watched says it watched some once;
	// gone that it was unregistered (see presence.setWatch).
	watching []string
	watched  atomic.Bool
	gone     atomic.Bool
	// followBreaks is, with a store.Router, Hub.feedBreaks+1 when the
	// connection followed its user and rooms (0: it followed nothing).
	followBreaks atomic.Uint64
	// follows records, with a store.Router, the connection's follows of
	// its rooms and user (follow.go). Guarded by its user's shard lock;
	// nil until the first.
	follows map[string]followState
}

func newNode(h *Hub, user string, ack bool) *Node {
	n := &Node{hub: h, id: uuid.NewString(), user: user, ack: ack, created: time.Now(), syncing: true}
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

// RemoteAddr returns the client's network address: the TCP peer's
// host:port, or, behind a proxy listed in Options.TrustedProxies, the
// address the proxy forwarded (an IP address, without a port).
func (n *Node) RemoteAddr() string { return n.remote }

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

// answer queues f, the answer to the frame being handled, and writes it
// on the calling goroutine when the socket takes it at once
// (wsconn.Conn.Write), rather than waking a flusher for it.
func (n *Node) answer(f *Frame) error {
	data, err := f.Encode()
	if err != nil {
		return err
	}
	// With a read batch, written at the end of the read (ReadDone).
	st, own := n.hub.starterOr(n.batch)
	ok := n.push(outFrame{data: data}, true, st)
	if own {
		n.hub.writeOut(st)
	}
	if !ok {
		return ErrClosed
	}
	return nil
}

// readBatch returns the starter of the connection's current read, made
// at its first use: the connections that deliveries and receipts of the
// frames of one read left to write, written together at its end
// (nodeEvents.ReadDone), so that a client's burst of frames costs few
// system calls. Only the goroutine reading the connection uses it, and
// only where nothing makes it wait before ReadDone.
func (n *Node) readBatch() *starter {
	if n.batch == nil {
		n.batch = n.hub.starters.Get().(*starter)
	}
	return n.batch
}

// writeBatch writes what the current read left to write, if anything.
func (n *Node) writeBatch() {
	if st := n.batch; st != nil {
		n.batch = nil
		n.hub.writeOut(st)
	}
}

// blocking hands the transport's poller on before a call that may wait
// (wsconn.Conn.Blocking), having first written what the current read
// left to write: nobody else's frames wait for this connection's wait.
func (n *Node) blocking() {
	n.writeBatch()
	n.conn.Blocking()
}

// Close closes the connection with a close frame of code and reason,
// after the frames already queued for it are written.
func (n *Node) Close(code int, reason string) { n.conn.Close(code, reason, true) }

// closeWith closes the connection with a close frame, dropping the frames
// still queued (direct messages among them stay in the user's pending
// queue). It never blocks.
func (n *Node) closeWith(code int, reason string) { n.conn.Close(code, reason, false) }

// overflow closes a connection whose send queue is full with 1013, and
// says so in the log: the connection's client does not keep up.
func (n *Node) overflow() {
	if n.isClosing() {
		return
	}
	n.hub.stats.over.Add(1)
	n.hub.log.Info("wshub: send queue full; closing the connection with 1013",
		slog.String("user", n.user), slog.String("conn", n.id))
	n.closeWith(CloseTryAgainLater, "send queue full")
}

// isClosing reports whether the connection is closing.
func (n *Node) isClosing() bool { return n.conn.Closing() }

// enqueue queues a live frame: while the connection is still sending its
// pending queue, it waits behind it. See push for st.
func (n *Node) enqueue(f outFrame, st *starter) bool { return n.push(f, false, st) }

// push queues f. A live frame (now false) is dropped when the
// connection already has it (floor), and held back while the pending
// queue, or a replay of its room, is being sent. When the connection has
// no writer, push starts one, or, given a starter, leaves the connection
// in it to be written by the caller once it released its locks. It reports
// false when the connection is closing or its queue is full (then it
// starts closing with 1013).
func (n *Node) push(f outFrame, now bool, st *starter) bool {
	n.mu.Lock()
	if n.finished {
		n.mu.Unlock()
		return false
	}
	if !now {
		if n.floor != nil && f.floored() {
			if fl, ok := n.floor[f.conv]; ok {
				if f.seq <= fl {
					n.mu.Unlock()
					return true // sent already
				}
				delete(n.floor, f.conv)
			}
		}
		if n.syncing || (n.holding != "" && f.conv == n.holding) {
			if n.conn.ClosingLocked() {
				n.mu.Unlock()
				return false
			}
			if len(n.held) >= n.hub.opts.SendQueue {
				n.mu.Unlock()
				n.overflow()
				return false
			}
			n.held = append(n.held, f)
			n.mu.Unlock()
			return true
		}
	}
	writer, err := n.conn.QueueLocked(n.wire(f))
	n.mu.Unlock()
	return n.queued(writer, err, st)
}

// wire is the transport's frame for f: tagged with its pending id when
// writing it delivers it (a connection without ack=1).
func (n *Node) wire(f outFrame) wsconn.Frame {
	w := wsconn.Frame{Data: f.data}
	if !n.ack {
		w.Tag = f.pendingID
	}
	return w
}

// queued handles the outcome of queueing frames: a writer role taken is
// left in st, or given to a flusher; a full queue closes the connection
// with 1013. It reports whether the frames were queued.
func (n *Node) queued(writer bool, err error, st *starter) bool {
	if errors.Is(err, wsconn.ErrQueueFull) {
		n.overflow()
	}
	if writer {
		if st != nil {
			st.conns = append(st.conns, n.conn)
		} else {
			n.conn.Flush()
		}
	}
	return err == nil
}

// release ends a hold (the pending sync, or the replay of conv), raising
// the floor of each conversation in sent, and queues the frames held
// meanwhile that were not sent already, all under one lock, so that no
// newer live frame overtakes them.
func (n *Node) release(sent map[string]uint64) {
	n.mu.Lock()
	held := n.held
	n.held, n.syncing, n.holding = nil, false, ""
	if n.finished {
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
	writer := false
	var err error
	for _, f := range held {
		if f.floored() && f.seq <= n.floor[f.conv] {
			continue
		}
		var w bool
		if w, err = n.conn.QueueLocked(n.wire(f)); err != nil {
			break
		}
		writer = writer || w
	}
	n.mu.Unlock()
	n.queued(writer, err, nil)
}

// nodeEvents is a Node seen by its transport connection: the
// wsconn.Handler of the connection, kept off Node's own method set.
type nodeEvents Node

// Message handles one text message from the client.
func (e *nodeEvents) Message(data []byte) {
	n := (*Node)(e)
	h := n.hub
	f := h.frames.Get().(*Frame)
	if err := decodeFrameInto(data, f); err != nil {
		h.releaseFrame(f)
		n.Send(h.errorFrame(n, &Frame{}, err))
		return
	}
	if h.reusable(f) {
		defer h.releaseFrame(f)
	}
	if n.limiter != nil && !n.limiter.Allow() {
		n.overLimit++
		if n.overLimit > h.opts.RateBurst {
			n.closeWith(websocket.ClosePolicyViolation, "rate limit exceeded")
			return
		}
		n.Send(h.errorFrame(n, f, ErrRateLimited))
		return
	}
	n.overLimit = 0
	f.UserID = n.user
	if h.waits {
		// The store or a middleware may wait: hand the transport's poller
		// on before (wsconn.Conn.Blocking). The Dispatcher and
		// AuthorizeRoom do it where they are called.
		n.blocking()
	}
	if err := n.dispatch(f); err != nil {
		n.Send(h.errorFrame(n, f, err))
	}
}

// reusable reports whether f, just decoded, can go back to h.frames once
// its Message returns: no Middleware sees it, and it is a command whose
// handling keeps no reference to it past its return (the hub's own
// messages, pings and heartbeats). Every other frame (an application
// command, say, whose Dispatcher may keep it) is left to the collector.
func (h *Hub) reusable(f *Frame) bool {
	if !h.reuseFrames {
		return false
	}
	switch f.Cmd {
	case CmdSingle, CmdRoom, CmdPing, CmdHeart:
		return true
	}
	return false
}

// releaseFrame clears f (its strings go to the collector) and puts it
// back in h.frames.
func (h *Hub) releaseFrame(f *Frame) {
	*f = Frame{}
	h.frames.Put(f)
}

// ReadDone writes what the frames of one read left to write
// (wsconn.ReadBatcher).
func (e *nodeEvents) ReadDone() { (*Node)(e).writeBatch() }

// Written marks the direct messages written to a connection without ack=1
// as delivered (docs/protocol.md, the pending queue): they leave the
// user's pending queue.
func (e *nodeEvents) Written(ids []string) {
	n := (*Node)(e)
	if err := n.hub.store.Ack(n.hub.ctx, n.user, ids...); err != nil {
		n.hub.log.Warn("wshub: ack after write failed", slog.String("user", n.user), slog.Any("err", err))
	}
}

// Closed ends the connection in the hub: it unregisters it, calls
// OnDisconnect, and counts it out of the hub.
func (e *nodeEvents) Closed(err error) {
	n := (*Node)(e)
	h := n.hub
	n.mu.Lock()
	n.finished = true
	n.held, n.floor = nil, nil
	if n.cancel != nil {
		n.cancel()
	}
	n.mu.Unlock()
	h.unregister(n)
	h.stats.conns.Add(-1)
	if n.ipKey != "" {
		h.ips.release(n.ipKey, time.Now())
	}
	var ce *wsconn.CloseError
	if errors.As(err, &ce) {
		err = &websocket.CloseError{Code: ce.Code, Text: ce.Reason}
	}
	if h.opts.OnDisconnect != nil {
		h.opts.OnDisconnect(n, err)
	}
	h.nodes.Done()
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
	// The feed broke since this connection passed the ready check: it
	// may have registered after runFeed closed the connections that could
	// have missed announcements, and be one of them.
	if breaks, ready := h.feedState(); !ready || breaks != n.feedBreaks {
		n.Close(CloseTryAgainLater, "hub resynchronizing") // after the welcome
		return nil
	}
	if err := n.sendPending(); err != nil {
		h.log.Error("wshub: pending failed", slog.String("user", n.user), slog.Any("err", err))
		n.closeWith(websocket.CloseInternalServerErr, "store unavailable")
		return nil
	}
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
	sent := make(map[string]uint64)
	err := h.eachPending(n.user, func(m *store.Message) (bool, error) {
		data, err := frameOf(m).Encode()
		if err != nil {
			return false, err
		}
		// Leave room in the queue for live frames: wait while it is
		// more than half full rather than overflow it.
		if !n.conn.WaitRoom() {
			return false, nil
		}
		n.push(outFrame{data: data, pendingID: m.ID, conv: m.Conv, seq: m.Seq}, true, nil)
		sent[m.Conv] = max(sent[m.Conv], m.Seq)
		return true, nil
	})
	if err != nil {
		return err
	}
	n.release(sent)
	return nil
}

// pendingPage is how many pending messages the hub reads at a time from
// a store.PendingPager.
const pendingPage = 256

// eachPending calls fn with user's pending messages in enqueue order until
// fn returns false or an error. With a store.PendingPager it reads the
// queue a page at a time, so that a long queue is never held whole;
// otherwise it reads it with Pending.
func (h *Hub) eachPending(user string, fn func(*store.Message) (bool, error)) error {
	pager, paged := h.store.(store.PendingPager)
	cursor := ""
	for {
		var page []store.Message
		var next string
		var err error
		if paged {
			page, next, err = pager.PendingPage(h.ctx, user, cursor, pendingPage)
		} else {
			page, err = h.store.Pending(h.ctx, user) // the whole queue: one page
		}
		if err != nil {
			return err
		}
		for i := range page {
			if goOn, err := fn(&page[i]); !goOn || err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
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
