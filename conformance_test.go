package wshub_test

// The project's own RFC 6455 conformance suite, modelled on
// Autobahn|Testsuite: its sections 1–7 and 9, with its case numbers and
// what each case sends (autobahntestsuite/case/caseN_N_N.py), run against
// a real hub over real sockets with raw frames, once for each read driver
// of the hub: "epoll" (a plain TCP server, read from the epoll loop on
// Linux) and "tls" (a TLS server, read by a blocking reader goroutine).
//
// The hub is no Autobahn echo server, so a case expects instead:
//   - for a text message Autobahn wants echoed: the message is the JSON
//     ping command {"cmd":1,"cid":<the text>}, and the echo is the pong
//     {"cmd":2,"cid":<the text>,"content":"pong"}; a text message that is
//     valid UTF-8 but not JSON is answered with an error frame (cmd 40,
//     code 400) and the connection stays open;
//   - for a binary message: the close code 1003 (SPEC §1);
//   - for a ping frame: a pong frame with its payload; a pong frame is
//     ignored;
//   - where Autobahn wants the connection failed: the close code of SPEC
//     §1, after the replies to the frames read before the bad one; the
//     client answers the close and the hub must close TCP at once
//     (within tcpCloseBound, well under the hub's 2 s close grace);
//   - every case that leaves the connection open ends as Autobahn's do:
//     the client closes with 1000, the hub answers 1000 (nothing else may
//     come first) and closes TCP.
// The welcome frame (cmd 20) that opens every connection is read and
// checked by dialRaw. Cases that are the hub's own (SPEC §1 and §5 rules
// Autobahn has no case for) are numbered "x.N".

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime/debug"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
)

// Section 9 sends messages of up to 16 MiB, Autobahn's sizes; under the
// race detector those would take minutes (TLS most: the hub's buffer
// handling and the client's masking are instrumented byte by byte), so
// there every message and the read limit are a quarter of that (the
// fragment and chop sizes stay Autobahn's, so fragments and chops are
// fewer).
var (
	section9Scale = func() int {
		if raceEnabled() {
			return 4
		}
		return 1
	}()
	// confReadLimit is the hub's ReadLimit in the suite: the largest
	// message of section 9.
	confReadLimit = 16 << 20 / section9Scale
)

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

const (
	// tcpCloseBound bounds the time from the close handshake's end to
	// the hub closing TCP: "at once", well under its 2 s close grace.
	tcpCloseBound = time.Second
	// failFastBound bounds the time from the chop holding an invalid
	// UTF-8 byte to the hub's close frame (cases 6.4.x).
	failFastBound = 2 * time.Second
	// heavyWait bounds each read of the section 9 cases.
	heavyWait = 30 * time.Second
	// lightWorkers is how many light cases run at a time per driver:
	// they mostly wait for the hub, so more than the two cores.
	lightWorkers = 8
)

// Opcodes of RFC 6455 section 5.2.
const (
	opCont   byte = 0
	opText   byte = 1
	opBinary byte = 2
	opClose  byte = 8
	opPing   byte = 9
	opPong   byte = 10
)

// TestConformance runs every case for each read driver:
// TestConformance/epoll/6.4.3, TestConformance/tls/9.1.6, ...
func TestConformance(t *testing.T) {
	cases := conformanceCases(t)
	// The drivers one after the other: each keeps the cores busy enough,
	// and the time bounds of the cases must hold.
	for _, driver := range []string{"epoll", "tls"} {
		t.Run(driver, func(t *testing.T) {
			s := startConfServer(t, driver == "tls")
			var light, heavy []confCase
			for _, tc := range cases {
				if tc.heavy {
					heavy = append(heavy, tc)
				} else {
					light = append(light, tc)
				}
			}
			runCases(t, s, light, lightWorkers)
			// The big messages one at a time, after the light cases: they
			// keep a core busy.
			runCases(t, s, heavy, 1)
		})
	}
}

// confCase is one case of the suite: its steps run in order on a fresh
// connection of user "c"+id.
type confCase struct {
	id    string // Autobahn's case number, e.g. "6.4.3"; "x.N" for the hub's own
	heavy bool   // section 9 sizes: run one at a time, reads wait heavyWait
	steps []step
}

// step is one action or expectation of a case.
type step func(c *rawClient)

// runCases runs the cases as subtests, at most workers at a time.
// t.Run is called from several goroutines at once, which testing allows:
// unlike t.Parallel, it is not bound by -parallel (GOMAXPROCS), and the
// cases mostly wait.
func runCases(t *testing.T, s confServer, cases []confCase, workers int) {
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for _, tc := range cases {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			t.Run(tc.id, func(t *testing.T) { tc.run(t, s) })
		}()
	}
	wg.Wait()
}

// run connects, runs the steps, and closes cleanly if no step closed.
func (tc confCase) run(t *testing.T, s confServer) {
	wait := hubtest.Timeout
	if tc.heavy {
		wait = heavyWait
	}
	c := dialRaw(t, s, "c"+tc.id, wait)
	for _, st := range tc.steps {
		st(c)
	}
	if !c.closed {
		sendAll(closeFrame(1000, ""))(c)
		wantAnswer(1000)(c)
	}
}

// confServer is a hub served for the suite through one read driver.
type confServer struct {
	addr string      // host:port
	tls  *tls.Config // the client's, for the TLS driver; nil for plain TCP
}

// startConfServer starts a hub (ReadLimit confReadLimit, development
// authentication) on httptest.NewServer, or NewTLSServer when useTLS.
func startConfServer(t *testing.T, useTLS bool) confServer {
	h, err := wshub.New(wshub.Options{
		Authenticate: wshub.DevAuthenticate,
		ReadLimit:    int64(confReadLimit),
		PingInterval: time.Hour, // no hub ping in the middle of a case
		// Every case dials from 127.0.0.1, over 300 in a few seconds.
		UpgradeRate: -1,
	})
	require.NoError(t, err)
	var srv *httptest.Server
	var conf *tls.Config
	if useTLS {
		srv = httptest.NewTLSServer(h)
		conf = srv.Client().Transport.(*http.Transport).TLSClientConfig
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hubtest.Timeout)
		defer cancel()
		assert.NoError(t, h.Shutdown(ctx))
		srv.Close()
	})
	return confServer{addr: srv.Listener.Addr().String(), tls: conf}
}

// rawClient is the suite's WebSocket client: it writes the frames a case
// built (masked, with clientFrame) as they are, and reads the hub's
// frames one by one, failing the test on any frame a server must not
// send.
type rawClient struct {
	t      *testing.T
	conn   net.Conn
	br     *bufio.Reader
	wait   time.Duration // bound of a read that expects a frame
	code   int           // code of the last close frame from the hub
	closed bool          // a close frame went each way
}

// dialRaw connects as user, does the opening handshake (RFC 6455 section
// 4.1) by hand, and reads the welcome frame.
func dialRaw(t *testing.T, s confServer, user string, wait time.Duration) *rawClient {
	t.Helper()
	var conn net.Conn
	var err error
	if s.tls != nil {
		conn, err = tls.Dial("tcp", s.addr, s.tls)
	} else {
		conn, err = net.Dial("tcp", s.addr)
	}
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	nonce := make([]byte, 16)
	rand.Read(nonce)
	key := base64.StdEncoding.EncodeToString(nonce)
	rawWrite(t, conn, []byte("GET /?token="+url.QueryEscape(user)+" HTTP/1.1\r\nHost: "+s.addr+
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "+key+
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	c := &rawClient{t: t, conn: conn, br: bufio.NewReaderSize(conn, 64<<10), wait: wait}
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(hubtest.Timeout)))
	resp, err := http.ReadResponse(c.br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	accept := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	require.Equal(t, base64.StdEncoding.EncodeToString(accept[:]), resp.Header.Get("Sec-WebSocket-Accept"))
	m := c.expect(hubtest.Timeout)
	require.Equal(t, opText, m.op, "first frame: %s", m)
	f, err := wshub.DecodeFrame(m.payload)
	require.NoError(t, err)
	require.Equal(t, wshub.CmdWelcome, f.Cmd, "first frame: %s", m)
	return c
}

// hubMessage is a control frame from the hub, or a data message put
// together from its frames.
type hubMessage struct {
	op      byte
	payload []byte
}

// String describes m for failure messages, cut short.
func (m hubMessage) String() string {
	p := m.payload
	if len(p) > 100 {
		p = p[:100]
	}
	if m.op == opClose && len(p) >= 2 {
		return fmt.Sprintf("close %d %q", binary.BigEndian.Uint16(p), p[2:])
	}
	return fmt.Sprintf("opcode %d (%d bytes) %q", m.op, len(m.payload), p)
}

// next reads the next message, waiting at most d for all of it. It fails
// the test on a frame RFC 6455 forbids a server to send (masked,
// reserved bits, unknown opcode, fragmented or long control frame, bad
// fragmentation, text that is not UTF-8); an error is the read's.
func (c *rawClient) next(d time.Duration) (hubMessage, error) {
	t := c.t
	t.Helper()
	require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(d)))
	var msg hubMessage
	inMsg := false
	for {
		var h [10]byte
		if _, err := io.ReadFull(c.br, h[:2]); err != nil {
			return hubMessage{}, err
		}
		fin, op, size := h[0]&0x80 != 0, h[0]&0x0f, uint64(h[1]&0x7f)
		require.Zero(t, h[0]&0x70, "hub frame with reserved bits set")
		require.Zero(t, h[1]&0x80, "hub frame is masked")
		switch size {
		case 126:
			if _, err := io.ReadFull(c.br, h[2:4]); err != nil {
				return hubMessage{}, err
			}
			size = uint64(binary.BigEndian.Uint16(h[2:4]))
		case 127:
			if _, err := io.ReadFull(c.br, h[2:10]); err != nil {
				return hubMessage{}, err
			}
			size = binary.BigEndian.Uint64(h[2:10])
		}
		require.LessOrEqual(t, size, uint64(4*confReadLimit), "hub frame length")
		p := make([]byte, size)
		if _, err := io.ReadFull(c.br, p); err != nil {
			return hubMessage{}, err
		}
		switch {
		case op >= opClose && op <= opPong:
			require.True(t, fin && size <= 125, "hub control frame fragmented or over 125 bytes")
			return hubMessage{op: op, payload: p}, nil
		case op == opText || op == opBinary:
			require.False(t, inMsg, "hub starts a message inside a fragmented one")
			msg, inMsg = hubMessage{op: op, payload: p}, true
		case op == opCont:
			require.True(t, inMsg, "hub continuation frame without a message")
			msg.payload = append(msg.payload, p...)
		default:
			require.Failf(t, "hub frame with an unknown opcode", "opcode %d", op)
		}
		if fin {
			require.True(t, msg.op != opText || utf8.Valid(msg.payload), "hub text message is not UTF-8")
			return msg, nil
		}
	}
}

// expect returns the next message, failing the test if none comes
// within d.
func (c *rawClient) expect(d time.Duration) hubMessage {
	c.t.Helper()
	m, err := c.next(d)
	require.NoError(c.t, err, "want a frame from the hub")
	return m
}

// expectClose expects the next message to be a close frame with code,
// within d.
func (c *rawClient) expectClose(code int, d time.Duration) {
	c.t.Helper()
	m, err := c.next(d)
	require.NoError(c.t, err, "want a close frame with %d within %v", code, d)
	c.checkClose(m, code)
}

// checkClose fails the test unless m is a close frame with code, and
// keeps the code for answerClose.
func (c *rawClient) checkClose(m hubMessage, code int) {
	t := c.t
	t.Helper()
	require.Equal(t, opClose, m.op, "want a close frame with %d, got %s", code, m)
	require.GreaterOrEqual(t, len(m.payload), 2, "hub close frame without a code")
	c.code = int(binary.BigEndian.Uint16(m.payload))
	require.Equal(t, code, c.code, "close code")
	require.True(t, utf8.Valid(m.payload[2:]), "hub close reason is not UTF-8")
}

// expectTCPEnd expects the hub to close the connection within d, with no
// frame before.
func (c *rawClient) expectTCPEnd(d time.Duration) {
	t := c.t
	t.Helper()
	m, err := c.next(d)
	require.Error(t, err, "frame after the close handshake: %s", m)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		require.Failf(t, "TCP not closed", "the hub did not close the connection within %v of the close handshake", d)
	}
	require.True(t, errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET),
		"want the connection closed, got %v", err)
}

// sendAll writes the frames in one write.
func sendAll(frames ...[]byte) step {
	return func(c *rawClient) { rawWrite(c.t, c.conn, bytes.Join(frames, nil)) }
}

// sendEach writes the frames one write each, a moment apart (Autobahn's
// sync = True).
func sendEach(frames ...[]byte) step {
	return func(c *rawClient) {
		for i, f := range frames {
			if i > 0 {
				time.Sleep(time.Millisecond)
			}
			rawWrite(c.t, c.conn, f)
		}
	}
}

// sendChops writes the frames' bytes in chops of size bytes, one write
// each (Autobahn's chopsize).
func sendChops(size int, frames ...[]byte) step {
	return func(c *rawClient) { rawWrite(c.t, c.conn, chopBytes(bytes.Join(frames, nil), size)...) }
}

// chopBytes cuts b into pieces of size bytes (the last one shorter).
func chopBytes(b []byte, size int) [][]byte {
	var out [][]byte
	for len(b) > size {
		out = append(out, b[:size])
		b = b[size:]
	}
	return append(out, b)
}

// wantPong expects a pong frame with payload.
func wantPong(payload []byte) step {
	return func(c *rawClient) {
		c.t.Helper()
		m := c.expect(c.wait)
		require.Equal(c.t, opPong, m.op, "want a pong, got %s", m)
		require.Equal(c.t, string(payload), string(m.payload), "pong payload")
	}
}

// hubReply is the part of the hub's JSON frames the suite checks.
type hubReply struct {
	Cmd     wshub.Cmd `json:"cmd"`
	CID     string    `json:"cid"`
	Content string    `json:"content"`
	Code    int       `json:"code"`
}

// decodeHubReply decodes m, which must be a text message.
func decodeHubReply(t *testing.T, m hubMessage) hubReply {
	t.Helper()
	require.Equal(t, opText, m.op, "want a text message, got %s", m)
	var r hubReply
	require.NoError(t, json.Unmarshal(m.payload, &r), "hub message %s", m)
	return r
}

// checkEcho fails the test unless m is the hub's answer to pingCmd(cid):
// {"cmd":2,"cid":cid,"content":"pong"}.
func checkEcho(t *testing.T, m hubMessage, cid string) {
	t.Helper()
	r := decodeHubReply(t, m)
	require.Equal(t, wshub.CmdPong, r.Cmd, "want a pong (cmd 2), got %s", m)
	require.Equal(t, "pong", r.Content)
	if r.CID != cid { // no testify diff of megabytes
		require.Failf(t, "pong cid differs", "got %d bytes %.60q, want %d bytes %.60q", len(r.CID), r.CID, len(cid), cid)
	}
}

// checkNotJSON fails the test unless m is the error frame (cmd 40, code
// 400) that answers a text message that is not JSON.
func checkNotJSON(t *testing.T, m hubMessage) {
	t.Helper()
	r := decodeHubReply(t, m)
	require.Equal(t, wshub.CmdError, r.Cmd, "want an error frame (cmd 40), got %s", m)
	require.Equal(t, 400, r.Code, "error code")
}

// wantEcho expects the hub's answer to pingCmd(cid).
func wantEcho(cid string) step {
	return func(c *rawClient) {
		c.t.Helper()
		checkEcho(c.t, c.expect(c.wait), cid)
	}
}

// wantNotJSON expects the answer to a text message that is not JSON.
func wantNotJSON() step {
	return func(c *rawClient) {
		c.t.Helper()
		checkNotJSON(c.t, c.expect(c.wait))
	}
}

// wantQuiet expects nothing from the hub for d.
func wantQuiet(d time.Duration) step {
	return func(c *rawClient) {
		c.t.Helper()
		m, err := c.next(d)
		require.Error(c.t, err, "want nothing yet, got %s", m)
		var ne net.Error
		require.True(c.t, errors.As(err, &ne) && ne.Timeout(), "want nothing yet, got %v", err)
	}
}

// wantClose expects the hub's next frame to be a close with code, within
// d (0: the case's wait).
func wantClose(code int, d time.Duration) step {
	return func(c *rawClient) {
		c.t.Helper()
		if d == 0 {
			d = c.wait
		}
		c.expectClose(code, d)
	}
}

// answerClose answers the hub's close frame with one echoing its code and
// expects the hub to close TCP within d (0: tcpCloseBound).
func answerClose(d time.Duration) step {
	return func(c *rawClient) {
		c.t.Helper()
		if d == 0 {
			d = tcpCloseBound
		}
		// Unchecked: a hub that fails a connection may also close TCP
		// without waiting for the answer; expectTCPEnd judges.
		c.conn.Write(closeFrame(c.code, ""))
		c.closed = true
		c.expectTCPEnd(d)
	}
}

// wantFail expects the hub to fail the connection with code: its next frame
// is a close with code; the client answers it and the hub closes TCP at
// once.
func wantFail(code int) step {
	return func(c *rawClient) {
		c.t.Helper()
		wantClose(code, 0)(c)
		answerClose(0)(c)
	}
}

// wantAnswer expects the hub's answer to the close the client sent: its
// next frame is a close with code, then the hub closes TCP at once (it
// has sent and received a close, RFC 6455 section 5.5.1).
func wantAnswer(code int) step {
	return func(c *rawClient) {
		c.t.Helper()
		c.expectClose(code, c.wait)
		c.closed = true
		c.expectTCPEnd(tcpCloseBound)
	}
}

// rsvFrame is a masked client frame (clientFrame) with the reserved bits
// rsv (0 to 7).
func rsvFrame(fin bool, op byte, payload []byte, rsv byte) []byte {
	f := clientFrame(fin, op, payload, true)
	f[0] |= rsv << 4
	return f
}

// finalFrame is a masked frame with FIN set.
func finalFrame(op byte, p []byte) []byte { return clientFrame(true, op, p, true) }

// partialFrame is a masked frame with FIN clear: a message goes on.
func partialFrame(op byte, p []byte) []byte { return clientFrame(false, op, p, true) }

// textFrame is a masked, final text frame.
func textFrame(p []byte) []byte { return finalFrame(opText, p) }

// closeFrame is a masked close frame with code and reason; code -1: none.
func closeFrame(code int, reason string) []byte {
	if code < 0 {
		return finalFrame(opClose, nil)
	}
	return finalFrame(opClose, append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...))
}

// fragmentFrames is the message msg of opcode op as frames of size bytes of
// payload each (the last one shorter), joined.
func fragmentFrames(op byte, msg []byte, size int) []byte {
	parts := chopBytes(msg, size)
	var out []byte
	for i, p := range parts {
		if i > 0 {
			op = opCont
		}
		out = append(out, clientFrame(i == len(parts)-1, op, p, true)...)
	}
	return out
}

// pingCmd is the JSON ping command carrying cid, which the hub answers with
// a pong carrying the same cid: the suite's echo.
func pingCmd(cid string) []byte {
	b, _ := json.Marshal(cid)
	return append(append([]byte(`{"cmd":1,"cid":`), b...), '}')
}

// pingCmdParts is pingCmd(strings.Join(parts, "")) cut at the parts' borders
// (the first with the head, the last with the tail); the parts must need
// no JSON escapes.
func pingCmdParts(parts ...string) [][]byte {
	out := make([][]byte, len(parts))
	for i, p := range parts {
		b, _ := json.Marshal(p)
		if string(b[1:len(b)-1]) != p {
			panic("pingCmdParts: part needs escapes: " + p)
		}
		out[i] = []byte(p)
	}
	out[0] = append([]byte(pingPrefix), out[0]...)
	out[len(out)-1] = append(out[len(out)-1], `"}`...)
	return out
}

// pingPrefix is pingCmd(cid) up to cid, for a cid that needs no escapes;
// pingHead is its length.
const (
	pingPrefix = `{"cmd":1,"cid":"`
	pingHead   = len(pingPrefix)
)

// textOfLen returns a text message of exactly n bytes and the step that
// expects its answer: for n of 18 or more pingCmd(cid) with a cid of filler
// text, else n bytes that are not JSON.
func textOfLen(n int) ([]byte, step) {
	if n < pingHead+2 {
		return bytes.Repeat([]byte("*"), n), wantNotJSON()
	}
	cid := fillerText(n - pingHead - 2)
	return append(append([]byte(pingPrefix), cid...), `"}`...), wantEcho(cid)
}

// fillerText returns n bytes of varied text that needs no JSON escapes.
func fillerText(n int) string {
	fillerOnce.Do(func() {
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		b := make([]byte, confReadLimit)
		x := uint64(1)
		for i := range b {
			x = x*6364136223846793005 + 1442695040888963407
			b[i] = alphabet[x>>58]
		}
		fillerBuf = string(b)
	})
	return fillerBuf[:n]
}

var (
	fillerOnce sync.Once
	fillerBuf  string
)
