package wsconn

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// fuzzLimit is the read limit of both readers: small, so that 1009 is
// within the fuzzer's reach.
const fuzzLimit = 1 << 10

// FuzzReaderMatchesGorilla feeds a client byte stream to our parser, in
// the pieces chop describes, and to gorilla/websocket's reader acting as a
// server, and requires the same text messages, the same pings and the same
// outcome (the stream ended, a valid close frame, or a failure with its
// close code) from both.
//
// gorilla is made to read as the hub does: a binary message is a 1003
// failure where it starts; a text message fails with 1007 at its first
// byte that cannot begin valid UTF-8 (RFC 6455 section 8.1: the endpoint
// MUST fail the connection on invalid UTF-8; failing at the first bad byte
// is what our parser does, and what the model checks it does); a close
// reason that is not UTF-8 is 1007 (section 7.4.1), where gorilla says
// 1002.
//
// Where the two may differ (everything else is a bug):
//
//  1. A 64-bit length with the most significant bit set (section 5.2: it
//     MUST be 0). gorilla reports ErrReadLimit; it is a protocol error,
//     1002, as we say. Mapped, not excused: the frame is checked.
//  2. A binary frame that is also over the read limit: we say 1003,
//     gorilla says 1009. Both reasons hold (section 7.4.1); the RFC orders
//     no checks.
//  3. A close frame with a 1-byte payload: section 5.5.1 says a close body
//     MUST begin with a 2-byte code; we fail it (1002), gorilla takes it
//     as a close without a code (1005). gorilla's leniency.
//  4. Close code 1014 (Bad Gateway, registered with IANA, section 11.7):
//     we accept it; gorilla's list of codes predates it and says 1002.
//  5. A control frame whose length, 125 or less, is written in the 16- or
//     64-bit form: section 5.2 requires the minimal encoding of the sender,
//     and prescribes nothing to the receiver. gorilla judges control frame
//     lengths by the 7-bit field and fails (1002); we accept it as we
//     accept, as gorilla does, non-minimal lengths of data frames. Only
//     what comes before that frame is compared.
//  6. A stream that ends inside a frame header that gorilla failed from its
//     first two bytes (say, reserved bits): we wait for the whole header,
//     so we report nothing. No RFC rule says when a bad frame is detected;
//     completing the header (with zeros) must make us fail with 1002.
//
// For each, what came before the frame in question must be the same: our
// parser is run again on the stream up to that frame.
func FuzzReaderMatchesGorilla(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.data, s.chop)
	}
	f.Fuzz(func(t *testing.T, data, chop []byte) {
		if len(data) > 1<<16 {
			return // gorilla reads them a byte at a time
		}
		ours := runOurs(t, data, chop)
		theirs := runGorilla(t, data)
		if ours.equal(theirs.log) {
			return
		}
		if why, ok := allowedDifference(t, data, chop, ours, theirs); ok {
			t.Logf("allowed difference %s", why)
			return
		}
		t.Fatalf("our parser and gorilla disagree\ninput %s\nchop %v\nours:    %s\ngorilla: %s (after %d bytes: %v)",
			short(data), chop, ours.log, theirs.log, theirs.served, theirs.err)
	})
}

type fuzzSeed struct{ data, chop []byte }

func fuzzSeeds() []fuzzSeed {
	text := func(s string) []byte { return clientFrame(true, opText, []byte(s)) }
	big := bytes.Repeat([]byte("y"), fuzzLimit)
	return []fuzzSeed{
		{text("hello"), nil},
		{text("hello"), []byte{0}},
		{cat(text("a"), text("héllo wörld"), text("")), []byte{2, 0, 5}},
		{cat(
			clientFrame(false, opText, []byte("frag")),
			clientFrame(true, opPing, []byte("ping!")),
			clientFrame(false, opContinuation, []byte("men")),
			clientFrame(true, opPong, nil),
			clientFrame(true, opContinuation, []byte("ted")),
		), []byte{3, 1}},
		{clientFrame(true, opClose, closePayload(CloseNormal, "done")), nil},
		{cat(
			clientFrame(true, opPing, []byte("a")),
			clientFrame(true, opPong, []byte("bb")),
			clientFrame(true, opPing, []byte("ccc")),
			clientFrame(true, opClose, closePayload(CloseGoingAway, "x")),
		), []byte{4}},
		{clientFrame(true, opClose, nil), nil},
		{cat(text("x"), clientFrame(true, opClose, closePayload(1005, ""))), nil},
		{clientFrame(true, opClose, closePayload(1004, "")), nil},
		{clientFrame(true, opClose, closePayload(2999, "")), nil},
		{clientFrame(true, opClose, closePayload(5000, "")), nil},
		{clientFrame(true, opClose, closePayload(CloseNormal, "\xc3")), nil},
		{clientFrame(true, opClose, []byte{3}), nil},
		{rawFrame(0x80|opText, false, 5, []byte("plain")), nil},
		{rawFrame(0x80|0x40|opText, true, 1, []byte("r")), nil},
		{rawFrame(0x80|0x10|opPing, true, 0, nil), nil},
		{cat(text("ok"), []byte{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1}, testKey[:], []byte("z")), nil},
		{cat(
			clientFrame(false, opText, []byte("caf\xc3")),
			clientFrame(true, opPing, nil),
			clientFrame(true, opContinuation, []byte("\xa9 ok")),
		), []byte{1}},
		{cat(
			clientFrame(false, opText, []byte("caf\xc3")),
			clientFrame(true, opContinuation, []byte("e")),
		), nil},
		{clientFrame(true, opText, big), []byte{255, 7}},
		{clientFrame(true, opText, append(big, 'z')), nil},
		{cat(clientFrame(false, opText, big[:1000]), clientFrame(true, opContinuation, big[:24])), nil},
		{cat(clientFrame(false, opText, big[:600]), clientFrame(true, opContinuation, big[:425])), []byte{200}},
		{clientFrame(true, opBinary, []byte{0, 1, 2}), nil},
		{clientFrame(true, opBinary, append(big, 0)), nil},
		{clientFrame(true, opText, []byte("ab\xffcd")), []byte{0}},
		{clientFrame(true, 0x3, nil), nil},
		{clientFrame(false, opPing, nil), nil},
		{clientFrame(true, opPing, bytes.Repeat([]byte("p"), 126)), nil},
		{cat(clientFrame(true, opText, []byte("cut")), []byte{0x81, 0x85, 1, 2}), nil},
	}
}

// event is one thing a reader reports: a text message, a ping, a valid
// close frame, a failure (with its close code) or the end of the stream
// (the last three end the comparison).
type event struct {
	kind   byte // 'm', 'p', 'c', 'f', 'e'
	code   int
	data   string
	reason string // of a failure, for the report
}

func (e event) String() string {
	switch e.kind {
	case 'm':
		return "message " + short(e.data)
	case 'p':
		return "ping " + short(e.data)
	case 'c':
		return fmt.Sprintf("close %d %s", e.code, short(e.data))
	case 'f':
		return fmt.Sprintf("fail %d (%s)", e.code, e.reason)
	}
	return "end"
}

// short quotes s, or the start of it when it is long.
func short[S string | []byte](s S) string {
	if len(s) <= 64 {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:64], len(s))
}

func (e event) terminal() bool { return e.kind == 'c' || e.kind == 'f' || e.kind == 'e' }

func (e event) same(o event) bool {
	return e.kind == o.kind && e.code == o.code && e.data == o.data
}

type eventLog []event

// equal compares two logs up to their first terminal event.
func (l eventLog) equal(o eventLog) bool {
	a, b := l.upToEnd(), o.upToEnd()
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].same(b[i]) {
			return false
		}
	}
	return true
}

// upToEnd is l up to its first terminal event, included.
func (l eventLog) upToEnd() eventLog {
	for i, e := range l {
		if e.terminal() {
			return l[:i+1]
		}
	}
	return l
}

// before is the events before the first terminal one, and the terminal.
func (l eventLog) before() (eventLog, event) {
	u := l.upToEnd()
	return u[:len(u)-1], u[len(u)-1]
}

func (l eventLog) String() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.String()
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// ourResult is what our parser made of a stream.
type ourResult struct {
	log  eventLog // ends with 'e' unless a failure or a close came first
	p    *parser
	rest []byte // the incomplete header left at the end
}

func (r ourResult) equal(o eventLog) bool { return r.log.equal(o) }

// fuzzSink logs what the parser reports and checks the sink's contract.
type fuzzSink struct {
	t      *testing.T
	p      *parser
	log    eventLog
	failAt int // index of the failure in log, -1 before one
}

// noteFailure puts a placeholder in the log when the parser failed before
// this event (feed returns the failure only after its loop).
func (s *fuzzSink) noteFailure() {
	if s.p.failed && s.failAt < 0 {
		s.failAt = len(s.log)
		s.log = append(s.log, event{kind: 'f'})
	}
}

func (s *fuzzSink) message(p []byte) {
	s.noteFailure()
	if s.p.failed {
		s.t.Fatalf("message %q reported after a failure", p)
	}
	if !utf8.Valid(p) {
		s.t.Fatalf("message %q is not valid UTF-8", p)
	}
	if len(p) > fuzzLimit {
		s.t.Fatalf("message of %d bytes over the limit", len(p))
	}
	s.log = append(s.log, event{kind: 'm', data: string(p)})
}

func (s *fuzzSink) ping(p []byte) {
	s.noteFailure()
	if s.p.failed {
		s.t.Fatalf("ping %q reported after a failure", p)
	}
	if len(p) > 125 {
		s.t.Fatalf("ping of %d bytes", len(p))
	}
	s.log = append(s.log, event{kind: 'p', data: string(p)})
}

func (s *fuzzSink) closeFrame(code int, reason string) {
	s.noteFailure()
	if code != closeNoStatus && !validCloseCode(code) {
		s.t.Fatalf("close frame with code %d reported", code)
	}
	if !utf8.ValidString(reason) {
		s.t.Fatalf("close reason %q is not valid UTF-8", reason)
	}
	s.log = append(s.log, event{kind: 'c', code: code, data: reason})
}

// pieces calls fn with the pieces of data chop describes: each byte of
// chop, in turn, is the length of a piece less one; no chop, one piece.
func pieces(data, chop []byte, fn func([]byte)) {
	for i := 0; len(data) > 0; i++ {
		n := len(data)
		if len(chop) > 0 {
			n = min(n, int(chop[i%len(chop)])+1)
		}
		fn(data[:n])
		data = data[n:]
	}
}

// runOurs feeds data to a parser in pieces, as the connection does: what
// feed leaves is fed again in front of the next piece. It checks the
// parser's invariants on the way.
func runOurs(t *testing.T, data, chop []byte) ourResult {
	p := &parser{limit: fuzzLimit}
	s := &fuzzSink{t: t, p: p, failAt: -1}
	var rest []byte
	failures := 0
	pieces(data, chop, func(piece []byte) {
		in := append(bytes.Clone(rest), piece...)
		orig := bytes.Clone(in)
		r, f := p.feed(in, s)
		if len(r) >= maxHeader {
			t.Fatalf("feed left %d bytes, a header is shorter", len(r))
		}
		if !bytes.Equal(r, orig[len(orig)-len(r):]) {
			t.Fatalf("feed left %q, not the end of what it was fed", r)
		}
		if p.dead && r != nil {
			t.Fatalf("a dead parser left %d bytes", len(r))
		}
		rest = bytes.Clone(r)
		if f == nil {
			if p.failed && failures == 0 {
				t.Fatalf("the parser failed but feed returned no failure")
			}
			return
		}
		failures++
		if failures > 1 {
			t.Fatalf("a second failure returned: %v", f)
		}
		switch f.code {
		case CloseProtocolError, CloseUnsupported, CloseInvalidData, CloseTooBig:
		default:
			t.Fatalf("failure with code %d", f.code)
		}
		if !p.failed {
			t.Fatalf("failure returned but the parser is not failed")
		}
		e := event{kind: 'f', code: f.code, reason: f.reason}
		if s.failAt < 0 {
			s.failAt = len(s.log)
			s.log = append(s.log, e)
		} else {
			s.log[s.failAt] = e
		}
	})
	if s.failAt >= 0 && s.log[s.failAt].code == 0 {
		t.Fatalf("the parser failed but feed returned no failure")
	}
	return ourResult{log: append(s.log, event{kind: 'e'}), p: p, rest: rest}
}

// gorillaResult is what gorilla/websocket made of a stream.
type gorillaResult struct {
	log    eventLog // ends with its terminal event
	served int      // bytes gorilla had read when it stopped
	err    error    // the error it stopped with, if any
}

// runGorilla reads data with a gorilla/websocket server connection.
func runGorilla(t *testing.T, data []byte) gorillaResult {
	conn := &fuzzNetConn{data: data}
	req := &http.Request{
		Method: http.MethodGet,
		Host:   "hub.test",
		Header: http.Header{
			"Connection":            {"Upgrade"},
			"Upgrade":               {"websocket"},
			"Sec-Websocket-Version": {"13"},
			"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
		},
	}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	ws, err := up.Upgrade(&fuzzResponse{conn: conn}, req, nil)
	if err != nil {
		t.Fatalf("gorilla upgrade: %v", err)
	}
	ws.SetReadLimit(fuzzLimit)
	var r gorillaResult
	ws.SetPingHandler(func(p string) error {
		r.log = append(r.log, event{kind: 'p', data: p})
		return nil
	})
	end := func(e event, err error) gorillaResult {
		r.log = append(r.log, e)
		r.served, r.err = conn.pos, err
		return r
	}
	for {
		typ, mr, err := ws.NextReader()
		if err != nil {
			return end(gorillaEvent(t, data, conn.pos, err), err)
		}
		if typ == websocket.BinaryMessage {
			return end(event{kind: 'f', code: CloseUnsupported, reason: "binary message"}, nil)
		}
		var v utf8Prefix
		var buf [256]byte
		for {
			n, err := mr.Read(buf[:])
			if !v.add(buf[:n]) {
				return end(event{kind: 'f', code: CloseInvalidData, reason: "not UTF-8 (model)"}, nil)
			}
			if err == io.EOF {
				if !v.complete() {
					return end(event{kind: 'f', code: CloseInvalidData, reason: "ends inside a UTF-8 sequence (model)"}, nil)
				}
				r.log = append(r.log, event{kind: 'm', data: string(v.b)})
				break
			}
			if err != nil {
				return end(gorillaEvent(t, data, conn.pos, err), err)
			}
		}
	}
}

// gorillaEvent maps the error gorilla's reader stopped with, after served
// bytes of data, to the terminal event (see conn.go of gorilla/websocket
// v1.5.3: advanceFrame, handleProtocolError).
func gorillaEvent(t *testing.T, data []byte, served int, err error) event {
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		if ce.Code == websocket.CloseAbnormalClosure {
			// errUnexpectedEOF: the stream ended. A received close frame
			// cannot carry 1006 (gorilla rejects it).
			return event{kind: 'e'}
		}
		return event{kind: 'c', code: ce.Code, data: ce.Text}
	case err == io.EOF, err == io.ErrUnexpectedEOF:
		return event{kind: 'e'}
	case err == websocket.ErrReadLimit:
		// Also what gorilla says of a length with the top bit set
		// (setReadRemaining): a protocol error (difference 1).
		if fr, ok := frameAt(data, served); ok && fr.len7 == 127 && served == fr.start+10 && data[fr.start+2]&0x80 != 0 {
			return event{kind: 'f', code: CloseProtocolError, reason: "gorilla: top bit of the length"}
		}
		return event{kind: 'f', code: CloseTooBig, reason: err.Error()}
	}
	msg, ok := strings.CutPrefix(err.Error(), "websocket: ")
	if !ok {
		t.Fatalf("gorilla: unexpected error %v", err)
	}
	if msg == "invalid utf8 payload in close frame" {
		return event{kind: 'f', code: CloseInvalidData, reason: "gorilla: " + msg}
	}
	// The protocol errors of advanceFrame: the header's, joined with ", ",
	// and the close code's.
	if !strings.HasPrefix(msg, "bad close code ") {
		for _, part := range strings.Split(msg, ", ") {
			switch {
			case part == "RSV1 set", part == "RSV2 set", part == "RSV3 set",
				part == "len > 125 for control", part == "FIN not set on control",
				part == "data before FIN", part == "continuation after FIN",
				part == "bad MASK", strings.HasPrefix(part, "bad opcode "):
			default:
				t.Fatalf("gorilla: unexpected error %v", err)
			}
		}
	}
	return event{kind: 'f', code: CloseProtocolError, reason: "gorilla: " + msg}
}

// utf8Prefix checks, as bytes come, that they can begin valid UTF-8.
type utf8Prefix struct {
	b  []byte
	ok int // b[:ok] is valid UTF-8, a whole number of characters
}

func (u *utf8Prefix) add(p []byte) bool {
	u.b = append(u.b, p...)
	for u.ok < len(u.b) {
		r, n := utf8.DecodeRune(u.b[u.ok:])
		if r == utf8.RuneError && n == 1 {
			// Invalid, or the start of a character still to come.
			return !utf8.FullRune(u.b[u.ok:])
		}
		u.ok += n
	}
	return true
}

func (u *utf8Prefix) complete() bool { return u.ok == len(u.b) }

// wireFrame is where a frame lies in a stream, for the checks of the
// allowed differences.
type wireFrame struct {
	start, hdrEnd, end int // hdrEnd and end may lie past the stream's end
	b0, len7           byte
	masked             bool
	length             uint64 // valid when hdrEnd is within the stream
	key                [4]byte
}

func (f wireFrame) op() byte { return f.b0 & 0x0f }

// frameAt returns the frame of data that holds byte served-1, the last
// byte a reader took.
func frameAt(data []byte, served int) (wireFrame, bool) {
	off := served - 1
	for pos := 0; pos < len(data) && off >= 0; {
		f := wireFrame{start: pos, b0: data[pos]}
		if pos+2 > len(data) {
			f.hdrEnd, f.end = pos+2, pos+2
			return f, off >= pos
		}
		f.len7, f.masked = data[pos+1]&0x7f, data[pos+1]&0x80 != 0
		ext := map[byte]int{126: 2, 127: 8}[f.len7]
		f.hdrEnd = pos + 2 + ext
		if f.masked {
			f.hdrEnd += 4
		}
		if f.hdrEnd > len(data) {
			f.end = f.hdrEnd
			return f, off >= pos
		}
		switch ext {
		case 0:
			f.length = uint64(f.len7)
		case 2:
			f.length = uint64(binary.BigEndian.Uint16(data[pos+2:]))
		case 8:
			f.length = binary.BigEndian.Uint64(data[pos+2:])
		}
		if f.masked {
			copy(f.key[:], data[f.hdrEnd-4:])
		}
		if f.length > uint64(len(data)) {
			f.end = len(data) + 1
		} else {
			f.end = f.hdrEnd + int(f.length)
		}
		if off < f.end {
			return f, true
		}
		pos = f.end
	}
	return wireFrame{}, false
}

// payload is f's payload in data, unmasked, as far as data holds it.
func (f wireFrame) payload(data []byte) []byte {
	if f.hdrEnd >= len(data) {
		return nil
	}
	p := bytes.Clone(data[f.hdrEnd:min(f.end, len(data))])
	if f.masked {
		for i := range p {
			p[i] ^= f.key[i&3]
		}
	}
	return p
}

// allowedDifference reports whether ours and theirs differ only as the
// comment of FuzzReaderMatchesGorilla allows, and which difference.
func allowedDifference(t *testing.T, data, chop []byte, ours ourResult, theirs gorillaResult) (string, bool) {
	gEvents, gEnd := theirs.log.before()
	oEvents, oEnd := ours.log.before()
	fr, ok := frameAt(data, theirs.served)
	if !ok || gEnd.kind == 'e' {
		return "", false
	}
	// What came before the frame gorilla stopped at must be the same.
	pre := runOurs(t, data[:fr.start], chop)
	if !pre.log.equal(append(gEvents[:len(gEvents):len(gEvents)], event{kind: 'e'})) {
		return "", false
	}
	sameBefore := eventLog(oEvents).equal(gEvents)
	p := fr.payload(data)
	switch {
	case gEnd.kind == 'f' && gEnd.code == CloseTooBig && fr.op() == opBinary &&
		sameBefore && oEnd.kind == 'f' && oEnd.code == CloseUnsupported:
		return "2: binary over the limit", true
	case gEnd.kind == 'c' && gEnd.code == closeNoStatus && fr.op() == opClose && fr.length == 1 &&
		sameBefore && oEnd.kind == 'f' && oEnd.code == CloseProtocolError:
		return "3: close with a 1-byte payload", true
	case gEnd.kind == 'f' && gEnd.reason == "gorilla: bad close code 1014" && fr.op() == opClose && len(p) >= 2 && sameBefore:
		if utf8.Valid(p[2:]) {
			return "4: close code 1014", oEnd.kind == 'c' && oEnd.code == 1014 && oEnd.data == string(p[2:])
		}
		return "4: close code 1014, reason not UTF-8", oEnd.kind == 'f' && oEnd.code == CloseInvalidData
	case gEnd.kind == 'f' && gEnd.reason == "gorilla: len > 125 for control" && fr.op() >= opClose &&
		(fr.hdrEnd > len(data) || fr.length <= 125):
		// Ours may take the frame: only what came before it counts, and
		// that was checked.
		return "5: control frame length not minimally encoded", true
	case gEnd.kind == 'f' && gEnd.code == CloseProtocolError && fr.hdrEnd > len(data) &&
		sameBefore && oEnd.kind == 'e' && len(ours.rest) > 0 && fr.start == len(data)-len(ours.rest):
		// The stream ends inside the header gorilla failed. Completed, it
		// must fail with us too.
		var r recorder
		_, f := ours.p.feed(append(bytes.Clone(ours.rest), make([]byte, maxHeader)...), &r)
		return "6: stream ends in a bad header", f != nil && f.code == CloseProtocolError
	}
	return "", false
}

// fuzzNetConn is the net.Conn gorilla reads the stream from, a byte per
// Read, so that how far it read tells where it stopped; writes go nowhere.
type fuzzNetConn struct {
	data []byte
	pos  int
}

func (c *fuzzNetConn) Read(b []byte) (int, error) {
	if c.pos >= len(c.data) {
		return 0, io.EOF
	}
	if len(b) == 0 {
		return 0, nil
	}
	b[0] = c.data[c.pos]
	c.pos++
	return 1, nil
}

func (c *fuzzNetConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *fuzzNetConn) Close() error                     { return nil }
func (c *fuzzNetConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fuzzNetConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fuzzNetConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzNetConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzNetConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzResponse is the http.ResponseWriter the Upgrader hijacks.
type fuzzResponse struct {
	conn *fuzzNetConn
	h    http.Header
}

func (w *fuzzResponse) Header() http.Header {
	if w.h == nil {
		w.h = http.Header{}
	}
	return w.h
}
func (w *fuzzResponse) Write(b []byte) (int, error) { return len(b), nil }
func (w *fuzzResponse) WriteHeader(int)             {}
func (w *fuzzResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.conn, bufio.NewReadWriter(bufio.NewReader(w.conn), bufio.NewWriter(w.conn)), nil
}
