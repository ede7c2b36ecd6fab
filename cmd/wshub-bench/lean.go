//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// The lean client: the scenarios speak the wire protocol directly over
// gorilla/websocket with small buffers, build their frames by appending
// bytes and pick the few fields they need out of incoming frames without
// decoding them, so that thousands of connections and hundreds of
// thousands of deliveries a second cost the tool little memory and CPU
// on a machine it shares with the hub.

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h): bind() to a
// source address defers the choice of the port to connect(), which then
// only needs the whole 4-tuple to be unique instead of the port.
const ipBindAddressNoPort = 24

// dialers opens connections to one hub from loopback source addresses
// 127.0.0.1, 127.0.0.2, ...: connection number i comes from address
// 1 + i/perSrc, so no single address runs out of ephemeral ports.
type dialers struct {
	url    string // ws://HOST:PORT/ws
	perSrc int
	// pool holds write buffers, used only while a frame is written.
	pool *sync.Pool

	mu sync.Mutex
	ws map[int]*websocket.Dialer // guarded by mu: one per source address
}

func newDialers(hubURL string, perSrc int) *dialers {
	if perSrc <= 0 {
		perSrc = 20000
	}
	return &dialers{url: hubURL, perSrc: perSrc, pool: &sync.Pool{}, ws: make(map[int]*websocket.Dialer)}
}

// srcAddr returns the source address of connection i.
func (d *dialers) srcAddr(i int) net.IP {
	k := 1 + i/d.perSrc
	return net.IPv4(127, byte(k>>16), byte(k>>8), byte(k))
}

func (d *dialers) dialer(i int) *websocket.Dialer {
	k := i / d.perSrc
	d.mu.Lock()
	defer d.mu.Unlock()
	if w := d.ws[k]; w != nil {
		return w
	}
	nd := &net.Dialer{
		LocalAddr: &net.TCPAddr{IP: d.srcAddr(i)},
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	w := &websocket.Dialer{
		NetDialContext:   nd.DialContext,
		HandshakeTimeout: 15 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  1024,
		WriteBufferPool:  d.pool,
	}
	d.ws[k] = w
	return w
}

// dial connects as user (the token is the user id: the hub uses
// DevAuthenticate) with batch=1 when batch is set.
func (d *dialers) dial(ctx context.Context, i int, user string, batch bool) (*websocket.Conn, error) {
	u := d.url + "?token=" + url.QueryEscape(user)
	if batch {
		u += "&batch=1"
	}
	ws, resp, err := d.dialer(i).DialContext(ctx, u, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: HTTP %d: %w", user, resp.StatusCode, err)
		}
		return nil, fmt.Errorf("dial %s from %s: %w", user, d.srcAddr(i), err)
	}
	return ws, nil
}

// bufPool holds the buffers incoming messages are read into; a connection
// holds one only while it handles a message.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readLoop reads messages from ws until it fails and calls fn for every
// JSON object in them (several per message on a batch=1 connection), with
// the time the message was read. It returns the error that ended it: a
// *websocket.CloseError when the hub closed the connection.
func readLoop(ws *websocket.Conn, fn func(line []byte, now int64)) error {
	for {
		_, r, err := ws.NextReader()
		if err != nil {
			return err
		}
		bp := bufPool.Get().(*[]byte)
		b, err := readAll(r, (*bp)[:0])
		if err != nil {
			*bp = b
			bufPool.Put(bp)
			return err
		}
		now := time.Now().UnixNano()
		for rest := b; len(rest) > 0; {
			line := rest
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				line, rest = rest[:i], rest[i+1:]
			} else {
				rest = nil
			}
			if len(line) > 0 && fn != nil {
				fn(line, now)
			}
		}
		if cap(b) <= 64<<10 {
			*bp = b
			bufPool.Put(bp)
		}
	}
}

// readAll appends what r holds to b.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// cmdPrefix starts every frame the hub encodes: Frame.Cmd is its first
// field.
var cmdPrefix = []byte(`{"cmd":`)

// lineCmd returns the cmd of an encoded frame, or -1.
func lineCmd(line []byte) int {
	if !bytes.HasPrefix(line, cmdPrefix) {
		return -1
	}
	n := 0
	for _, c := range line[len(cmdPrefix):] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// strField returns the raw value of the string field key of an encoded
// frame (without unescaping: the tool's own values need none), or nil. A
// key inside a string value cannot match: its quotes would be escaped.
func strField(line []byte, key string) []byte {
	var pat [32]byte
	p := append(pat[:0], '"')
	p = append(p, key...)
	p = append(p, `":"`...)
	i := bytes.Index(line, p)
	if i < 0 {
		return nil
	}
	v := line[i+len(p):]
	j := bytes.IndexByte(v, '"')
	if j < 0 {
		return nil
	}
	return v[:j]
}

// The payload of every message the tool sends is the content string
// "SRC.SEQ.UNIXNANO": the sending publisher or user number, the message's
// number from that sender (0, 1, ...) and when it was written, for the
// receivers' latency.

// appendContent appends the payload fields to b.
func appendContent(b []byte, src, seq int, sent int64) []byte {
	b = strconv.AppendInt(b, int64(src), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, '.')
	return strconv.AppendInt(b, sent, 10)
}

// parseContent parses "SRC.SEQ.UNIXNANO".
func parseContent(c []byte) (src, seq int, sent int64, ok bool) {
	var parts [3]int64
	k := 0
	for _, ch := range c {
		switch {
		case ch == '.':
			k++
			if k > 2 {
				return 0, 0, 0, false
			}
		case ch >= '0' && ch <= '9':
			parts[k] = parts[k]*10 + int64(ch-'0')
		default:
			return 0, 0, 0, false
		}
	}
	if k != 2 {
		return 0, 0, 0, false
	}
	return int(parts[0]), int(parts[1]), parts[2], true
}

// parseUint parses a decimal number.
func parseUint(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// seqSet is a growable bitset of message numbers.
type seqSet struct {
	bits []uint64
}

// add sets n and reports whether it was set already.
func (s *seqSet) add(n int) (dup bool) {
	w := n >> 6
	for w >= len(s.bits) {
		s.bits = append(s.bits, 0)
	}
	m := uint64(1) << (n & 63)
	dup = s.bits[w]&m != 0
	s.bits[w] |= m
	return dup
}

// missingFrom counts the numbers in want that s lacks.
func (s *seqSet) missingFrom(want *seqSet) int64 {
	var n int64
	for w, b := range want.bits {
		var have uint64
		if w < len(s.bits) {
			have = s.bits[w]
		}
		n += int64(bits.OnesCount64(b &^ have))
	}
	return n
}

func (s *seqSet) has(n int) bool {
	w := n >> 6
	return w < len(s.bits) && s.bits[w]&(uint64(1)<<(n&63)) != 0
}
