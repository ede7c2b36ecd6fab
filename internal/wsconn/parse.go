package wsconn

import (
	"encoding/binary"
	"sync"
	"unicode/utf8"
)

// Opcodes of RFC 6455 section 5.2.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close codes of RFC 6455 section 7.4.1 the transport sends.
const (
	CloseNormal        = 1000
	CloseGoingAway     = 1001
	CloseProtocolError = 1002
	CloseUnsupported   = 1003
	closeNoStatus      = 1005 // received only: a close frame without a code
	CloseInvalidData   = 1007
	ClosePolicy        = 1008
	CloseTooBig        = 1009
	CloseInternal      = 1011
)

// validCloseCode reports whether a peer may send code in a close frame
// (RFC 6455 section 7.4): the registered codes that are not reserved for
// local use, and the ranges for libraries (3000–3999) and applications
// (4000–4999). gorilla/websocket accepts the same, less 1014 (Bad Gateway,
// registered after it was written).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// failure is why a stream of client frames cannot go on: the close code to
// fail the connection with, and a reason for the close frame and the log.
type failure struct {
	code   int
	reason string
	// closed: the failing frame was the peer's close frame, so the peer
	// has closed already and will not answer ours.
	closed bool
}

func (f *failure) Error() string { return "wsconn: " + f.reason }

// sink receives what a parser reads. Its methods are called on the
// goroutine feeding the parser, in the order of the stream; a payload is
// valid only during the call.
type sink interface {
	// message: a whole text message, valid UTF-8.
	message(p []byte)
	// ping: a ping frame (the reply is the sink's to send).
	ping(p []byte)
	// closeFrame: a close frame, valid (code is closeNoStatus when the
	// frame had no payload).
	closeFrame(code int, reason string)
}

// parser reads the frames a client sends (RFC 6455 section 5) from the
// bytes as they arrive, in pieces of any size. It unmasks and validates
// each payload as its bytes come, so that a text message that is not
// UTF-8 fails at the first bad byte, and it never holds more than the
// message being assembled (at most the read limit) and a frame header.
//
// A whole unfragmented text frame that arrived in one piece is handled in
// place, without a copy; a frame cut across reads, and fragments, are
// copied into msg (pooled chunks) as they come.
//
// Once the stream failed (a protocol error, an invalid message, too big a
// frame), the parser goes on reading frames only to find the peer's
// close frame, which ends the close handshake; it skips everything else.
// A stream that cannot even be framed any more (a length with the top bit
// set) is dead: everything after is dropped.
type parser struct {
	limit int64 // the largest message, in bytes

	// The frame being read, when inFrame: its header is consumed, remain
	// payload bytes are still to come.
	inFrame bool
	fin     bool
	op      byte
	remain  uint64
	key     [4]byte
	kpos    int
	skip    bool   // the frame's payload is dropped (the stream failed)
	ctl     []byte // a control frame's payload so far

	// The message being assembled, when inMsg (a data frame without FIN
	// was read, or a frame arrived cut).
	inMsg bool
	msg   assembler
	utf8  utf8State

	failed bool // a failure was returned: only a close frame matters now
	dead   bool // the stream cannot be framed: every byte is dropped

	frames uint64 // whole frames read, for liveness
	// units counts the messages and the control frames outside a message
	// read whole: the units whose time to arrive is bounded.
	units uint64
}

// maxHeader is the longest frame header: 2 bytes, a 64-bit length, a key.
const maxHeader = 14

// busy reports whether a frame or a fragmented message is incomplete: the
// peer owes the rest.
func (p *parser) busy() bool { return p.inFrame || p.inMsg }

// feed reads the frames in b, calling s for each event. It returns what
// it could not consume yet (at most an incomplete header, shorter than
// maxHeader bytes, which must be fed again in front of the next bytes)
// and, the first time the stream fails, the failure. b's bytes are
// unmasked in place.
func (p *parser) feed(b []byte, s sink) ([]byte, *failure) {
	var fail *failure
	for len(b) > 0 && !p.dead {
		if !p.inFrame {
			hdr, f := p.header(b)
			if hdr == 0 && f == nil {
				return b, fail // incomplete header
			}
			if f != nil {
				fail = p.fail(fail, f)
				if p.dead {
					return nil, fail
				}
			}
			b = b[hdr:]
			// The common case: a whole text message in one frame, all of
			// it here. Handled in place.
			if p.inFrame && !p.skip && p.op == opText && p.fin && p.remain <= uint64(len(b)) {
				payload := b[:p.remain]
				b = b[p.remain:]
				mask(p.key, 0, payload)
				p.inFrame, p.inMsg = false, false
				p.frames++
				p.units++
				if !utf8.Valid(payload) {
					fail = p.fail(fail, &failure{code: CloseInvalidData, reason: "text message is not valid UTF-8"})
					continue
				}
				s.message(payload)
				continue
			}
			if p.inFrame && p.remain == 0 {
				fail = p.fail(fail, p.endFrame(s))
			}
			continue
		}
		k := len(b)
		if uint64(k) > p.remain {
			k = int(p.remain)
		}
		chunk := b[:k]
		b = b[k:]
		p.remain -= uint64(k)
		if !p.skip {
			p.kpos = mask(p.key, p.kpos, chunk)
			if p.op >= opClose {
				p.ctl = append(p.ctl, chunk...)
			} else {
				if !p.utf8.feed(chunk) {
					// Fail at the first bad byte: the rest of the frame is
					// not awaited.
					p.skip = true
					fail = p.fail(fail, &failure{code: CloseInvalidData, reason: "text message is not valid UTF-8"})
				} else {
					p.msg.write(chunk)
				}
			}
		}
		if p.remain == 0 {
			fail = p.fail(fail, p.endFrame(s))
		}
	}
	if p.dead {
		return nil, fail
	}
	return b, fail
}

// fail records f, the first failure of the stream (later ones are
// consequences and dropped), and returns the failure feed reports.
func (p *parser) fail(prev, f *failure) *failure {
	if f == nil || p.failed {
		return prev
	}
	p.failed = true
	p.inMsg = false
	p.msg.reset()
	p.utf8.reset()
	if p.inFrame && p.op != opClose {
		p.skip = true
	}
	return f
}

// header reads the frame header at the start of b. It returns its length,
// or 0 when b holds only part of it. A header that breaks the protocol
// returns a failure; the frame is then skipped (or, when its length
// cannot be read, the stream is dead).
func (p *parser) header(b []byte) (int, *failure) {
	if len(b) < 2 {
		return 0, nil
	}
	b0, b1 := b[0], b[1]
	fin, op, masked := b0&0x80 != 0, b0&0x0f, b1&0x80 != 0
	size, hdr := uint64(b1&0x7f), 2
	switch size {
	case 126:
		if len(b) < 4 {
			return 0, nil
		}
		size, hdr = uint64(binary.BigEndian.Uint16(b[2:4])), 4
	case 127:
		if len(b) < 10 {
			return 0, nil
		}
		size, hdr = binary.BigEndian.Uint64(b[2:10]), 10
	}
	if size>>63 != 0 {
		p.dead = true
		return hdr, &failure{code: CloseProtocolError, reason: "frame length with the top bit set"}
	}
	if masked {
		if len(b) < hdr+4 {
			return 0, nil
		}
		copy(p.key[:], b[hdr:hdr+4])
		hdr += 4
	}
	p.inFrame, p.fin, p.op, p.remain, p.kpos, p.skip = true, fin, op, size, 0, p.failed
	p.ctl = p.ctl[:0]
	if p.failed {
		// Closing: only the peer's close frame matters.
		p.skip = op != opClose || size > 125
		return hdr, nil
	}
	var f *failure
	switch {
	case b0&0x70 != 0:
		f = &failure{code: CloseProtocolError, reason: "reserved bits set"}
	case !masked:
		f = &failure{code: CloseProtocolError, reason: "client frame not masked"}
	case op >= opClose:
		switch {
		case op > opPong:
			f = &failure{code: CloseProtocolError, reason: "unknown opcode"}
		case !fin:
			f = &failure{code: CloseProtocolError, reason: "fragmented control frame"}
		case size > 125:
			f = &failure{code: CloseProtocolError, reason: "control frame longer than 125 bytes"}
		}
	case op > opBinary:
		f = &failure{code: CloseProtocolError, reason: "unknown opcode"}
	case op == opContinuation && !p.inMsg:
		f = &failure{code: CloseProtocolError, reason: "continuation without a message"}
	case op != opContinuation && p.inMsg:
		f = &failure{code: CloseProtocolError, reason: "new message inside a fragmented one"}
	case op == opBinary:
		f = &failure{code: CloseUnsupported, reason: "binary frames are not supported"}
	case size+uint64(p.msg.n) > uint64(p.limit):
		f = &failure{code: CloseTooBig, reason: "message larger than the read limit"}
	}
	if f != nil {
		// A bad close frame is still the peer's close.
		f.closed = op == opClose
		p.skip = true
		return hdr, f
	}
	if op == opText {
		p.inMsg = true
		p.msg.reset()
		p.utf8.reset()
	}
	return hdr, nil
}

// endFrame handles a frame whose payload is all read, and returns a
// failure if the frame breaks the protocol.
func (p *parser) endFrame(s sink) *failure {
	p.inFrame = false
	p.frames++
	if !p.inMsg || (p.op == opText || p.op == opContinuation) && p.fin {
		p.units++
	}
	if p.skip {
		return nil
	}
	switch p.op {
	case opPing:
		s.ping(p.ctl)
	case opPong:
		// Liveness only.
	case opClose:
		// Nothing after the peer's close frame is read (RFC 6455 section
		// 5.5.1): it is the end of the stream.
		p.dead = true
		c := p.ctl
		switch {
		case p.failed:
			s.closeFrame(closeNoStatus, "") // the answer to our close
		case len(c) == 0:
			s.closeFrame(closeNoStatus, "")
		case len(c) == 1:
			return &failure{code: CloseProtocolError, reason: "close frame with a 1-byte payload", closed: true}
		case !validCloseCode(int(binary.BigEndian.Uint16(c))):
			return &failure{code: CloseProtocolError, reason: "close code that may not be sent", closed: true}
		case !utf8.Valid(c[2:]):
			return &failure{code: CloseInvalidData, reason: "close reason is not valid UTF-8", closed: true}
		default:
			s.closeFrame(int(binary.BigEndian.Uint16(c)), string(c[2:]))
		}
	default: // text or continuation
		if !p.fin {
			return nil
		}
		if !p.utf8.complete() {
			return &failure{code: CloseInvalidData, reason: "text message ends inside a UTF-8 sequence"}
		}
		p.inMsg = false
		s.message(p.msg.bytes())
		p.msg.reset()
	}
	return nil
}

// chunkSize is the size of the pooled chunks a message is assembled in.
const chunkSize = 4 << 10

var chunkPool = sync.Pool{New: func() any { return new([chunkSize]byte) }}

// assembler holds a message that arrives in pieces, in pooled chunks: it
// takes no more memory than the bytes that came (rounded up to a chunk),
// and none of it is garbage while the message grows, so a client sending
// a big message slowly pins only what it sent. An empty assembler holds
// nothing.
type assembler struct {
	chunks []*[chunkSize]byte
	n      int // bytes held
}

// write appends p.
func (a *assembler) write(p []byte) {
	for len(p) > 0 {
		i, off := a.n/chunkSize, a.n%chunkSize
		if i == len(a.chunks) {
			a.chunks = append(a.chunks, chunkPool.Get().(*[chunkSize]byte))
		}
		k := copy(a.chunks[i][off:], p)
		a.n += k
		p = p[k:]
	}
}

// bytes returns the message, valid until reset: the one chunk when it
// fits in one, else a copy in one piece.
func (a *assembler) bytes() []byte {
	switch len(a.chunks) {
	case 0:
		return nil
	case 1:
		return a.chunks[0][:a.n]
	}
	b := make([]byte, 0, a.n)
	for _, c := range a.chunks {
		b = append(b, c[:min(chunkSize, a.n-len(b))]...)
	}
	return b
}

// reset empties the assembler, returning its chunks to the pool.
func (a *assembler) reset() {
	for i, c := range a.chunks {
		chunkPool.Put(c)
		a.chunks[i] = nil
	}
	a.chunks, a.n = a.chunks[:0], 0
	if cap(a.chunks) > 16 {
		a.chunks = nil
	}
}
