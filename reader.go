package wshub

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The hub reads client frames itself (RFC 6455 section 5) rather than
// through gorilla/websocket's blocking reader, so that an idle connection
// needs no goroutine: on Linux an epoll loop (poller) starts a short-lived
// goroutine when a socket has bytes, which reads what is there without
// blocking, handles every complete frame, and leaves. Where the socket is
// not a plain TCP connection (TLS, say) a reader goroutine drives the same
// parser with blocking reads.

// Errors that end a connection's reading.
var (
	errProtocol  = errors.New("wshub: protocol error")
	errTooBig    = errors.New("wshub: frame larger than the read limit")
	errSilent    = errors.New("wshub: connection silent past the pong timeout")
	errNoAnswer  = errors.New("wshub: close frame not answered in time")
	errPeerClose = errors.New("wshub: closed by the peer")
)

// errWouldBlock: the socket holds nothing to read right now.
var errWouldBlock = errors.New("wshub: would block")

// rawReader reads a socket without blocking.
type rawReader interface {
	readNow(p []byte) (int, error)
}

// readChunk is the size of a read into a connection's input buffer.
const readChunk = 4 << 10

var readBufPool = sync.Pool{New: func() any { b := make([]byte, 0, readChunk); return &b }}

// input is a connection's read state. It is used by one goroutine at a
// time: the reader goroutine, or the goroutine the poller started (the
// poller arms a socket for one event at a time).
type input struct {
	buf     *[]byte // unparsed bytes; from readBufPool, nil when empty
	msg     []byte  // a fragmented text message being assembled
	inMsg   bool    // a fragmented message is open
	discard bool    // the open message is binary: discarded, the connection is closing
	dead    bool    // the stream cannot be parsed on (too big, protocol error): input is discarded while the close frame goes out
}

// take returns the buffer to read into, with room for readChunk bytes.
func (in *input) take() []byte {
	if in.buf == nil {
		in.buf = readBufPool.Get().(*[]byte)
	}
	b := *in.buf
	if cap(b)-len(b) < readChunk {
		nb := make([]byte, len(b), 2*cap(b)+readChunk)
		copy(nb, b)
		b = nb
	}
	return b
}

// keep stores b, the buffer with what is still unparsed; an empty one goes
// back to the pool.
func (in *input) keep(b []byte) {
	if len(b) == 0 && cap(b) <= 64<<10 {
		*in.buf = b[:0]
		readBufPool.Put(in.buf)
		in.buf = nil
		return
	}
	*in.buf = b
}

// parse handles every complete frame at the start of b and returns the
// bytes left (a partial frame). A non-nil error ends the connection; the
// close frame that goes with it has been started.
func (n *Node) parse(b []byte) ([]byte, error) {
	limit := n.hub.opts.ReadLimit
	for len(b) >= 2 {
		b0, b1 := b[0], b[1]
		fin, op := b0&0x80 != 0, int(b0&0x0f)
		size, hdr := uint64(b1&0x7f), 2
		switch size {
		case 126:
			if len(b) < 4 {
				return b, nil
			}
			size, hdr = uint64(binary.BigEndian.Uint16(b[2:4])), 4
		case 127:
			if len(b) < 10 {
				return b, nil
			}
			size, hdr = binary.BigEndian.Uint64(b[2:10]), 10
		}
		switch {
		case b0&0x70 != 0, b1&0x80 == 0: // reserved bits; clients must mask
			return nil, n.protocolError("bad frame header")
		case op >= websocket.CloseMessage && (!fin || size > 125):
			return nil, n.protocolError("bad control frame")
		case op < websocket.CloseMessage && size+uint64(len(n.in.msg)) > uint64(limit):
			n.closeWith(websocket.CloseMessageTooBig, "")
			return nil, errTooBig
		}
		end := hdr + 4 + int(size)
		if len(b) < end {
			return b, nil
		}
		payload := b[hdr+4 : end]
		maskBytes(b[hdr:hdr+4], payload)
		b = b[end:]
		if err := n.frame(op, fin, payload); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// maskBytes applies the client's masking key to p.
func maskBytes(key, p []byte) {
	for i := range p {
		p[i] ^= key[i&3]
	}
}

// frame handles one frame.
func (n *Node) frame(op int, fin bool, p []byte) error {
	in := &n.in
	switch op {
	case websocket.TextMessage, websocket.BinaryMessage:
		if in.inMsg {
			return n.protocolError("new message inside a fragmented one")
		}
		if op == websocket.BinaryMessage {
			n.closeWith(websocket.CloseUnsupportedData, "binary frames are not supported")
			in.inMsg, in.discard = !fin, true
			return nil
		}
		if fin {
			n.message(p)
			return nil
		}
		in.inMsg, in.discard = true, false
		in.msg = append(in.msg[:0], p...)
	case 0: // continuation
		if !in.inMsg {
			return n.protocolError("continuation without a message")
		}
		if !in.discard {
			in.msg = append(in.msg, p...)
		}
		if fin {
			in.inMsg = false
			if !in.discard {
				n.message(in.msg)
			}
			in.msg = nil
		}
	case websocket.PingMessage:
		n.conn.WriteControl(websocket.PongMessage, p, time.Now().Add(n.hub.opts.WriteTimeout))
	case websocket.PongMessage:
		// Liveness only: every read counts.
	case websocket.CloseMessage:
		code, text := websocket.CloseNoStatusReceived, ""
		switch {
		case len(p) == 1:
			return n.protocolError("bad close frame")
		case len(p) >= 2:
			code, text = int(binary.BigEndian.Uint16(p)), string(p[2:])
		}
		n.mu.Lock()
		answered := n.closing
		n.mu.Unlock()
		if !answered {
			// Echo the peer's close, as RFC 6455 section 5.5.1 asks.
			reply := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
			if code != websocket.CloseNoStatusReceived {
				reply = websocket.FormatCloseMessage(code, "")
			}
			n.conn.WriteControl(websocket.CloseMessage, reply, time.Now().Add(n.hub.opts.WriteTimeout))
		}
		if answered || code == websocket.CloseNormalClosure || code == websocket.CloseGoingAway {
			return errPeerClose
		}
		return &websocket.CloseError{Code: code, Text: text}
	default:
		return n.protocolError("unknown opcode")
	}
	return nil
}

// protocolError closes the connection with 1002.
func (n *Node) protocolError(why string) error {
	n.closeWith(websocket.CloseProtocolError, why)
	return errProtocol
}

// consume parses b, the buffered input, and returns it holding only what
// is left unparsed. An error means the connection ends now (the peer
// closed); after a frame that cannot be parsed on, the close frame has
// been started and the input is discarded until the peer answers or the
// close's grace time ends the connection.
func (n *Node) consume(b []byte) ([]byte, error) {
	if n.in.dead {
		return b[:0], nil
	}
	rest, err := n.parse(b)
	if errors.Is(err, errTooBig) || errors.Is(err, errProtocol) {
		n.in.dead = true
		return b[:0], nil
	}
	if err != nil {
		return b[:0], err
	}
	return append(b[:0], rest...), nil
}

// readReady reads what the socket holds (without blocking, from the
// poller) and handles the complete frames; it reports whether the
// connection goes on (the socket is to be armed again).
func (n *Node) readReady(rc rawReader) (goOn bool) {
	defer n.recoverRead(&goOn)
	in := &n.in
	for {
		b := in.take()
		got, err := rc.readNow(b[len(b):cap(b)])
		if got > 0 {
			n.touch()
			rest, perr := n.consume(b[:len(b)+got])
			in.keep(rest)
			if perr != nil {
				n.finish(perr)
				return false
			}
		} else {
			in.keep(b)
		}
		switch {
		case err == errWouldBlock:
			return !n.isFinished()
		case err != nil:
			n.finish(err)
			return false
		case got == 0:
			n.finish(errPeerClose) // EOF
			return false
		}
	}
}

// readBlocking is the reader goroutine of a connection the poller cannot
// serve: the same loop as readReady, with reads that wait for bytes, until
// the connection ends.
func (n *Node) readBlocking(c net.Conn) {
	defer n.hub.nodes.Done()
	n.readReady(blockingReader{c})
}

// blockingReader reads a connection with calls that wait for bytes; it
// never reports errWouldBlock.
type blockingReader struct{ c net.Conn }

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

// errReadPanic ends a connection whose reading panicked.
var errReadPanic = errors.New("wshub: panic while reading")

// recoverRead turns a panic while reading a connection (a bug) into the
// end of that connection, logged with its stack, instead of the end of the
// process.
func (n *Node) recoverRead(goOn *bool) {
	if v := recover(); v != nil {
		n.hub.log.Error("wshub: reading a connection panicked", slog.String("user", n.user),
			slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
		*goOn = false
		n.finish(errReadPanic)
	}
}

// message handles one complete text message.
func (n *Node) message(data []byte) {
	h := n.hub
	if n.isClosing() {
		return
	}
	f, err := DecodeFrame(data)
	if err != nil {
		n.Send(h.errorFrame(n, &Frame{}, err))
		return
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
	if err := n.dispatch(f); err != nil {
		n.Send(h.errorFrame(n, f, err))
	}
}

// touch records that the peer sent something.
func (n *Node) touch() { n.lastRead.Store(time.Now().UnixNano()) }
