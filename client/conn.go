package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/wshub/wshub"
)

// conn is one WebSocket connection of a Client. Its socket is written only
// by the goroutine running Client.connect (plus gorilla's control-frame
// replies, which WriteControl makes safe) and read only by its reader
// goroutine.
type conn struct {
	ws *websocket.Conn
	// stop is closed by connect when the connection ends; it releases a
	// reader blocked handing a message to the application.
	stop chan struct{}
	// lastRead is the Client.now() reading of the latest frame read (or
	// of the end of a hand-over to the application). Written by the
	// reader, read by the writer.
	lastRead atomic.Int64
	// busy is true while the reader waits for the application to take a
	// message; the heartbeat does not count that time against the link.
	busy atomic.Bool

	rbuf  bytes.Buffer // reader only: the message being read
	batch []*entry     // writer only: entries taken from the outbox
}

// pingFrame is the heartbeat, cmd 1.
var pingFrame = []byte(`{"cmd":1}`)

// errStopped ends a reader whose connection is being closed.
var errStopped = errors.New("wshub/client: connection closing")

// now reads the client's monotonic clock.
func (c *Client) now() int64 { return int64(time.Since(c.t0)) }

// reportErr passes err to Options.OnError. Callbacks are never called
// concurrently: during a connection only its reader calls them.
func (c *Client) reportErr(err error) {
	c.opts.Logger.Debug("wshub/client: error", "err", err)
	if c.opts.OnError != nil {
		c.opts.OnError(err)
	}
}

// dial opens a WebSocket connection. An HTTP answer other than 101 is a
// *HandshakeError.
func (c *Client) dial(ctx context.Context) (*websocket.Conn, error) {
	ws, resp, err := c.opts.Dialer.DialContext(ctx, c.url, c.opts.Header)
	if err == nil {
		return ws, nil
	}
	host := c.url
	if u, perr := url.Parse(c.url); perr == nil {
		host = u.Host // never put the token into an error message
	}
	if resp != nil {
		return nil, &HandshakeError{
			Host:       host,
			StatusCode: resp.StatusCode,
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return nil, fmt.Errorf("wshub/client: dial %s: %w", host, err)
}

// parseRetryAfter reads a Retry-After header: a number of seconds or an
// HTTP date. It returns 0 when v is empty, malformed or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

// maxRetryAfter caps what parseRetryAfter returns, so that a huge value
// cannot overflow; Backoff.Max bounds the wait anyway.
const maxRetryAfter = 24 * time.Hour

// connect runs one connection: dial, welcome, rejoin rooms, watch again,
// resend the outbox, then read and write until it ends. It returns how long the
// connection was open and why it ended.
func (c *Client) connect(ctx context.Context) (time.Duration, error) {
	ws, err := c.dial(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.reportErr(err)
		}
		return 0, err
	}
	cn := &conn{ws: ws, stop: make(chan struct{})}
	timeout := c.opts.HeartbeatTimeout
	ws.SetPingHandler(func(data string) error {
		cn.lastRead.Store(c.now())
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(timeout))
		var ne net.Error
		if errors.Is(err, websocket.ErrCloseSent) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil
		}
		return err
	})
	ws.SetPongHandler(func(string) error {
		cn.lastRead.Store(c.now())
		return nil
	})

	stopWatch := context.AfterFunc(ctx, func() { _ = ws.Close() }) // Close must not wait for the welcome timeout
	welcome, rest, err := c.readWelcome(cn)
	if !stopWatch() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = ws.Close()
		if ctx.Err() == nil {
			c.reportErr(err)
			c.closed(err)
		}
		return 0, err
	}
	openedAt := time.Now()
	cn.lastRead.Store(c.now())

	c.mu.Lock()
	c.welcome = welcome
	c.out.resetSent()
	rejoin := make([][]byte, 0, len(c.rooms)+1)
	c.rejoins = make(map[string]string, len(c.rooms))
	for name, r := range c.rooms {
		// A cid of its own, so that a refusal is known for what it is.
		c.rejoinSeq++
		cid := "rejoin-" + strconv.FormatUint(c.rejoinSeq, 10)
		f := wshub.Frame{Cmd: wshub.CmdJoin, CID: cid, DstID: name, Since: r.Seq, Epoch: r.Epoch}
		if b, err := f.Encode(); err == nil {
			rejoin = append(rejoin, b)
			c.rejoins[cid] = name
		}
	}
	if b := c.rewatchFrame(); b != nil {
		rejoin = append(rejoin, b) // the hub keeps a watch per connection
	}
	c.mu.Unlock()

	c.setState(StateOpen)
	c.opts.Logger.Debug("wshub/client: open", "user", welcome.UserID, "conn", welcome.ID)
	c.openOnce.Do(func() { close(c.opened) })
	if c.opts.OnOpen != nil {
		c.opts.OnOpen(welcome)
	}

	readerDone := make(chan error, 1)
	go c.read(cn, rest, readerDone)
	err = c.serve(ctx, cn, rejoin, readerDone)
	if ctx.Err() == nil { // when the client closes, finish fails them with ErrClosed
		c.failLost()
	}
	c.closed(err)
	return time.Since(openedAt), err
}

// failLost fails the Calls written on the connection that just ended, whose
// answers can no longer come, with ErrConnectionLost. They are not written
// again: the hub does not deduplicate application commands.
func (c *Client) failLost() {
	c.mu.Lock()
	lost := c.out.takeLost()
	c.mu.Unlock()
	for _, e := range lost {
		e.complete(result{err: ErrConnectionLost})
	}
}

// closed reports the end of a connection to Options.OnClose.
func (c *Client) closed(err error) {
	var ce *CloseError
	if !errors.As(err, &ce) {
		ce = &CloseError{Code: websocket.CloseAbnormalClosure, Reason: err.Error()}
	}
	c.opts.Logger.Debug("wshub/client: closed", "code", ce.Code, "reason", ce.Reason)
	if c.opts.OnClose != nil {
		c.opts.OnClose(ce.Code, ce.Reason)
	}
}

// readWelcome reads the first message, which must start with the welcome
// frame; with batch=1 more frames may follow it in the same message.
func (c *Client) readWelcome(cn *conn) (*wshub.Frame, [][]byte, error) {
	_ = cn.ws.SetReadDeadline(time.Now().Add(c.opts.HeartbeatTimeout))
	_, data, err := cn.ws.ReadMessage()
	if err != nil {
		return nil, nil, closeErrOf(err)
	}
	_ = cn.ws.SetReadDeadline(time.Time{})
	lines := c.split(data, nil)
	if len(lines) == 0 {
		return nil, nil, fmt.Errorf("%w: empty first message", ErrProtocol)
	}
	f, err := wshub.DecodeFrame(lines[0])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: first message: %w", ErrProtocol, err)
	}
	if f.Cmd != wshub.CmdWelcome {
		return nil, nil, fmt.Errorf("%w: first frame is cmd %d, not welcome", ErrProtocol, f.Cmd)
	}
	return f, lines[1:], nil
}

// split appends the frames of one message to dst: with batch=1 the
// non-blank "\n"-separated parts, otherwise the whole message.
func (c *Client) split(data []byte, dst [][]byte) [][]byte {
	if !c.opts.Batch {
		if len(bytes.TrimSpace(data)) > 0 {
			dst = append(dst, data)
		}
		return dst
	}
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(bytes.TrimSpace(line)) > 0 {
			dst = append(dst, line)
		}
	}
	return dst
}

// closeErrOf turns a read error into a *CloseError.
func closeErrOf(err error) error {
	var we *websocket.CloseError
	if errors.As(err, &we) {
		return &CloseError{Code: we.Code, Reason: we.Text}
	}
	return &CloseError{Code: websocket.CloseAbnormalClosure, Reason: err.Error(), err: err}
}

// serve is the writer side of a connection: it writes the rejoins, the
// outbox, acks and heartbeats, and watches the heartbeat deadline, until
// the reader fails, a write fails, the heartbeat times out or ctx ends.
// When it returns the socket is closed and the reader has returned.
func (c *Client) serve(ctx context.Context, cn *conn, rejoin [][]byte, readerDone <-chan error) error {
	for _, b := range rejoin {
		if err := c.write(cn, b); err != nil {
			return c.writeFailed(cn, readerDone, err)
		}
	}
	if err := c.flush(cn); err != nil {
		return c.writeFailed(cn, readerDone, err)
	}

	var hbC <-chan time.Time
	if c.opts.HeartbeatInterval > 0 {
		hb := time.NewTicker(c.opts.HeartbeatInterval)
		defer hb.Stop()
		hbC = hb.C
	}
	deadline := time.NewTimer(time.Hour)
	deadline.Stop()
	defer deadline.Stop()
	var deadlineC <-chan time.Time // non-nil while a ping waits for an answer
	var pingAt int64               // when that ping was sent

	for {
		select {
		case <-ctx.Done():
			return c.shut(cn, readerDone)
		case err := <-readerDone:
			close(cn.stop)
			_ = cn.ws.Close()
			return closeErrOf(err)
		case <-c.kick:
			if err := c.flush(cn); err != nil {
				return c.writeFailed(cn, readerDone, err)
			}
		case <-hbC:
			if err := c.write(cn, pingFrame); err != nil {
				return c.writeFailed(cn, readerDone, err)
			}
			if deadlineC == nil {
				pingAt = c.now()
				deadline.Reset(c.opts.HeartbeatTimeout)
				deadlineC = deadline.C
			}
		case <-deadlineC:
			deadlineC = nil
			if cn.lastRead.Load() < pingAt && !cn.busy.Load() {
				err := c.abort(cn, readerDone, ErrHeartbeatTimeout)
				c.reportErr(ErrHeartbeatTimeout)
				return err
			}
		}
	}
}

// write writes one text message, bounded by the heartbeat timeout.
func (c *Client) write(cn *conn, b []byte) error {
	_ = cn.ws.SetWriteDeadline(time.Now().Add(c.opts.HeartbeatTimeout))
	return cn.ws.WriteMessage(websocket.TextMessage, b)
}

// flush writes the pending acks and every outbox frame not yet written on
// this connection. A frame whose write fails stays in the outbox (except
// kindOnce frames, which are lost with the connection, and kindCall frames,
// which may have reached the hub and fail with ErrConnectionLost) and is
// written again on the next one; the frames after it count as not written.
func (c *Client) flush(cn *conn) error {
	c.mu.Lock()
	cn.batch = c.out.takeUnsent(cn.batch[:0])
	acks := c.acks
	c.acks = nil
	c.mu.Unlock()
	defer clear(cn.batch)
	if len(acks) > 0 {
		b, err := (&wshub.Frame{Cmd: wshub.CmdAck, IDs: acks}).Encode()
		if err == nil {
			err = c.write(cn, b)
		}
		if err != nil {
			c.unsent(cn.batch)
			return err
		}
	}
	for i, e := range cn.batch {
		if err := c.write(cn, e.data); err != nil {
			c.unsent(cn.batch[i+1:])
			return err
		}
	}
	return nil
}

// unsent marks entries taken for writing as not written after all: a write
// before them failed. (Harmless for those no longer in the outbox.)
func (c *Client) unsent(es []*entry) {
	c.mu.Lock()
	for _, e := range es {
		e.sent = false
	}
	c.mu.Unlock()
}

// writeFailed ends a connection after a failed write. Unless the write
// timed out (a dead link), the reader is given a moment first: the failure
// is usually the hub closing the connection (gorilla refuses writes once it
// answered a close frame), and the reader then has the hub's close code,
// which decides whether to reconnect.
func (c *Client) writeFailed(cn *conn, readerDone <-chan error, err error) error {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case rerr := <-readerDone:
			close(cn.stop)
			_ = cn.ws.Close()
			return closeErrOf(rerr)
		case <-t.C:
		}
	}
	return c.abort(cn, readerDone, err)
}

// abort closes the socket without a close handshake (the link is broken or
// dead) and waits for the reader.
func (c *Client) abort(cn *conn, readerDone <-chan error, cause error) error {
	close(cn.stop)
	_ = cn.ws.Close()
	<-readerDone
	return &CloseError{Code: websocket.CloseAbnormalClosure, Reason: cause.Error(), err: cause}
}

// shut closes the connection with 1000 because the client is closing: it
// sends the close frame, gives the hub a moment to answer it and closes the
// socket.
func (c *Client) shut(cn *conn, readerDone <-chan error) error {
	_ = cn.ws.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	close(cn.stop)
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-readerDone:
		_ = cn.ws.Close()
	case <-t.C:
		_ = cn.ws.Close()
		<-readerDone
	}
	return &CloseError{Code: websocket.CloseNormalClosure}
}

// read is the reader goroutine of a connection: it handles rest (frames
// that came with the welcome), then every frame read, and sends the error
// that ended it to done.
func (c *Client) read(cn *conn, rest [][]byte, done chan<- error) {
	for _, b := range rest {
		if !c.handleRaw(cn, b) {
			done <- errStopped
			return
		}
	}
	var lines [][]byte
	for {
		_, r, err := cn.ws.NextReader()
		if err != nil {
			done <- err
			return
		}
		cn.rbuf.Reset()
		if _, err := cn.rbuf.ReadFrom(r); err != nil {
			done <- err
			return
		}
		cn.lastRead.Store(c.now())
		lines = c.split(cn.rbuf.Bytes(), lines[:0])
		for _, b := range lines {
			if !c.handleRaw(cn, b) {
				done <- errStopped
				return
			}
		}
	}
}

// handleRaw decodes and handles one frame. It returns false when the
// connection is closing and the reader must stop.
func (c *Client) handleRaw(cn *conn, b []byte) bool {
	f, err := wshub.DecodeFrame(b)
	if err != nil {
		c.reportErr(fmt.Errorf("%w: %w", ErrProtocol, err))
		return true
	}
	return c.handle(cn, f)
}

// handle acts on one incoming frame. It returns false when the connection
// is closing and the reader must stop.
func (c *Client) handle(cn *conn, f *wshub.Frame) bool {
	switch f.Cmd {
	case wshub.CmdPong, wshub.CmdHeart, wshub.CmdWelcome:
		return true
	case wshub.CmdReceipt:
		c.mu.Lock()
		e := c.out.remove(f.CID)
		if e != nil && e.cmd == wshub.CmdRoom && f.Seq > 0 {
			if r := c.rooms[e.dst]; r != nil {
				r.observe(f.Seq) // the client's own message: never delivered to it
			}
		}
		c.mu.Unlock()
		if e == nil {
			return true // for a frame whose Send gave up, or a duplicate
		}
		e.complete(result{f: f})
		if c.opts.OnReceipt != nil {
			c.opts.OnReceipt(f)
		}
		return true
	case wshub.CmdError:
		serr := &ServerError{Code: f.Code, Reason: f.Reason, Frame: f}
		c.mu.Lock()
		if room, ok := c.rejoins[f.CID]; ok && f.CID != "" {
			delete(c.rejoins, f.CID)
			if f.Code >= 500 || f.Code == http.StatusTooManyRequests {
				// The hub could not rejoin the room now (its store
				// unavailable, say): on this connection the room would
				// get nothing. Reconnect, after the backoff, and rejoin.
				c.mu.Unlock()
				c.reportErr(fmt.Errorf("wshub/client: rejoin of room %q refused, reconnecting: %w", room, serr))
				return false
			}
			// Refused for good (no longer allowed, say): the room is
			// left.
			delete(c.rooms, room)
			c.mu.Unlock()
			c.reportErr(fmt.Errorf("wshub/client: rejoin of room %q refused, room left: %w", room, serr))
			return true
		}
		var e *entry
		if f.Code == http.StatusServiceUnavailable {
			// The hub could not take it now (shutting down, its store
			// unavailable): a message or request stays in the outbox and
			// is written again on the next connection, as one whose
			// receipt was lost would be. Other entries settle.
			if k := c.out.get(f.CID); k != nil && k.kind != kindMessage && k.kind != kindRequest {
				e = c.out.remove(f.CID)
			}
		} else {
			e = c.out.remove(f.CID)
		}
		c.mu.Unlock()
		if e != nil && e.done != nil {
			e.complete(result{err: serr})
		} else {
			c.reportErr(serr)
		}
		return true
	case wshub.CmdJoin:
		c.handleJoin(f)
		return true
	case cmdPresence:
		c.handlePresence(f)
		return true
	case wshub.CmdHistory, wshub.CmdRoomHistory, wshub.CmdConversations:
		c.mu.Lock()
		e := c.out.get(f.CID)
		if e == nil || e.kind != kindRequest {
			e = c.out.firstRequest(f.Cmd, f.DstID)
		}
		if e != nil {
			c.out.unlink(e)
		}
		c.mu.Unlock()
		if e != nil {
			e.complete(result{f: f})
		}
		return true
	}
	if f.Cmd >= wshub.CmdApp && f.CID != "" && c.answerCall(f) {
		return true
	}
	return c.deliver(cn, f)
}

// answerCall hands f to the Call waiting for its cid and reports whether f
// was such an answer (also the late answer of a Call whose ctx ended,
// which is dropped): an answer is never delivered as a message.
func (c *Client) answerCall(f *wshub.Frame) bool {
	c.mu.Lock()
	e := c.out.get(f.CID)
	if e == nil || e.kind != kindCall {
		late := c.abandoned.seen(f.CID)
		c.mu.Unlock()
		if late {
			c.opts.Logger.Debug("wshub/client: dropped the late answer of an abandoned call", "cmd", f.Cmd, "cid", f.CID)
		}
		return late
	}
	c.out.unlink(e)
	c.mu.Unlock()
	e.complete(result{f: f})
	return true
}

// handleJoin handles a join reply: the answer to a Join call, or to an
// automatic rejoin after a reconnect.
func (c *Client) handleJoin(f *wshub.Frame) {
	c.mu.Lock()
	var e *entry
	if _, ok := c.rejoins[f.CID]; ok && f.CID != "" {
		delete(c.rejoins, f.CID) // the answer to an automatic rejoin
	} else {
		e = c.out.get(f.CID)
		if e == nil || e.kind != kindRequest || e.cmd != wshub.CmdJoin {
			e = c.out.firstRequest(wshub.CmdJoin, f.DstID)
		}
		if e != nil {
			c.out.unlink(e)
		}
	}
	r, known := c.rooms[f.DstID]
	rejoin := e == nil && known
	recovered := false
	switch {
	case e == nil && !known:
		// An answer nobody asked for (a Join whose caller gave up).
	case !known:
		c.rooms[f.DstID] = &room{RoomState: RoomState{Seq: f.Seq, Epoch: f.Epoch}}
	case r.Epoch != f.Epoch:
		// A new history stream: old seqs mean nothing any more.
		r.Seq, r.Epoch, r.ahead = f.Seq, f.Epoch, nil
	default:
		// The rejoin carried the epoch, so the hub replayed from since
		// (even since 0, which the wire cannot carry but the epoch
		// implies) and says whether that was everything.
		recovered = f.Recovered != nil && *f.Recovered
		if r.Epoch == "" {
			recovered = f.Seq <= r.Seq // nothing was asked back
		}
		r.moveTo(f.Seq)
	}
	c.mu.Unlock()
	if e != nil {
		e.complete(result{f: f})
		return
	}
	if rejoin {
		c.opts.Logger.Debug("wshub/client: rejoined", "room", f.DstID, "recovered", recovered)
		if c.opts.OnRejoin != nil {
			c.opts.OnRejoin(f.DstID, recovered)
		}
	}
}

// deliver hands an incoming message to the application once, remembers
// its id and room seq, and acknowledges it. It returns false when the
// connection closed while the application was not taking the message.
func (c *Client) deliver(cn *conn, f *wshub.Frame) bool {
	ack := c.opts.Ack && f.ID != "" && f.Cmd != wshub.CmdRoom // room messages are not queued per user
	if f.ID != "" && c.seen.seen(f.ID) {
		if ack {
			c.queueAck(f.ID) // the earlier ack may have been lost with a connection
		}
		return true
	}
	if c.opts.OnMessage != nil {
		cn.busy.Store(true)
		c.opts.OnMessage(f)
	} else {
		select {
		case c.msgs <- f:
		default:
			cn.busy.Store(true)
			select {
			case c.msgs <- f:
			case <-cn.stop:
				cn.busy.Store(false)
				return false
			}
		}
	}
	cn.lastRead.Store(c.now())
	cn.busy.Store(false)
	if f.ID != "" {
		c.seen.add(f.ID)
	}
	if f.Cmd == wshub.CmdRoom && f.Seq > 0 {
		c.mu.Lock()
		if r := c.rooms[f.DstID]; r != nil {
			r.observe(f.Seq)
		}
		c.mu.Unlock()
	}
	if ack {
		c.queueAck(f.ID)
	}
	return true
}

// queueAck adds id to the acks of the next write.
func (c *Client) queueAck(id string) {
	c.mu.Lock()
	if !c.ended {
		c.acks = append(c.acks, id)
	}
	c.mu.Unlock()
	c.wake()
}
